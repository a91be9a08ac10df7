//! Why one Secret of `spec.secretObjects` was not synced. The texts end up in Warning events on the
//! pod and in the [`SyncReport`](crate::SyncReport): they name the entry, the object, the key or
//! the API call, never Secret data.

use crate::secret_sync::MANAGED_LABEL;
use crate::tls::TlsError;

/// Why a Secret was not synced (the part of the event after "cannot sync Secret ns/name for
/// SecretProviderClass ns/class: ").
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An entry without `secretName`.
    #[error("secretName is empty")]
    EmptySecretName,
    /// An entry without `data`.
    #[error("secretObjects[{index}] has no data")]
    NoData { index: usize },
    /// A data item without `objectName`.
    #[error("secretObjects[{index}].data[{item}] has no objectName")]
    NoObjectName { index: usize, item: usize },
    /// A data item without `key`.
    #[error("secretObjects[{index}].data[{item}] (object {object:?}) has no key")]
    NoKey {
        index: usize,
        item: usize,
        object: String,
    },
    /// A key the API server would refuse.
    #[error(
        "key {key:?} (object {object:?}) is not a valid Secret key: at most 253 letters, digits, '-', '_' and '.'"
    )]
    InvalidKey { key: String, object: String },
    /// A data item naming an object the mount did not write.
    #[error("object {object:?} (for key {key:?}) is not among the mounted objects ({mounted})")]
    MissingObject {
        object: String,
        key: String,
        /// The mounted object names, abbreviated.
        mounted: String,
    },
    /// A `kubernetes.io/tls` value that cannot be cut from its object.
    #[error("object {object:?} for key {key:?}: {source}")]
    Tls {
        object: String,
        key: String,
        #[source]
        source: TlsError,
    },
    /// Two entries name the same Secret; the first is used.
    #[error(
        "secretObjects[{index}] names the same Secret as secretObjects[{first}], which is used"
    )]
    DuplicateName { index: usize, first: usize },
    /// The pod found under the name is not the pod that mounted.
    #[error("pod {namespace}/{name} now has UID {uid}, not {expected}: the pod was replaced")]
    PodReplaced {
        namespace: String,
        name: String,
        uid: String,
        expected: String,
    },
    /// The pod has no controller and its SecretProviderClassPodStatus, the owner then, is not
    /// readable.
    #[error(
        "the pod has no controller, so its SecretProviderClassPodStatus must own them, and reading it failed: {0}"
    )]
    PodStatus(#[source] Box<secrets_store_k8s::Error>),
    /// RBAC refused a verb on secrets: says which permission is missing and how sync gets it.
    #[error(
        "the driver is not allowed to {verb} secrets in namespace {namespace:?} (missing RBAC \
         permission: verb {verb:?} on resource \"secrets\" in API group \"\"). Secret sync needs \
         get, create and update on secrets; installing the Helm chart with \
         syncSecret.enabled=true grants them. API server: {message}"
    )]
    Forbidden {
        verb: String,
        namespace: String,
        message: String,
        #[source]
        source: Box<secrets_store_k8s::Error>,
    },
    /// Any other API failure (including conflicts that outlasted the retries).
    #[error(transparent)]
    Api(Box<secrets_store_k8s::Error>),
    /// A Secret of that name exists and is not the driver's.
    #[error(
        "Secret {namespace}/{name} exists and is not managed by the Secrets Store CSI driver (it lacks \
         the label {label}=true), so it is not overwritten; choose another secretName or \
         delete that Secret",
        label = MANAGED_LABEL
    )]
    NotManaged { namespace: String, name: String },
    /// The existing Secret has another type, which cannot change.
    #[error(
        "the existing Secret has type {current:?} but secretObjects asks for {wanted:?}, and a \
         Secret's type cannot change; delete the Secret so that the driver creates it again"
    )]
    TypeChange { current: String, wanted: String },
    /// The existing Secret is immutable and holds other data.
    #[error(
        "the existing Secret is immutable and its data differs; delete it so that the driver \
         creates it again"
    )]
    Immutable,
}

impl From<secrets_store_k8s::Error> for SyncError {
    fn from(error: secrets_store_k8s::Error) -> Self {
        SyncError::Api(Box::new(error))
    }
}

impl SyncError {
    /// An API error for a call on secrets in `namespace`; a refused verb gets the RBAC advice.
    pub(crate) fn api(error: secrets_store_k8s::Error, namespace: &str) -> Self {
        match &error {
            secrets_store_k8s::Error::Forbidden { verb, message, .. } => SyncError::Forbidden {
                verb: verb.clone(),
                namespace: namespace.to_string(),
                message: message.clone(),
                source: Box::new(error),
            },
            _ => SyncError::Api(Box::new(error)),
        }
    }
}
