//! What one provider call's pieces share: the store's host functions, its outbound requests and
//! the code that builds its error. Its request budget and concurrency, the destinations it was
//! denied, who it is for, and the credentials to keep out of its log lines.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

use crate::policy::Policy;
use crate::redact::Redactor;

pub(crate) struct CallState {
    pub(crate) redactor: Redactor,
    pod: Option<String>,
    denied: Mutex<Vec<String>>,
    requests: AtomicU32,
    in_flight: Semaphore,
    /// When the call was made (before it waited for an instance slot).
    pub(crate) started: Instant,
}

impl CallState {
    pub(crate) fn new(redactor: Redactor, pod: Option<String>, policy: &Policy) -> Self {
        CallState {
            redactor,
            pod,
            denied: Mutex::new(Vec::new()),
            requests: AtomicU32::new(0),
            in_flight: Semaphore::new(policy.max_concurrent_requests as usize),
            started: Instant::now(),
        }
    }

    /// `namespace/name` of the pod, or `-`, for log lines.
    pub(crate) fn pod_label(&self) -> &str {
        self.pod.as_deref().unwrap_or("-")
    }

    /// Destinations the policy refused during this call, in order, each once.
    pub(crate) fn denied(&self) -> Vec<String> {
        self.denied.lock().clone()
    }

    pub(crate) fn record_denied(&self, destination: String) {
        let mut denied = self.denied.lock();
        if !denied.contains(&destination) {
            denied.push(destination);
        }
    }

    /// Count one outbound request; returns how many were made before it.
    pub(crate) fn count_request(&self) -> u32 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    /// One of the call's concurrent-request slots, held while the request is in flight.
    pub(crate) async fn request_slot(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.in_flight.acquire().await
    }
}
