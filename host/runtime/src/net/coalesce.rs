//! Request coalescing and recent responses of one provider.
//!
//! GETs with the same URL and headers (credentials included) share one upstream exchange while it
//! is in flight, and a successful answer is kept for a while (see [`RecentResponses`]), so that a
//! republish wave costs one GET per object instead of one per mount.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use http::{HeaderMap, Method, StatusCode, Uri};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::policy::Policy;

use super::exchange::{Buffered, FetchError};

/// What identifies a request for sharing: a digest of method, URL and headers.
pub(super) type Key = [u8; 32];

type SharedFetch = Shared<BoxFuture<'static, Result<Arc<Buffered>, FetchError>>>;

/// Bytes of response bodies kept in [`RecentResponses`]; past it, answers are not kept.
const MAX_RECENT_BYTES: usize = 4 << 20;

static NEXT_FETCH_ID: AtomicU64 = AtomicU64::new(0);

/// The in-flight table and the recent answers of one provider.
pub(super) struct Coalescer {
    in_flight: Mutex<HashMap<Key, InFlight>>,
    recent: Mutex<RecentResponses>,
    /// The response cache's TTL (`responseCacheSeconds`), if on.
    cache_ttl: Option<Duration>,
    /// The longest a call lives: how long an answer stays fresh for calls already running.
    call_timeout: Duration,
    max_entries: usize,
}

/// One upstream GET and the mounts waiting for it. When the last waiter gives up (its call hit
/// the deadline) the exchange is aborted, so that no connection outlives every call that wanted it.
struct InFlight {
    fetch: SharedFetch,
    waiters: usize,
    task: tokio::task::AbortHandle,
    /// Tells this exchange apart from a later one under the same key.
    id: u64,
}

/// A waiter's share of an [`InFlight`] exchange; dropping it (done or cancelled) leaves the queue.
struct Waiter {
    coalescer: Arc<Coalescer>,
    key: Key,
    id: u64,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut in_flight = self.coalescer.in_flight.lock();
        if let Some(entry) = in_flight.get_mut(&self.key).filter(|e| e.id == self.id) {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                entry.task.abort();
                in_flight.remove(&self.key);
            }
        }
    }
}

/// Successful GET answers, kept for two uses:
///
/// - Fresh for a call: coalescing shares an exchange with the calls that ask while it is in flight.
///   A call that was already running (or queued for an instance slot) when the request was sent but
///   asks a moment after the answer came back is served the same answer: it was read from the store
///   after that call began, which is exactly the freshness coalescing gives. So a republish wave
///   larger than the instance pool costs one GET per object instead of one per pool generation, and
///   no call ever sees a value read before it started. Kept one call timeout (no live call is older).
/// - The response cache (`responseCacheSeconds`, off by default): any call, until the TTL runs out.
#[derive(Default)]
struct RecentResponses {
    entries: HashMap<Key, Recent>,
    bytes: usize,
}

struct Recent {
    /// When the request left (at the latest).
    sent: Instant,
    /// Until when it serves any call (the response cache), if at all.
    cached_until: Option<Instant>,
    /// Until when it is kept.
    keep_until: Instant,
    response: Arc<Buffered>,
}

impl RecentResponses {
    fn get(&self, key: &Key, call_started: Instant) -> Option<Arc<Buffered>> {
        let recent = self.entries.get(key)?;
        let cached = recent.cached_until.is_some_and(|t| t > Instant::now());
        (cached || recent.sent >= call_started).then(|| recent.response.clone())
    }

    fn insert(&mut self, key: Key, recent: Recent, max_entries: usize) {
        let now = Instant::now();
        let mut freed = 0;
        self.entries.retain(|k, r| {
            let keep = r.keep_until > now && k != &key;
            if !keep {
                freed += r.response.body.len();
            }
            keep
        });
        self.bytes -= freed;
        let size = recent.response.body.len();
        if self.bytes + size <= MAX_RECENT_BYTES && self.entries.len() < max_entries {
            self.bytes += size;
            self.entries.insert(key, recent);
        }
    }
}

impl Coalescer {
    pub(super) fn new(policy: &Policy) -> Self {
        Coalescer {
            in_flight: Mutex::new(HashMap::new()),
            recent: Mutex::new(RecentResponses::default()),
            cache_ttl: policy.response_cache_ttl,
            call_timeout: policy.timeout,
            max_entries: policy.cache_max_entries.max(1),
        }
    }

    /// A kept answer this call may be served: cached, or sent after the call began.
    pub(super) fn recent(&self, key: &Key, call_started: Instant) -> Option<Arc<Buffered>> {
        self.recent.lock().get(key, call_started)
    }

    /// Join the exchange in flight under `key`, or start `fetch` as that exchange. Returns the
    /// result and whether it was joined (`on_join` runs when it is).
    pub(super) async fn share<F>(
        self: &Arc<Self>,
        key: Key,
        fetch: F,
        on_join: impl FnOnce(),
    ) -> (Result<Arc<Buffered>, FetchError>, bool)
    where
        F: Future<Output = Result<Arc<Buffered>, FetchError>> + Send + 'static,
    {
        let (shared, joined, _waiter) = {
            let mut in_flight = self.in_flight.lock();
            match in_flight.get_mut(&key) {
                Some(existing) => {
                    on_join();
                    existing.waiters += 1;
                    let waiter = self.waiter(key, existing.id);
                    (existing.fetch.clone(), true, waiter)
                }
                None => {
                    let id = NEXT_FETCH_ID.fetch_add(1, Ordering::Relaxed);
                    let (fetch, task) = self.start(key, id, fetch);
                    in_flight.insert(
                        key,
                        InFlight {
                            fetch: fetch.clone(),
                            waiters: 1,
                            task,
                            id,
                        },
                    );
                    (fetch, false, self.waiter(key, id))
                }
            }
        };
        (shared.await, joined)
    }

    fn waiter(self: &Arc<Self>, key: Key, id: u64) -> Waiter {
        Waiter {
            coalescer: self.clone(),
            key,
            id,
        }
    }

    /// Run the exchange on its own task, so that one waiter giving up (its mount hit a deadline)
    /// does not cancel it for the others; the last one aborts it.
    fn start<F>(
        self: &Arc<Self>,
        key: Key,
        id: u64,
        fetch: F,
    ) -> (SharedFetch, tokio::task::AbortHandle)
    where
        F: Future<Output = Result<Arc<Buffered>, FetchError>> + Send + 'static,
    {
        let this = self.clone();
        let task = tokio::spawn(async move {
            // Taken before the request can leave, so "sent after the call began" holds.
            let sent = Instant::now();
            let result = fetch.await;
            {
                let mut in_flight = this.in_flight.lock();
                if in_flight.get(&key).is_some_and(|e| e.id == id) {
                    in_flight.remove(&key);
                }
            }
            if let Ok(buffered) = &result
                && buffered.status == StatusCode::OK
            {
                this.remember(key, sent, buffered.clone());
            }
            result
        });
        let abort = task.abort_handle();
        let shared = async move {
            task.await
                .unwrap_or_else(|e| Err(FetchError::TaskFailed(Arc::new(e))))
        }
        .boxed()
        .shared();
        (shared, abort)
    }

    fn remember(&self, key: Key, sent: Instant, response: Arc<Buffered>) {
        let now = Instant::now();
        let cached_until = self.cache_ttl.map(|ttl| now + ttl);
        let keep_until = cached_until.map_or(sent + self.call_timeout, |until| {
            until.max(sent + self.call_timeout)
        });
        let recent = Recent {
            sent,
            cached_until,
            keep_until,
            response,
        };
        self.recent.lock().insert(key, recent, self.max_entries);
    }
}

/// A digest of everything that makes two requests the same: method, URL and every header (so a
/// different credential, or a different pod in a pod-identity header, never shares a response).
pub(super) fn request_key(method: &Method, uri: &Uri, headers: &HeaderMap) -> Key {
    let mut entries: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    entries.sort();
    let mut digest = Sha256::new();
    digest.update(method.as_str().as_bytes());
    digest.update([0]);
    digest.update(uri.to_string().as_bytes());
    for (name, value) in entries {
        digest.update([0]);
        digest.update(name.as_bytes());
        digest.update([1]);
        digest.update(value);
    }
    digest.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_keys_differ_by_credentials_and_headers() {
        let uri: Uri = "https://v.vault.azure.net/secrets/a?api-version=7.4"
            .parse()
            .unwrap();
        let mut a = HeaderMap::new();
        a.insert("authorization", "Bearer one".parse().unwrap());
        let mut b = HeaderMap::new();
        b.insert("authorization", "Bearer two".parse().unwrap());
        let mut c = a.clone();
        c.insert("podname", "p".parse().unwrap());
        let key = |h: &HeaderMap| request_key(&Method::GET, &uri, h);
        assert_eq!(key(&a), key(&a.clone()));
        assert_ne!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert_ne!(
            key(&a),
            request_key(
                &Method::GET,
                &"https://v.vault.azure.net/secrets/b".parse().unwrap(),
                &a
            )
        );
    }
}
