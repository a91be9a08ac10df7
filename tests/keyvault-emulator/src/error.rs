//! The emulator's error type: everything the library API and start-up can fail with.

use std::path::PathBuf;

/// Errors from starting the emulator, loading a seed, or changing its contents through the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seed file {path} is not valid YAML for the seed format: {message}")]
    SeedSyntax { path: PathBuf, message: String },
    #[error("seed is invalid: {0}")]
    Seed(String),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("vault '{0}' does not exist in the emulator")]
    UnknownVault(String),
    #[error("vault '{0}' already exists")]
    DuplicateVault(String),
    #[error(
        "unknown cloud '{0}' (built in: AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud; or a custom cloud from the config)"
    )]
    UnknownCloud(String),
    #[error("{kind} '{name}' in vault '{vault}' has no version '{version}'")]
    UnknownVersion {
        vault: String,
        kind: &'static str,
        name: String,
        version: String,
    },
    #[error("{kind} '{name}' does not exist in vault '{vault}'")]
    UnknownObject {
        vault: String,
        kind: &'static str,
        name: String,
    },
    #[error(
        "invalid object name '{0}': Key Vault names are 1-127 characters of 0-9, a-z, A-Z and '-'"
    )]
    InvalidName(String),
    #[error("invalid key: {0}")]
    Key(String),
    #[error("invalid certificate: {0}")]
    Certificate(String),
    #[error("identity error: {0}")]
    Identity(String),
}
