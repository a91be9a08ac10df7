//! Outbound HTTP for providers: the only network a guest has.
//!
//! Every `wasi:http` request a guest makes arrives in [`Hooks::send_request`]. There the provider's
//! [`Policy`] is enforced (destination, request budget, concurrency, body sizes), identical GETs in
//! flight share one upstream request, and a per-destination gate applies the rate limit and any
//! `Retry-After` a server asked for. Requests go out through a pooled hyper client owned by the host
//! (one pool per provider, because which addresses a name may resolve to is part of the provider's
//! policy), with the system's TLS roots plus the operator's extra CA, the operator's resolve
//! overrides, and bounded timeouts. Responses are read whole, up to the policy's size limit, before
//! the guest sees them.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::observer::Observer;
use crate::policy::{Policy, Scheme, Target};
use crate::redact::Redactor;

/// The longest a server's `Retry-After` can hold a destination back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Idle destinations whose gate state is dropped once the table grows past this.
const MAX_GATES: usize = 1024;

/// Host-wide network settings (shared by all providers).
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Extra trusted CA certificates (DER), in addition to the system roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Skip the system roots (tests that must trust only their own CA).
    pub no_system_roots: bool,
    pub resolve: Vec<ResolveOverride>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub between_bytes_timeout: Duration,
    /// Bound of one upstream exchange, even when nobody waits for it any more.
    pub total_timeout: Duration,
    pub pool_idle_timeout: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            extra_roots: Vec::new(),
            no_system_roots: false,
            resolve: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(20),
            between_bytes_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

impl NetworkConfig {
    /// Add the certificates of a PEM bundle to the trusted roots.
    pub fn add_ca_pem(&mut self, pem: &[u8]) -> Result<usize, NetError> {
        let mut added = 0;
        for cert in rustls_pemfile_certs(pem)? {
            self.extra_roots.push(cert);
            added += 1;
        }
        if added == 0 {
            return Err(NetError::Ca("no CERTIFICATE blocks found".into()));
        }
        Ok(added)
    }
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, NetError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::Ca(format!("unreadable PEM: {e}")))
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("CA bundle: {0}")]
    Ca(String),
    #[error("resolve override {entry:?}: want HOST:PORT=ADDRESS[:PORT]")]
    Resolve { entry: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// `HOST:PORT=ADDRESS[:PORT]`: connections to HOST:PORT go to ADDRESS (an operator's choice, used as
/// is, private or not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveOverride {
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
}

impl FromStr for ResolveOverride {
    type Err = NetError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let bad = || NetError::Resolve {
            entry: entry.to_string(),
        };
        let (from, to) = entry.split_once('=').ok_or_else(bad)?;
        let (host, port) = from.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        // Only a name or an IP literal can ever equal a request's host; anything else (`a]b`,
        // `x,y`) would be an override that silently never applies.
        let name = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if host.is_empty() || !(name || std::net::IpAddr::from_str(&host).is_ok()) {
            return Err(bad());
        }
        let addr = SocketAddr::from_str(to)
            .or_else(|_| {
                std::net::IpAddr::from_str(to.trim_start_matches('[').trim_end_matches(']'))
                    .map(|ip| SocketAddr::new(ip, port))
            })
            .map_err(|_| bad())?;
        Ok(ResolveOverride { host, port, addr })
    }
}

/// TLS client settings shared by every provider's pool.
pub(crate) fn tls_config(config: &NetworkConfig) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let mut roots = rustls::RootCertStore::empty();
    if !config.no_system_roots {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A broken system certificate must not take the driver down.
            let _ = roots.add(cert);
        }
    }
    for cert in &config.extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| NetError::Ca(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// One provider's outbound side: its pool, its in-flight table, its response cache and gates.
pub(crate) struct Outbound {
    provider: Arc<str>,
    policy: Arc<Policy>,
    client: Client<Connector, Full<Bytes>>,
    timeouts: Timeouts,
    total_timeout: Duration,
    in_flight: Mutex<HashMap<[u8; 32], InFlight>>,
    recent: Mutex<RecentResponses>,
    gates: Mutex<HashMap<String, Gate>>,
    observer: Arc<dyn Observer>,
}

type SharedFetch = Shared<BoxFuture<'static, Result<Arc<Buffered>, FetchError>>>;

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
    outbound: Arc<Outbound>,
    key: [u8; 32],
    id: u64,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut in_flight = self
            .outbound
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = in_flight.get_mut(&self.key).filter(|e| e.id == self.id) {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                entry.task.abort();
                in_flight.remove(&self.key);
            }
        }
    }
}

static NEXT_FETCH_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Bytes of response bodies kept in [`RecentResponses`]; past it, answers are not kept.
const MAX_RECENT_BYTES: usize = 4 << 20;

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
    entries: HashMap<[u8; 32], Recent>,
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
    fn get(&self, key: &[u8; 32], call_started: Instant) -> Option<Arc<Buffered>> {
        let recent = self.entries.get(key)?;
        let cached = recent.cached_until.is_some_and(|t| t > Instant::now());
        (cached || recent.sent >= call_started).then(|| recent.response.clone())
    }

    fn insert(&mut self, key: [u8; 32], recent: Recent, max_entries: usize) {
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

#[derive(Clone, Copy, Debug)]
struct Timeouts {
    first_byte: Duration,
    between_bytes: Duration,
}

impl Outbound {
    pub(crate) fn new(
        provider: Arc<str>,
        policy: Arc<Policy>,
        network: &NetworkConfig,
        tls: Arc<rustls::ClientConfig>,
        observer: Arc<dyn Observer>,
    ) -> Arc<Self> {
        let mut overrides: HashMap<(String, u16), Vec<SocketAddr>> = HashMap::new();
        for o in &network.resolve {
            overrides
                .entry((o.host.clone(), o.port))
                .or_default()
                .push(o.addr);
        }
        let connector = Connector {
            inner: Arc::new(ConnectorInner {
                policy: policy.clone(),
                overrides,
                tls: TlsConnector::from(tls),
                connect_timeout: network.connect_timeout,
            }),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(network.pool_idle_timeout)
            .pool_max_idle_per_host(policy.max_concurrent_requests as usize)
            .build(connector);
        Arc::new(Outbound {
            provider,
            policy,
            client,
            timeouts: Timeouts {
                first_byte: network.first_byte_timeout,
                between_bytes: network.between_bytes_timeout,
            },
            total_timeout: network.total_timeout,
            in_flight: Mutex::new(HashMap::new()),
            recent: Mutex::new(RecentResponses::default()),
            gates: Mutex::new(HashMap::new()),
            observer,
        })
    }

    async fn send(
        self: Arc<Self>,
        call: Arc<CallState>,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, HttpError> {
        let Some(target) = Target::from_uri(request.uri()) else {
            return Err(HttpError::HttpRequestUriInvalid);
        };
        if self.policy.allowing(&target).is_none() {
            self.deny(&call, &target, "it is not in the policy's allowedHosts");
            return Err(HttpError::HttpRequestDenied);
        }
        let sent = call.requests.fetch_add(1, Ordering::Relaxed);
        if sent >= self.policy.max_requests_per_mount {
            tracing::warn!(provider = %self.provider, pod = call.pod_label(), limit = self.policy.max_requests_per_mount,
                "outbound request refused: the mount used up its request budget");
            return Err(HttpError::ConnectionLimitReached);
        }
        if let Some(auth) = request.headers().get(http::header::AUTHORIZATION) {
            call.redactor
                .add_authorization(&String::from_utf8_lossy(auth.as_bytes()));
        }
        let _slot = call
            .in_flight
            .acquire()
            .await
            .map_err(|_| HttpError::InternalError(Some("closed".into())))?;

        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, self.policy.max_request_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return Err(HttpError::HttpRequestBodySize(Some(
                    self.policy.max_request_bytes as u64,
                )));
            }
        };
        let timeouts = self.timeouts.narrowed(options);
        let result = if parts.method == Method::GET && body.is_empty() {
            let key = request_key(&parts.method, &parts.uri, &parts.headers);
            self.clone()
                .shared_get(
                    key,
                    call.started,
                    target.clone(),
                    parts.uri,
                    parts.headers,
                    timeouts,
                )
                .await
        } else {
            let request = rebuild(parts.method, parts.uri, parts.headers, body);
            self.fetch(&target, request, timeouts).await.map(Arc::new)
        };
        match result {
            Ok(buffered) => Ok(buffered.response()),
            Err(FetchError::Prohibited) => {
                self.deny(
                    &call,
                    &target,
                    "its addresses are private and not in the policy's privateNetworks",
                );
                Err(HttpError::DestinationIpProhibited)
            }
            Err(e) => {
                tracing::debug!(provider = %self.provider, pod = call.pod_label(), destination = %target, error = %e, "outbound request failed");
                Err(e.into())
            }
        }
    }

    fn deny(&self, call: &CallState, target: &Target, why: &str) {
        let destination = target.to_string();
        tracing::warn!(provider = %self.provider, pod = call.pod_label(), %destination, "outbound request denied: {why}");
        self.observer.denied(&self.provider, &destination);
        let mut denied = call.denied.lock().unwrap_or_else(|e| e.into_inner());
        if !denied.contains(&destination) {
            denied.push(destination);
        }
    }

    /// GETs with the same URL and headers (credentials included) share one upstream exchange, the
    /// answer of one sent after the call began, and optionally a short-lived cached response
    /// (see [`RecentResponses`]).
    #[allow(clippy::too_many_arguments)]
    async fn shared_get(
        self: Arc<Self>,
        key: [u8; 32],
        call_started: Instant,
        target: Target,
        uri: Uri,
        headers: HeaderMap,
        timeouts: Timeouts,
    ) -> Result<Arc<Buffered>, FetchError> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key, call_started);
        if let Some(recent) = recent {
            self.observer.outbound(
                &self.provider,
                &target.host,
                Some(recent.status.as_u16()),
                true,
            );
            return Ok(recent);
        }
        let (shared, joined, _waiter) = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            match in_flight.get_mut(&key) {
                Some(existing) => {
                    self.observer.joined_in_flight(&self.provider, &target.host);
                    existing.waiters += 1;
                    let waiter = Waiter {
                        outbound: self.clone(),
                        key,
                        id: existing.id,
                    };
                    (existing.fetch.clone(), true, waiter)
                }
                None => {
                    let id = NEXT_FETCH_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let this = self.clone();
                    // The exchange runs on its own task so that one waiter giving up (its mount hit
                    // a deadline) does not cancel it for the others; the last one aborts it.
                    let task = tokio::spawn(async move {
                        let request = rebuild(Method::GET, uri, headers, Bytes::new());
                        // Taken before the request can leave, so "sent after the call began" holds.
                        let sent = Instant::now();
                        let result = this.fetch(&target, request, timeouts).await.map(Arc::new);
                        {
                            let mut in_flight =
                                this.in_flight.lock().unwrap_or_else(|e| e.into_inner());
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
                            .unwrap_or(Err(FetchError::Internal("fetch task failed".into())))
                    }
                    .boxed()
                    .shared();
                    in_flight.insert(
                        key,
                        InFlight {
                            fetch: shared.clone(),
                            waiters: 1,
                            task: abort,
                            id,
                        },
                    );
                    let waiter = Waiter {
                        outbound: self.clone(),
                        key,
                        id,
                    };
                    (shared, false, waiter)
                }
            }
        };
        let result = shared.await;
        if let (true, Ok(buffered)) = (joined, &result) {
            self.observer.outbound(
                &self.provider,
                &buffered.host,
                Some(buffered.status.as_u16()),
                true,
            );
        }
        result
    }

    fn remember(&self, key: [u8; 32], sent: Instant, response: Arc<Buffered>) {
        let now = Instant::now();
        let cached_until = self.policy.response_cache_ttl.map(|ttl| now + ttl);
        let keep_until = cached_until.map_or(sent + self.policy.timeout, |until| {
            until.max(sent + self.policy.timeout)
        });
        let recent = Recent {
            sent,
            cached_until,
            keep_until,
            response,
        };
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, recent, self.policy.cache_max_entries.max(1));
    }

    async fn fetch(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
        timeouts: Timeouts,
    ) -> Result<Buffered, FetchError> {
        let exchange = async {
            self.wait_for_gate(target).await;
            let response =
                match tokio::time::timeout(timeouts.first_byte, self.client.request(request)).await
                {
                    Err(_) => return Err(FetchError::Timeout("no response")),
                    Ok(Err(e)) => return Err(classify_client_error(&e)),
                    Ok(Ok(response)) => response,
                };
            let (parts, mut body) = response.into_parts();
            let mut bytes = BytesMut::new();
            loop {
                match tokio::time::timeout(timeouts.between_bytes, body.frame()).await {
                    Err(_) => return Err(FetchError::Timeout("response body stalled")),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(FetchError::Protocol(e.to_string())),
                    Ok(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            if bytes.len() + data.len() > self.policy.max_response_bytes {
                                return Err(FetchError::BodyTooLarge(
                                    self.policy.max_response_bytes as u64,
                                ));
                            }
                            bytes.extend_from_slice(data);
                        }
                    }
                }
            }
            let throttled = parts.status == StatusCode::TOO_MANY_REQUESTS
                || parts.status == StatusCode::SERVICE_UNAVAILABLE;
            if let (true, Some(wait)) = (throttled, retry_after(&parts.headers)) {
                self.hold_back(target, wait.min(MAX_RETRY_AFTER));
            }
            Ok(Buffered {
                status: parts.status,
                headers: parts.headers,
                body: bytes.freeze(),
                host: target.host.clone(),
            })
        };
        let result = match tokio::time::timeout(self.total_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout("exchange took too long")),
        };
        let status = result.as_ref().ok().map(|b| b.status.as_u16());
        self.observer
            .outbound(&self.provider, &target.host, status, false);
        result
    }

    /// Wait until the destination may be contacted: after any `Retry-After` it asked for, and within
    /// the policy's per-host rate.
    async fn wait_for_gate(&self, target: &Target) {
        loop {
            let wait = {
                let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if gates.len() > MAX_GATES {
                    gates.retain(|_, g| now.duration_since(g.last) < Duration::from_secs(600));
                }
                let burst = self
                    .policy
                    .rate_limit_per_host
                    .map(|(_, b)| f64::from(b))
                    .unwrap_or(0.0);
                let gate = gates.entry(gate_key(target)).or_insert(Gate {
                    tokens: burst,
                    last: now,
                    blocked_until: None,
                });
                match gate.blocked_until {
                    Some(until) if until > now => until - now,
                    _ => match self.policy.rate_limit_per_host {
                        None => {
                            gate.last = now;
                            return;
                        }
                        Some((rate, burst)) => {
                            gate.tokens = (gate.tokens
                                + now.duration_since(gate.last).as_secs_f64() * rate)
                                .min(f64::from(burst));
                            gate.last = now;
                            if gate.tokens >= 1.0 {
                                gate.tokens -= 1.0;
                                return;
                            }
                            Duration::from_secs_f64((1.0 - gate.tokens) / rate)
                        }
                    },
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn hold_back(&self, target: &Target, wait: Duration) {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let gate = gates.entry(gate_key(target)).or_insert(Gate {
            tokens: 0.0,
            last: now,
            blocked_until: None,
        });
        let until = now + wait;
        if gate.blocked_until.is_none_or(|b| b < until) {
            gate.blocked_until = Some(until);
        }
        tracing::info!(provider = %self.provider, destination = %target, wait_ms = wait.as_millis() as u64,
            "destination asked to back off (Retry-After); holding requests to it");
    }
}

fn gate_key(target: &Target) -> String {
    format!("{}:{}", target.host, target.port)
}

struct Gate {
    tokens: f64,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Timeouts {
    /// The guest may shorten the host's timeouts, never lengthen them.
    fn narrowed(self, options: Option<RequestOptions>) -> Timeouts {
        let Some(options) = options else { return self };
        let pick = |host: Duration, guest: Option<Duration>| match guest {
            Some(g) if !g.is_zero() => host.min(g),
            _ => host,
        };
        Timeouts {
            first_byte: pick(self.first_byte, options.first_byte_timeout),
            between_bytes: pick(self.between_bytes, options.between_bytes_timeout),
        }
    }
}

fn rebuild(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// A digest of everything that makes two requests the same: method, URL and every header (so a
/// different credential, or a different pod in a pod-identity header, never shares a response).
fn request_key(method: &Method, uri: &Uri, headers: &HeaderMap) -> [u8; 32] {
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

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A response read whole.
#[derive(Debug)]
pub(crate) struct Buffered {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    host: String,
}

impl Buffered {
    fn response(&self) -> Response<WasiBody> {
        let mut response = Response::new(
            Full::new(self.body.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            // The body is complete; framing headers from the wire no longer describe it.
            if name != http::header::TRANSFER_ENCODING && name != http::header::CONNECTION {
                headers.append(name, value.clone());
            }
        }
        response
    }
}

#[derive(Clone, Debug)]
enum FetchError {
    Prohibited,
    Dns(String),
    Refused,
    Terminated,
    ConnectTimeout,
    Tls(String),
    Timeout(&'static str),
    BodyTooLarge(u64),
    Protocol(String),
    Internal(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Prohibited => f.write_str("destination address prohibited"),
            FetchError::Dns(e) => write!(f, "name resolution failed: {e}"),
            FetchError::Refused => f.write_str("connection refused"),
            FetchError::Terminated => f.write_str("connection closed before the response"),
            FetchError::ConnectTimeout => f.write_str("connect timed out"),
            FetchError::Tls(e) => write!(f, "TLS: {e}"),
            FetchError::Timeout(what) => write!(f, "timed out: {what}"),
            FetchError::BodyTooLarge(limit) => write!(f, "response body over {limit} bytes"),
            FetchError::Protocol(e) => write!(f, "HTTP: {e}"),
            FetchError::Internal(e) => f.write_str(e),
        }
    }
}

impl From<FetchError> for HttpError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Prohibited => HttpError::DestinationIpProhibited,
            FetchError::Dns(info) => HttpError::DnsError {
                rcode: Some(info),
                info_code: None,
            },
            FetchError::Refused => HttpError::ConnectionRefused,
            FetchError::Terminated => HttpError::ConnectionTerminated,
            FetchError::ConnectTimeout => HttpError::ConnectionTimeout,
            FetchError::Tls(_) => HttpError::TlsCertificateError,
            FetchError::Timeout(_) => HttpError::ConnectionReadTimeout,
            FetchError::BodyTooLarge(limit) => HttpError::HttpResponseBodySize(Some(limit)),
            FetchError::Protocol(_) => HttpError::HttpProtocolError,
            FetchError::Internal(e) => HttpError::InternalError(Some(e)),
        }
    }
}

fn classify_client_error(e: &hyper_util::client::legacy::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(connect) = err.downcast_ref::<ConnectError>() {
            return connect.0.clone();
        }
        // The server closed the connection before answering (a dropped or reset connection, or a
        // pooled keep-alive connection it had already closed): the provider may retry.
        if let Some(hyper) = err.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled())
        {
            return FetchError::Terminated;
        }
        source = err.source();
    }
    if e.is_connect() {
        FetchError::Refused
    } else {
        FetchError::Protocol(e.to_string())
    }
}

#[derive(Debug)]
struct ConnectError(FetchError);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ConnectError {}

/// Resolves (overrides first, then DNS filtered by the policy), connects and speaks TLS.
#[derive(Clone)]
struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    policy: Arc<Policy>,
    overrides: HashMap<(String, u16), Vec<SocketAddr>>,
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner
                .connect(uri)
                .await
                .map(TokioIo::new)
                .map_err(ConnectError)
        })
    }
}

impl ConnectorInner {
    async fn connect(&self, uri: Uri) -> Result<Stream, FetchError> {
        let target =
            Target::from_uri(&uri).ok_or_else(|| FetchError::Internal("unsupported URI".into()))?;
        let addrs = self.resolve(&target).await?;
        let mut last = FetchError::Refused;
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(_)) => last = FetchError::Refused,
                Err(_) => last = FetchError::ConnectTimeout,
            }
        }
        let tcp = tcp.ok_or(last)?;
        // Requests are small and latency-bound.
        let _ = tcp.set_nodelay(true);
        match target.scheme {
            Scheme::Http => Ok(Stream::Plain(tcp)),
            Scheme::Https => {
                let name = match target.ip {
                    Some(ip) => ServerName::IpAddress(ip.into()),
                    None => ServerName::try_from(target.host.clone())
                        .map_err(|e| FetchError::Tls(e.to_string()))?,
                };
                let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
                    .await
                    .map_err(|_| FetchError::ConnectTimeout)?
                    .map_err(|e| FetchError::Tls(e.to_string()))?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    }

    async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, FetchError> {
        if let Some(addrs) = self.overrides.get(&(target.host.clone(), target.port)) {
            return Ok(addrs.clone());
        }
        if let Some(ip) = target.ip {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        let found: Vec<SocketAddr> = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::lookup_host((target.host.as_str(), target.port)),
        )
        .await
        {
            Err(_) => return Err(FetchError::Dns("timed out".into())),
            Ok(Err(e)) => return Err(FetchError::Dns(e.to_string())),
            Ok(Ok(addrs)) => addrs.collect(),
        };
        let allowed: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|a| self.policy.address_allowed(target, a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(if found.is_empty() {
                FetchError::Dns("no addresses".into())
            } else {
                FetchError::Prohibited
            });
        }
        Ok(allowed)
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(_) => Connected::new(),
            Stream::Tls(tls) => {
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    Connected::new().negotiated_h2()
                } else {
                    Connected::new()
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What one mount call's requests share: its budget, its concurrency, what it was denied, and the
/// credentials to keep out of its log lines.
pub(crate) struct CallState {
    pub(crate) redactor: Redactor,
    pub(crate) denied: Mutex<Vec<String>>,
    pub(crate) pod: Option<String>,
    requests: AtomicU32,
    in_flight: Semaphore,
    /// When the call was made (before it waited for an instance slot).
    pub(crate) started: Instant,
}

impl CallState {
    pub(crate) fn new(redactor: Redactor, pod: Option<String>, policy: &Policy) -> Self {
        CallState {
            redactor,
            denied: Mutex::new(Vec::new()),
            pod,
            requests: AtomicU32::new(0),
            in_flight: Semaphore::new(policy.max_concurrent_requests as usize),
            started: Instant::now(),
        }
    }

    pub(crate) fn pod_label(&self) -> &str {
        self.pod.as_deref().unwrap_or("-")
    }

    pub(crate) fn denied(&self) -> Vec<String> {
        self.denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The `wasi:http` hooks of one store: every guest request comes through here.
pub(crate) struct Hooks {
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) call: Arc<CallState>,
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), HttpError>> + Send> {
        let outbound = self.outbound.clone();
        let call = self.call.clone();
        Box::new(async move {
            let response = outbound.send(call, request, options).await?;
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_overrides_parse() {
        let o: ResolveOverride = "MyVault.vault.azure.net:443=127.0.0.1:8443"
            .parse()
            .unwrap();
        assert_eq!(
            (o.host.as_str(), o.port, o.addr),
            (
                "myvault.vault.azure.net",
                443,
                "127.0.0.1:8443".parse().unwrap()
            )
        );
        let o: ResolveOverride = "169.254.169.254:80=127.0.0.1".parse().unwrap();
        assert_eq!(o.addr, "127.0.0.1:80".parse().unwrap());
        let o: ResolveOverride = "[::1]:443=[::1]:9443".parse().unwrap();
        assert_eq!(
            (o.host.as_str(), o.addr),
            ("::1", "[::1]:9443".parse().unwrap())
        );
        for bad in [
            "host=1.2.3.4",
            "host:x=1.2.3.4",
            "host:443",
            ":443=1.2.3.4",
            "h:443=nonsense",
            // Found by the `resolve_override` fuzz target: brackets or commas left in the host.
            "[::1],:443=[::1]:9443",
            "x].:443=127.0.0.1",
        ] {
            assert!(
                bad.parse::<ResolveOverride>()
                    .unwrap_err()
                    .to_string()
                    .contains(bad)
            );
        }
    }

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

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert("retry-after", later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn guests_can_only_shorten_timeouts() {
        let host = Timeouts {
            first_byte: Duration::from_secs(20),
            between_bytes: Duration::from_secs(10),
        };
        let narrowed = host.narrowed(Some(RequestOptions {
            connect_timeout: None,
            first_byte_timeout: Some(Duration::from_secs(2)),
            between_bytes_timeout: Some(Duration::from_secs(600)),
        }));
        assert_eq!(narrowed.first_byte, Duration::from_secs(2));
        assert_eq!(narrowed.between_bytes, Duration::from_secs(10));
    }
}
