//! The provider contract as plain Rust types.
//!
//! The same model describes a mount whether the provider is a wasm component (see
//! `wit/provider.wit`) or a legacy gRPC daemon (`v1alpha1.CSIDriverProvider`), so the publish
//! pipeline, the writer and the gRPC surfaces all speak it. [`validate_payload`] is the contract's
//! rule for what a payload may contain (kubelet's file-name rules); every consumer of a provider's
//! answer applies this one definition.

mod path;

pub use path::{
    MAX_ELEMENT_LEN, MAX_MODE, MAX_PATH_LEN, PathError, shown as shown_path, validate_path,
    validate_payload,
};

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The mode a file gets when neither the provider nor the request says otherwise (kubelet's 0644).
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// What stands in for a secret value in every log line, error message, event and `Debug` output.
pub const REDACTED: &str = "[REDACTED]";

/// `Debug` for a list of HTTP headers that shows their names only: header values (Authorization,
/// cookies, API keys) can carry credentials.
pub struct HeaderNames<'a>(pub &'a [(String, String)]);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// The volume-context key under which kubelet passes the pod's service-account tokens: JSON of the
/// form `{"<audience>":{"token":…,"expirationTimestamp":…}}` (CSIDriver `tokenRequests`).
pub const SERVICE_ACCOUNT_TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";

/// One mount request, as handed to a provider.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MountRequest {
    /// SecretProviderClass parameters with the volume context merged on top.
    pub attributes: BTreeMap<String, String>,
    /// The nodePublishSecretRef data.
    pub secrets: BTreeMap<String, String>,
    /// Mode for files the provider does not give one to.
    pub default_file_mode: u32,
    /// Versions the previous mount of this volume reported.
    pub current_object_versions: Vec<ObjectVersion>,
}

// Secrets and service-account tokens live in this struct: Debug shows keys only.
impl fmt::Debug for MountRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MountRequest")
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field(
                "default_file_mode",
                &format_args!("{:o}", self.default_file_mode),
            )
            .field("current_object_versions", &self.current_object_versions)
            .finish()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectVersion {
    pub id: String,
    pub version: String,
}

/// One file of a mount's payload.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    /// Relative path below the target directory; validated by the writer before anything is written.
    pub path: String,
    pub mode: u32,
    pub contents: Vec<u8>,
}

// File contents are secrets: Debug shows the size only.
impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("len", &self.contents.len())
            .finish()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountResponse {
    pub files: Vec<File>,
    pub object_versions: Vec<ObjectVersion>,
}

/// The kinds of failure a provider reports; mirrors `error-kind` in the WIT world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidParameters,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    /// Throttled by the store; retry after this many milliseconds when known.
    Throttled(Option<u64>),
    /// The store answered with this unexpected HTTP status.
    Upstream(u16),
    /// The store could not be reached (network, TLS, timeout, or denied by the outbound policy).
    Unavailable,
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::InvalidParameters => f.write_str("invalid parameters"),
            ErrorKind::Unauthenticated => f.write_str("unauthenticated"),
            ErrorKind::PermissionDenied => f.write_str("permission denied"),
            ErrorKind::NotFound => f.write_str("not found"),
            ErrorKind::Throttled(Some(ms)) => write!(f, "throttled (retry after {ms} ms)"),
            ErrorKind::Throttled(None) => f.write_str("throttled"),
            ErrorKind::Upstream(status) => write!(f, "store answered HTTP {status}"),
            ErrorKind::Unavailable => f.write_str("store unavailable"),
            ErrorKind::Internal => f.write_str("internal provider error"),
        }
    }
}

/// A failure the provider itself reported: `object (kind): message`, or `kind: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", subject(.object.as_deref(), .kind))]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// The object concerned, e.g. `secret/db-password`.
    pub object: Option<String>,
    pub message: String,
}

fn subject(object: Option<&str>, kind: &ErrorKind) -> String {
    match object {
        Some(object) => format!("{object} ({kind})"),
        None => kind.to_string(),
    }
}
