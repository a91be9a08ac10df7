//! `secrets-store-host serve` (the CSI node plugin kubelet talks to) and `secrets-store-host provider`
//! (a wasm provider behind the upstream v1alpha1 API, for clusters that keep the upstream driver).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use secrets_store_csi::{IdentityService, NodeService, ProviderApiService, server};
use secrets_store_k8s::{ClientOptions, EventRecorder, PodStatusWriter, SpcCache};
use secrets_store_metrics::{Metrics, Readiness};
use secrets_store_proto::csi::v1::identity_server::IdentityServer;
use secrets_store_proto::csi::v1::node_server::NodeServer;
use secrets_store_proto::provider::v1alpha1::csi_driver_provider_server::CsiDriverProviderServer;
use secrets_store_providers::{ProviderRegistry, RegistryConfig, WatchHandle};
use secrets_store_publish::{Cluster, Publisher, PublisherConfig};
use secrets_store_runtime::{Runtime, RuntimeConfig};
use secrets_store_sync::SecretSync;

use crate::CliError;
use crate::local::SandboxOptions;

#[derive(Clone, Debug, Args)]
pub struct ServeOptions {
    /// CSI endpoint kubelet connects to.
    #[arg(long, default_value = "unix:///tmp/csi.sock")]
    pub endpoint: String,
    /// This node's name (the Downward API's spec.nodeName).
    #[arg(long, env = "KUBE_NODE_NAME")]
    pub nodeid: String,
    /// Directory with providers.yaml and the wasm modules (a ConfigMap volume); watched for changes.
    #[arg(long)]
    pub providers_dir: Option<PathBuf>,
    /// Directory of legacy gRPC provider sockets (`<provider>.sock`).
    #[arg(long, default_value = "/var/run/secrets-store-csi-providers")]
    pub provider_volume: PathBuf,
    /// More legacy provider socket directories, comma-separated; searched before --provider-volume.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "/etc/kubernetes/secrets-store-csi-providers"
    )]
    pub additional_provider_volume_paths: Vec<PathBuf>,
    /// The kubelet's root directory; volumes are only mounted below its `pods` directory.
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,
    /// Refresh mounted contents when kubelet republishes (CSIDriver requiresRepublish).
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", require_equals = true)]
    pub enable_secret_rotation: bool,
    /// A volume is refreshed at most once per this interval (e.g. 2m, 90s).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub rotation_poll_interval: Duration,
    /// Create and update Kubernetes Secrets from spec.secretObjects (needs the Secret RBAC verbs).
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", require_equals = true)]
    pub enable_secret_sync: bool,
    /// Prometheus /metrics, /healthz and /readyz.
    #[arg(long, default_value = ":8095")]
    pub metrics_addr: String,
    /// Largest response accepted from a legacy gRPC provider.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_call_recv_msg_size: usize,
    /// Deadline of a legacy gRPC provider's Mount.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub provider_timeout: Duration,
    /// Size cap of each volume's tmpfs, in MiB.
    #[arg(long, default_value_t = 64)]
    pub volume_size_limit_mib: u64,
    /// Provider calls running at once on this node.
    #[arg(long, default_value_t = 16)]
    pub max_concurrent_provider_calls: u32,
    /// A kubeconfig (otherwise the in-cluster configuration).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Directory for compiled provider modules.
    #[arg(long)]
    pub artifact_cache: Option<PathBuf>,
    /// Extra CA bundle trusted for providers' outbound TLS (repeatable).
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<PathBuf>,
    /// Send providers' connections for HOST:PORT to ADDRESS[:PORT] (repeatable; tests and local runs).
    #[arg(long = "resolve", value_name = "HOST:PORT=ADDR")]
    pub resolve: Vec<String>,
}

/// A flag value that is not a duration.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration like 2m, 90s, 1h30m or 500ms")]
pub struct DurationError {
    text: String,
}

/// Go-style durations as upstream's flags take them: `2m`, `90s`, `500ms`, `1h30m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError {
        text: text.to_string(),
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = rest.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|_| bad());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn metrics_addr(text: &str) -> Result<SocketAddr, CliError> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse().map_err(|source| CliError::MetricsAddr {
        text: text.to_string(),
        source,
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing calls in flight, then stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing calls in flight, then stopping"),
    }
}

/// The CSI node plugin: providers, the Kubernetes side, the metrics endpoint, then the CSI
/// services on the endpoint until SIGTERM.
pub async fn serve(options: ServeOptions) -> Result<(), CliError> {
    if options.nodeid.trim().is_empty() {
        return Err(CliError::Option {
            option: "--nodeid",
            message: "is required (or KUBE_NODE_NAME)".into(),
        });
    }
    let socket = server::socket_path(&options.endpoint).map_err(CliError::Endpoint)?;
    let metrics_addr = metrics_addr(&options.metrics_addr)?;
    let metrics = Arc::new(Metrics::new());

    let (registry, _watch) = start_providers(&options, &metrics)?;
    let (cluster, events) = connect_cluster(&options).await?;
    let publisher = Arc::new(
        Publisher::new(publisher_config(&options), registry, cluster).with_metrics(metrics.clone()),
    );

    let ready: Readiness = {
        let publisher = publisher.clone();
        Arc::new(move || publisher.providers().is_ready() && publisher.classes().is_synced())
    };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let metrics_shutdown = {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let (bound, metrics_task) =
        secrets_store_metrics::serve(metrics_addr, metrics.clone(), ready, metrics_shutdown)
            .await
            .map_err(CliError::Metrics)?;
    tracing::info!(%bound, node = %options.nodeid, rotation = options.enable_secret_rotation, "metrics and health endpoints up");

    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(env!(
            "CARGO_PKG_VERSION"
        ))))
        .add_service(NodeServer::new(NodeService::new(
            &options.nodeid,
            publisher.clone(),
        )));
    let result = server::serve(router, &socket, termination()).await;
    let _ = shutdown_tx.send(true);
    let _ = metrics_task.await;
    events.flush().await;
    result.map_err(CliError::Endpoint)
}

/// The runtime and the provider registry, loaded once and then (with a providers directory)
/// watched; every load and reload reaches the metrics through the registry's observer.
fn start_providers(
    options: &ServeOptions,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<ProviderRegistry>, Option<WatchHandle>), CliError> {
    let sandbox = SandboxOptions {
        resolve: options.resolve.clone(),
        ca: options.ca_files.clone(),
        ..Default::default()
    };
    let runtime = Runtime::new(RuntimeConfig {
        artifact_cache: options.artifact_cache.clone(),
        max_instances: options.max_concurrent_provider_calls,
        network: sandbox.network()?,
        observer: metrics.clone(),
        ..Default::default()
    })?;
    let legacy_dirs = RegistryConfig::upstream_legacy_dirs(
        &options.provider_volume,
        &options.additional_provider_volume_paths,
    );
    let registry = ProviderRegistry::with_observer(
        runtime,
        RegistryConfig {
            providers_dir: options.providers_dir.clone(),
            legacy_dirs,
            max_recv_msg_size: options.max_call_recv_msg_size,
        },
        metrics.clone(),
    );
    let report = registry.reload();
    for (name, why) in &report.failed {
        tracing::warn!(provider = %name, error = %why, "provider not loaded");
    }
    let watch = match &options.providers_dir {
        Some(_) => Some(registry.watch().map_err(CliError::Watch)?),
        None => None,
    };
    Ok((registry, watch))
}

/// The Kubernetes side of the pipeline, and the event recorder to flush on the way out.
async fn connect_cluster(options: &ServeOptions) -> Result<(Cluster, EventRecorder), CliError> {
    let client = secrets_store_k8s::build_client(&ClientOptions {
        kubeconfig: options.kubeconfig.clone(),
        ..Default::default()
    })
    .await
    .map_err(|source| CliError::Kubernetes {
        option: "--kubeconfig",
        source,
    })?;
    let classes = SpcCache::start(client.clone());
    let pod_status = PodStatusWriter::new(client.clone(), &options.nodeid).map_err(|source| {
        CliError::Kubernetes {
            option: "--nodeid",
            source,
        }
    })?;
    let events = EventRecorder::new(
        client.clone(),
        "csi-secrets-store-controller",
        &options.nodeid,
    );
    let secrets = SecretSync::new(client, events.clone(), options.enable_secret_sync);
    let cluster = Cluster {
        classes,
        pod_status,
        events: events.clone(),
        secrets,
    };
    Ok((cluster, events))
}

fn publisher_config(options: &ServeOptions) -> PublisherConfig {
    PublisherConfig {
        node_name: options.nodeid.clone(),
        kubelet_dir: options.kubelet_dir.clone(),
        rotation_interval: options
            .enable_secret_rotation
            .then_some(options.rotation_poll_interval),
        provider_timeout: options.provider_timeout,
        volume_size_bytes: options.volume_size_limit_mib << 20,
    }
}

#[derive(Clone, Debug, Args)]
pub struct ProviderOptions {
    /// Socket to serve the v1alpha1 provider API on (the upstream driver looks for `<name>.sock`).
    #[arg(long)]
    pub endpoint: String,
    /// The provider component.
    #[arg(long)]
    pub module: PathBuf,
    /// The provider's name (default: the module's file name without extension).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub sandbox: SandboxOptions,
}

pub async fn provider(options: ProviderOptions) -> Result<(), CliError> {
    let socket = server::socket_path(&options.endpoint).map_err(CliError::Endpoint)?;
    let name = options
        .name
        .clone()
        .or_else(|| {
            options
                .module
                .file_stem()
                .map(|s| s.to_string_lossy().trim_end_matches(".wasm").to_string())
        })
        .unwrap_or_else(|| "provider".to_string());
    let runtime = options.sandbox.runtime()?;
    let provider = options
        .sandbox
        .load(&runtime, &name, &options.module)
        .await?;
    tracing::info!(provider = %name, digest = provider.digest(), socket = %socket.display(), "serving the v1alpha1 provider API");
    let router = tonic::transport::Server::builder().add_service(CsiDriverProviderServer::new(
        ProviderApiService::new(provider),
    ));
    server::serve(router, &socket, termination())
        .await
        .map_err(CliError::Endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2 minutes").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn boolean_flags_accept_upstream_forms() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeOptions,
        }
        let parse = |extra: &[&str]| {
            let mut args = vec!["x", "--nodeid=n"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
                .map(|c| (c.serve.enable_secret_rotation, c.serve.enable_secret_sync))
        };
        assert_eq!(parse(&[]).unwrap(), (false, false));
        assert_eq!(
            parse(&["--enable-secret-rotation", "--enable-secret-sync"]).unwrap(),
            (true, true)
        );
        assert_eq!(
            parse(&[
                "--enable-secret-rotation=true",
                "--enable-secret-sync=false"
            ])
            .unwrap(),
            (true, false)
        );
        assert!(parse(&["--enable-secret-rotation=maybe"]).is_err());
        let cli =
            Cli::try_parse_from(["x", "--nodeid=n", "--rotation-poll-interval=1h30m"]).unwrap();
        assert_eq!(cli.serve.rotation_poll_interval, Duration::from_secs(5400));
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(
            metrics_addr(":8095").unwrap(),
            "0.0.0.0:8095".parse().unwrap()
        );
        assert_eq!(
            metrics_addr("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert!(metrics_addr("nonsense").is_err());
    }
}
