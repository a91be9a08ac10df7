//! Builds the [`kube::Client`] the driver uses: from an explicit kubeconfig file (`--kubeconfig`)
//! or, without one, from the pod's in-cluster service account. TLS is rustls with the ring provider.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::Error;

/// User agent sent with every request unless the caller sets another.
pub const DEFAULT_USER_AGENT: &str =
    concat!("secrets-store-csi-driver-wasm/", env!("CARGO_PKG_VERSION"));

/// How to reach the API server.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// A kubeconfig file; `None` means the in-cluster configuration (service account token, CA and
    /// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`).
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use; `None` means its current context.
    pub context: Option<String>,
    /// The `User-Agent` header, so API server audit logs and priority-and-fairness rules can tell
    /// the driver's requests apart.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            user_agent: DEFAULT_USER_AGENT.to_string(),
        }
    }
}

/// Builds a client as `options` say.
pub async fn build(options: &ClientOptions) -> Result<Client, Error> {
    let config = match &options.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| config_error(format!("reading kubeconfig {}", path.display()), e))?;
            let kc_options = KubeConfigOptions {
                context: options.context.clone(),
                ..Default::default()
            };
            Config::from_custom_kubeconfig(kubeconfig, &kc_options)
                .await
                .map_err(|e| config_error(format!("loading kubeconfig {}", path.display()), e))?
        }
        None => Config::incluster().map_err(|e| {
            config_error(
                "no --kubeconfig given and the in-cluster configuration is not usable \
                 (not running in a pod with a service account?)"
                    .to_string(),
                e,
            )
        })?,
    };
    from_config(config, &options.user_agent)
}

/// Builds a client from a prepared configuration, adding the user agent.
pub fn from_config(mut config: Config, user_agent: &str) -> Result<Client, Error> {
    let value = http::HeaderValue::from_str(user_agent).map_err(|e| {
        config_error(
            format!("user agent {user_agent:?} is not a valid header value"),
            e,
        )
    })?;
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((http::header::USER_AGENT, value));
    install_crypto_provider();
    Client::try_from(config)
        .map_err(|e| config_error("building the Kubernetes client".to_string(), e))
}

/// A configuration error: `what` failed because of `source` (whose text the message repeats, as
/// the driver logs messages, not chains).
fn config_error(what: String, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Config {
        message: format!("{what}: {source}"),
        source: Box::new(source),
    }
}

/// rustls needs a process-wide crypto provider when more than one could be compiled in (another
/// crate in the binary may enable aws-lc-rs); pin ring, unless the binary already chose one.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: some provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
