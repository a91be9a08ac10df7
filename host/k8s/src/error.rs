//! The crate's error type. Its variants are the cases the publish pipeline maps to gRPC codes:
//! a missing object (NotFound), RBAC refusing a verb (PermissionDenied), a write lost to a concurrent
//! writer (Aborted), anything else the API server answered (by status code), the API server out of
//! reach (Unavailable), and an object that cannot be written as asked (InvalidArgument).
//!
//! Messages name the object and the operation; they never carry object content, so no secret value
//! can reach a log through them.

/// What went wrong talking to the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist.
    #[error("{kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        /// Kind of the object, e.g. `SecretProviderClass`.
        kind: String,
        /// Namespace searched.
        namespace: String,
        /// Name searched.
        name: String,
    },
    /// The API server refused the verb (RBAC).
    #[error("forbidden to {verb} {resource}: {message}")]
    Forbidden {
        /// The API verb, e.g. `create`.
        verb: String,
        /// The resource, e.g. `secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io`.
        resource: String,
        /// The API server's explanation.
        message: String,
    },
    /// A write kept losing to concurrent writers (409 Conflict or AlreadyExists after retries).
    #[error("conflict writing {kind} {namespace}/{name}: {message}")]
    Conflict {
        /// Kind of the object.
        kind: String,
        /// Namespace of the object.
        namespace: String,
        /// Name of the object.
        name: String,
        /// The API server's explanation.
        message: String,
    },
    /// The API server answered with an error status not covered by the variants above
    /// (for example 429, 500, 503 after the client's own retries).
    #[error("{operation} failed: HTTP {code} {reason}: {message}")]
    Api {
        /// What was attempted, e.g. `get secretproviderclasses default/foo`.
        operation: String,
        /// HTTP status code.
        code: u16,
        /// The Status reason, e.g. `ServiceUnavailable`.
        reason: String,
        /// The API server's message.
        message: String,
    },
    /// The API server could not be reached, or the exchange broke off.
    #[error("{operation} failed: Kubernetes API unavailable: {message}")]
    Unavailable {
        /// What was attempted.
        operation: String,
        /// The transport error, as text.
        message: String,
        /// The transport error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The object cannot be written as asked (rejected by the API server as invalid, or by the checks
    /// made here before writing).
    #[error("invalid {kind} {name}: {message}")]
    InvalidObject {
        /// Kind of the object.
        kind: String,
        /// `namespace/name` of the object.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// No client configuration could be loaded.
    #[error("Kubernetes client configuration: {message}")]
    Config {
        /// What could not be loaded, and why.
        message: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Conflict { .. } => true,
            Error::Api { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }
}

/// Identifies one API call for error messages; [`Op::error`] maps a kube error for it to
/// [`Error`]. Public so that crates calling the API themselves (secret sync) classify errors the
/// same way.
#[derive(Clone, Debug)]
pub struct Op<'a> {
    /// The API verb, e.g. `get`.
    pub verb: &'static str,
    /// Kind of the object, e.g. `Secret`.
    pub kind: &'a str,
    /// Plural resource with group, as the API server names it in messages.
    pub resource: &'a str,
    /// Namespace of the object (empty: cluster-wide or all namespaces).
    pub namespace: &'a str,
    /// Name of the object (empty: a list).
    pub name: &'a str,
}

impl Op<'_> {
    fn describe(&self) -> String {
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (true, true) => format!("{} {}", self.verb, self.resource),
            (false, true) => format!(
                "{} {} in namespace {}",
                self.verb, self.resource, self.namespace
            ),
            (_, false) => format!(
                "{} {} {}/{}",
                self.verb, self.resource, self.namespace, self.name
            ),
        }
    }

    /// Maps a kube error for this call to the crate's error.
    pub fn error(&self, err: kube::Error) -> Error {
        match err {
            kube::Error::Api(status) => {
                let code = status.code;
                let reason = status.reason.clone();
                let message = status.message.clone();
                match (code, reason.as_str()) {
                    (404, _) => Error::NotFound {
                        kind: self.kind.to_string(),
                        namespace: self.namespace.to_string(),
                        name: self.name.to_string(),
                    },
                    (403, _) => Error::Forbidden {
                        verb: self.verb.to_string(),
                        resource: self.resource.to_string(),
                        message,
                    },
                    (409, _) => Error::Conflict {
                        kind: self.kind.to_string(),
                        namespace: self.namespace.to_string(),
                        name: self.name.to_string(),
                        message,
                    },
                    (422, _) => Error::InvalidObject {
                        kind: self.kind.to_string(),
                        name: format!("{}/{}", self.namespace, self.name),
                        message,
                    },
                    _ => Error::Api {
                        operation: self.describe(),
                        code,
                        reason,
                        message,
                    },
                }
            }
            other => Error::Unavailable {
                operation: self.describe(),
                message: other.to_string(),
                source: Box::new(other),
            },
        }
    }
}
