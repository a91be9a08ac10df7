//! [`RequestError`]: what the gRPC services refuse themselves, before a request reaches the
//! pipeline or the provider. `status` turns it into a `tonic::Status`, like every other error.

/// A request the services refuse, or a method they do not offer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A required field is empty.
    #[error("{0} missing in request")]
    Missing(&'static str),
    #[error("block volumes are not supported: secrets are mounted as files")]
    BlockVolume,
    #[error("{field} is not a JSON object of strings: {source}")]
    NotAStringMap {
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("permission {text:?} is not a file mode (decimal, at most 511)")]
    Permission { text: String },
    #[error("driver version is not set")]
    NoVersion,
    /// A CSI method this node-only driver does not implement.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
}
