//! Read-only files the operator made available to this provider (its policy lists them).

/// The file's contents, or the host's reason for refusing (not listed, missing, too large).
pub fn read(path: &str) -> Result<Vec<u8>, String> {
    crate::bindings::secrets_store::provider::host_files::read(path)
}
