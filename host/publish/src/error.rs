//! Why a publish or unpublish failed. Each variant says which volume, class, provider or object it
//! concerns; [`PublishError::class`](crate::ErrorClass) classifies it, and the gRPC surface maps
//! the class to a status code in one place (`secrets-store-csi`).

use std::path::PathBuf;

use secrets_store_providers::{ProviderCallError, RegistryError};

use crate::target::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("an operation on volume {volume_id:?} is already in progress")]
    Busy { volume_id: String },
    #[error("SecretProviderClass {name:?} not found in namespace {namespace:?}")]
    ClassNotFound { namespace: String, name: String },
    #[error("SecretProviderClass {namespace}/{name}: {reason}")]
    InvalidClass {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("SecretProviderClass {namespace}/{class}: {source}")]
    ProviderNotFound {
        namespace: String,
        class: String,
        source: Box<RegistryError>,
    },
    #[error("SecretProviderClass {namespace}/{class}: {source}")]
    Provider {
        namespace: String,
        class: String,
        source: Box<ProviderCallError>,
    },
    #[error("target path {target:?} has a {fstype} file system mounted that is not ours")]
    ForeignMount { target: PathBuf, fstype: String },
    #[error("mounting the volume at {target:?}: {source}")]
    Mount {
        target: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the files into {target:?}: {source}")]
    Write {
        target: PathBuf,
        source: Box<secrets_store_writer::WriteError>,
    },
    #[error("SecretProviderClass {namespace}/{class}: Kubernetes API: {source}")]
    Cluster {
        namespace: String,
        class: String,
        source: Box<secrets_store_k8s::Error>,
    },
    #[error("removing the volume at {target:?}: {source}")]
    Unmount {
        target: PathBuf,
        source: std::io::Error,
    },
}

impl PublishError {
    /// The reason used for events and the `error_type` metric label (upstream's names where they
    /// exist).
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::InvalidArgument(_) | PublishError::Target(_) => "InvalidArgument",
            PublishError::Busy { .. } => "OperationInProgress",
            PublishError::ClassNotFound { .. } => "SecretProviderClassNotFound",
            PublishError::InvalidClass { .. } => "InvalidSecretProviderClass",
            PublishError::ProviderNotFound { .. } => "ProviderNotFound",
            PublishError::Provider { source, .. }
                if matches!(**source, ProviderCallError::Wasm(_)) =>
            {
                "ProviderError"
            }
            PublishError::Provider { .. } => "GRPCProviderError",
            PublishError::ForeignMount { .. } | PublishError::Mount { .. } => {
                "FailedToEnsureMountPoint"
            }
            PublishError::Write { .. } => "FileWriteError",
            PublishError::Cluster { .. } => "FailedToUpdatePodStatus",
            PublishError::Unmount { .. } => "FailedToUnmount",
        }
    }
}
