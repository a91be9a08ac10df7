//! Read-only files the operator made available to this provider (its policy lists them).

/// The host's reason for refusing to hand out a file (not listed, missing, too large).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// So that a refusal can be a [`crate::error`] message as it is.
impl From<Refused> for String {
    fn from(refused: Refused) -> Self {
        refused.0
    }
}

/// The file's contents, or the host's reason for refusing.
pub fn read(path: &str) -> Result<Vec<u8>, Refused> {
    crate::bindings::secrets_store::provider::host_files::read(path).map_err(Refused)
}
