//! The `secrets-store-host` binary's commands, as a library so the demo and the tests drive exactly
//! the code the binary runs.
//!
//! | module | job |
//! |---|---|
//! | [`serve`] | `serve` (the CSI node plugin) and `provider` (a wasm provider behind v1alpha1) |
//! | [`local`] | `mount`: a provider on a SecretProviderClass into a local directory |
//! | [`inspect`] | `inspect`: whether a module fits the provider world, and what it needs |
//! | [`logging`] | the log options every command shares |

pub mod inspect;
pub mod local;
pub mod logging;
pub mod serve;

use std::path::PathBuf;

/// Errors of the commands; each names the option or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An option's value is unusable.
    #[error("{option}: {message}")]
    Option {
        option: &'static str,
        message: String,
    },
    #[error("--metrics-addr: {text:?} is not HOST:PORT or :PORT")]
    MetricsAddr {
        text: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("--resolve: {0}")]
    Resolve(#[source] secrets_store_runtime::NetError),
    #[error("policy: {0}")]
    Policy(#[source] secrets_store_runtime::PolicyError),
    /// A file or directory could not be read or created.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("{}: not a valid SecretProviderClass: {source}", .path.display())]
    InvalidClass {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("{}: expected a map of strings: {source}", .path.display())]
    NotAStringMap {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("{}: data.{key} is not base64", .path.display())]
    NotBase64 {
        path: PathBuf,
        key: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("{}: data.{key} is not UTF-8", .path.display())]
    NotUtf8 {
        path: PathBuf,
        key: String,
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// A file that was read but does not hold what the command needs.
    #[error("{}: {message}", .path.display())]
    Content { path: PathBuf, message: String },
    #[error("{}: {source}", .path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: secrets_store_runtime::NetError,
    },
    #[error("--endpoint: {0}")]
    Endpoint(#[source] secrets_store_csi::server::ServeError),
    #[error("--providers-dir: {0}")]
    Watch(#[source] secrets_store_providers::RegistryError),
    #[error("{option}: {source}")]
    Kubernetes {
        option: &'static str,
        #[source]
        source: secrets_store_k8s::Error,
    },
    #[error("--metrics-addr: {0}")]
    Metrics(#[source] secrets_store_metrics::ServeError),
    #[error(transparent)]
    Load(#[from] secrets_store_runtime::LoadError),
    #[error(transparent)]
    Call(#[from] secrets_store_runtime::CallError),
    #[error("writing into {}: {source}", .target.display())]
    Write {
        target: PathBuf,
        #[source]
        source: secrets_store_writer::WriteError,
    },
}

impl CliError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| CliError::Io { path, source }
    }

    pub(crate) fn yaml(path: &std::path::Path) -> impl FnOnce(serde_norway::Error) -> Self {
        let path = path.to_path_buf();
        move |source| CliError::Yaml { path, source }
    }

    pub(crate) fn content(path: &std::path::Path, message: impl Into<String>) -> Self {
        CliError::Content {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
