//! Hooks through which the driver's metrics see what happens in the sandbox.

use std::time::Duration;

/// Receives sandbox events; every method has a no-op default.
pub trait Observer: Send + Sync + 'static {
    /// A `describe` or `mount` call finished; `outcome` is `ok` or a [`crate::CallError::kind_label`].
    fn call_finished(
        &self,
        _provider: &str,
        _operation: &'static str,
        _elapsed: Duration,
        _outcome: &'static str,
    ) {
    }
    /// An outbound request finished; `status` is None when no response arrived.
    fn outbound(&self, _provider: &str, _host: &str, _status: Option<u16>, _shared: bool) {}
    /// A GET joined an identical one already in flight instead of going upstream itself.
    fn joined_in_flight(&self, _provider: &str, _host: &str) {}
    /// The policy refused an outbound destination.
    fn denied(&self, _provider: &str, _destination: &str) {}
}

/// Observes nothing.
pub struct NoopObserver;

impl Observer for NoopObserver {}
