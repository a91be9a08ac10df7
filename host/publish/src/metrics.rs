//! [`PublishMetrics`]: what the pipeline reports to the driver's metrics.

use std::time::Duration;

/// Receives what the pipeline does, for metrics. Every method has a no-op default.
pub trait PublishMetrics: Send + Sync + 'static {
    fn publish(&self, _provider: &str, _error_type: Option<&str>) {}
    fn unpublish(&self, _error_type: Option<&str>) {}
    fn rotation(
        &self,
        _provider: &str,
        _rotated: bool,
        _elapsed: Duration,
        _error_type: Option<&str>,
    ) {
    }
    fn secret_sync(&self, _provider: &str, _elapsed: Duration) {}
}

/// Reports nothing.
pub(crate) struct NoMetrics;

impl PublishMetrics for NoMetrics {}
