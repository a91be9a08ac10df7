//! The driver's Prometheus metrics and its HTTP endpoints.
//!
//! Upstream's metric names and labels are kept (`node_publish_total`, `node_publish_error_total`,
//! `node_unpublish_total`, `node_unpublish_error_total`, `sync_k8s_secret_total`,
//! `k8s_secret_duration_sec`, `rotation_reconcile_total`, `rotation_reconcile_error_total`,
//! `rotation_reconcile_duration_sec`), so existing dashboards keep working. The sandbox adds its own:
//! provider call durations and outcomes, outbound requests by provider/host/status, denied
//! destinations, and module loads. [`Metrics`] receives them as the observer of the pipeline
//! (`PublishMetrics`), the runtime (`Observer`) and the provider registry (`RegistryObserver`).
//! Served at `/metrics`; `/healthz` answers while the process runs,
//! `/readyz` once providers are loaded and the API watch is synced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderErrorLabels {
    provider: String,
    error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    provider: String,
    rotated: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: String,
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboundLabels {
    provider: String,
    host: String,
    status: String,
    shared: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeniedLabels {
    provider: String,
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric of the driver.
pub struct Metrics {
    registry: Registry,
    node_publish: Family<ProviderLabel, Counter>,
    node_publish_error: Family<ProviderErrorLabels, Counter>,
    node_unpublish: Counter,
    node_unpublish_error: Counter,
    sync_k8s_secret: Family<ProviderLabel, Counter>,
    k8s_secret_duration: Histogram,
    rotation_reconcile: Family<RotationLabels, Counter>,
    rotation_reconcile_error: Family<ErrorLabel, Counter>,
    rotation_reconcile_duration: Histogram,
    provider_calls: Family<CallLabels, Histogram, fn() -> Histogram>,
    outbound: Family<OutboundLabels, Counter>,
    denied: Family<DeniedLabels, Counter>,
    module_reloads: Family<ReloadLabels, Counter>,
    modules_loaded: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            node_publish: Family::default(),
            node_publish_error: Family::default(),
            node_unpublish: Counter::default(),
            node_unpublish_error: Counter::default(),
            sync_k8s_secret: Family::default(),
            k8s_secret_duration: seconds_histogram(),
            rotation_reconcile: Family::default(),
            rotation_reconcile_error: Family::default(),
            rotation_reconcile_duration: seconds_histogram(),
            provider_calls: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            outbound: Family::default(),
            denied: Family::default(),
            module_reloads: Family::default(),
            modules_loaded: Gauge::default(),
            registry: Registry::default(),
        };
        // Counter names get `_total` appended by the encoder.
        registry.register(
            "node_publish",
            "Successful NodePublishVolume calls",
            m.node_publish.clone(),
        );
        registry.register(
            "node_publish_error",
            "Failed NodePublishVolume calls",
            m.node_publish_error.clone(),
        );
        registry.register(
            "node_unpublish",
            "Successful NodeUnpublishVolume calls",
            m.node_unpublish.clone(),
        );
        registry.register(
            "node_unpublish_error",
            "Failed NodeUnpublishVolume calls",
            m.node_unpublish_error.clone(),
        );
        registry.register(
            "sync_k8s_secret",
            "Kubernetes Secrets synced from mounted objects",
            m.sync_k8s_secret.clone(),
        );
        registry.register(
            "k8s_secret_duration_sec",
            "Time to sync Kubernetes Secrets",
            m.k8s_secret_duration.clone(),
        );
        registry.register(
            "rotation_reconcile",
            "Volume refreshes (republish with rotation)",
            m.rotation_reconcile.clone(),
        );
        registry.register(
            "rotation_reconcile_error",
            "Failed volume refreshes",
            m.rotation_reconcile_error.clone(),
        );
        registry.register(
            "rotation_reconcile_duration_sec",
            "Time to refresh a volume",
            m.rotation_reconcile_duration.clone(),
        );
        registry.register(
            "provider_call_duration_seconds",
            "Wasm provider calls by outcome",
            m.provider_calls.clone(),
        );
        registry.register(
            "provider_outbound_requests",
            "Provider HTTP requests by destination host and status",
            m.outbound.clone(),
        );
        registry.register(
            "provider_outbound_denied",
            "Provider HTTP requests refused by the policy",
            m.denied.clone(),
        );
        registry.register(
            "provider_module_reloads",
            "Provider module load attempts by result",
            m.module_reloads.clone(),
        );
        registry.register(
            "provider_modules_loaded",
            "Provider modules currently loaded",
            m.modules_loaded.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn secret_synced(&self, provider: &str, elapsed: Duration) {
        self.sync_k8s_secret
            .get_or_create(&ProviderLabel {
                provider: provider.to_string(),
            })
            .inc();
        self.k8s_secret_duration.observe(elapsed.as_secs_f64());
    }

    fn module_reload(&self, result: &str) -> Counter {
        self.module_reloads
            .get_or_create(&ReloadLabels {
                result: result.to_string(),
            })
            .clone()
    }
}

/// Module loads and refusals as the provider registry reports them.
impl secrets_store_providers::RegistryObserver for Metrics {
    fn module_loaded(&self, _provider: &str) {
        self.module_reload("success").inc();
    }

    fn reload_finished(&self, report: &secrets_store_providers::ReloadReport, loaded: usize) {
        if !report.failed.is_empty() {
            self.module_reload("failure")
                .inc_by(report.failed.len() as u64);
        }
        self.modules_loaded.set(loaded as i64);
    }
}

impl secrets_store_publish::PublishMetrics for Metrics {
    fn publish(&self, provider: &str, error_type: Option<&str>) {
        match error_type {
            None => {
                self.node_publish
                    .get_or_create(&ProviderLabel {
                        provider: provider.to_string(),
                    })
                    .inc();
            }
            Some(e) => {
                self.node_publish_error
                    .get_or_create(&ProviderErrorLabels {
                        provider: provider.to_string(),
                        error_type: e.to_string(),
                    })
                    .inc();
            }
        }
    }

    fn unpublish(&self, error_type: Option<&str>) {
        match error_type {
            None => self.node_unpublish.inc(),
            Some(_) => self.node_unpublish_error.inc(),
        };
    }

    fn rotation(&self, provider: &str, rotated: bool, elapsed: Duration, error_type: Option<&str>) {
        self.rotation_reconcile_duration
            .observe(elapsed.as_secs_f64());
        match error_type {
            None => {
                self.rotation_reconcile
                    .get_or_create(&RotationLabels {
                        provider: provider.to_string(),
                        rotated: rotated.to_string(),
                    })
                    .inc();
            }
            Some(e) => {
                self.rotation_reconcile_error
                    .get_or_create(&ErrorLabel {
                        error_type: e.to_string(),
                    })
                    .inc();
            }
        }
    }

    fn secret_sync(&self, provider: &str, elapsed: Duration) {
        self.secret_synced(provider, elapsed);
    }
}

impl secrets_store_runtime::Observer for Metrics {
    fn call_finished(
        &self,
        provider: &str,
        operation: &'static str,
        elapsed: Duration,
        outcome: &'static str,
    ) {
        self.provider_calls
            .get_or_create(&CallLabels {
                provider: provider.to_string(),
                operation: operation.to_string(),
                outcome: outcome.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    fn outbound(&self, provider: &str, host: &str, status: Option<u16>, shared: bool) {
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "error".to_string());
        self.outbound
            .get_or_create(&OutboundLabels {
                provider: provider.to_string(),
                host: host.to_string(),
                status,
                shared: shared.to_string(),
            })
            .inc();
    }

    fn denied(&self, provider: &str, destination: &str) {
        self.denied
            .get_or_create(&DeniedLabels {
                provider: provider.to_string(),
                destination: destination.to_string(),
            })
            .inc();
    }
}

/// Whether the driver is ready to serve mounts.
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint {addr}: {source}")]
pub struct ServeError {
    addr: String,
    source: std::io::Error,
}

/// Serve `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServeError {
        addr: addr.to_string(),
        source,
    })?;
    let task = tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        continue;
                    }
                },
            };
            let metrics = metrics.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let response = respond(&request, &metrics, &ready);
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

fn respond(
    request: &Request<hyper::body::Incoming>,
    metrics: &Metrics,
    ready: &Readiness,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        (&Method::GET, "/readyz") if ready() => {
            (StatusCode::OK, "text/plain", "ready\n".to_string())
        }
        (&Method::GET, "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrets_store_providers::{RegistryObserver, ReloadReport};
    use secrets_store_publish::PublishMetrics;
    use secrets_store_runtime::Observer;

    #[test]
    fn upstream_names_and_labels() {
        let m = Metrics::new();
        m.publish("azure", None);
        m.publish("azure", Some("SecretProviderClassNotFound"));
        m.unpublish(None);
        m.unpublish(Some("FailedToUnmount"));
        m.rotation("azure", true, Duration::from_millis(5), None);
        m.rotation(
            "azure",
            false,
            Duration::from_millis(5),
            Some("ProviderError"),
        );
        m.secret_synced("azure", Duration::from_millis(3));
        m.call_finished("azure", "mount", Duration::from_millis(2), "ok");
        m.outbound("azure", "v.vault.azure.net", Some(200), false);
        m.denied("azure", "https://evil.example:443");
        m.module_loaded("azure");
        m.reload_finished(&ReloadReport::default(), 1);
        m.module_loaded("azure");
        m.reload_finished(
            &ReloadReport {
                failed: vec![(
                    "other".into(),
                    "module file other.wasm does not exist".into(),
                )],
                ..Default::default()
            },
            1,
        );
        let text = m.encode();
        for expected in [
            "node_publish_total{provider=\"azure\"} 1",
            "node_publish_error_total{provider=\"azure\",error_type=\"SecretProviderClassNotFound\"} 1",
            "node_unpublish_total 1",
            "node_unpublish_error_total 1",
            "rotation_reconcile_total{provider=\"azure\",rotated=\"true\"} 1",
            "rotation_reconcile_error_total{error_type=\"ProviderError\"} 1",
            "rotation_reconcile_duration_sec_count 2",
            "sync_k8s_secret_total{provider=\"azure\"} 1",
            "k8s_secret_duration_sec_count 1",
            "provider_call_duration_seconds_count{provider=\"azure\",operation=\"mount\",outcome=\"ok\"} 1",
            "provider_outbound_requests_total{provider=\"azure\",host=\"v.vault.azure.net\",status=\"200\",shared=\"false\"} 1",
            "provider_outbound_denied_total{provider=\"azure\",destination=\"https://evil.example:443\"} 1",
            "provider_module_reloads_total{result=\"success\"} 2",
            "provider_module_reloads_total{result=\"failure\"} 1",
            "provider_modules_loaded 1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
