//! The runtime's errors. They carry enough structure for the driver to pick a gRPC code and an event
//! reason, and their text names the provider and the cause; they never contain secret values.

use std::path::PathBuf;
use std::time::Duration;

use secrets_store_contract::ProviderError;

/// Loading a provider module failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading provider module {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("provider {provider}: not a WebAssembly component: {detail}")]
    NotAComponent { provider: String, detail: String },
    #[error("provider {provider} does not fit the secrets-store:provider@0.1 world: {detail}")]
    WorldMismatch { provider: String, detail: String },
    #[error("provider {provider}: {detail}")]
    Compile { provider: String, detail: String },
    #[error("provider {provider}: invalid policy: {source}")]
    Policy {
        provider: String,
        source: crate::policy::PolicyError,
    },
    /// The wasmtime engine could not be set up (its error, formatted with its causes).
    #[error("runtime setup: {0}")]
    Engine(String),
    #[error("runtime setup: artifact cache {}: {what}: {source}", .dir.display())]
    ArtifactCache {
        dir: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "runtime setup: artifact cache {} must be owned by the driver's user and not writable by group or others",
        .dir.display()
    )]
    ArtifactCacheUnsafe { dir: PathBuf },
    #[error("runtime setup: starting the epoch thread: {0}")]
    EpochThread(#[source] std::io::Error),
    #[error("runtime setup: {0}")]
    Network(#[source] crate::net::NetError),
}

/// A call into a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("provider {provider} failed: {error}{}", denied_note(denied))]
    Provider {
        provider: String,
        error: ProviderError,
        denied: Vec<String>,
    },
    #[error(
        "provider {provider} did not finish within {timeout:?} (deadline exceeded){}",
        denied_note(denied)
    )]
    Deadline {
        provider: String,
        timeout: Duration,
        denied: Vec<String>,
    },
    #[error("provider {provider} exceeded its memory limit of {limit_mib} MiB")]
    MemoryLimit { provider: String, limit_mib: usize },
    #[error("provider {provider} trapped (crashed): {detail}")]
    Trap { provider: String, detail: String },
    #[error(
        "provider {provider} returned {actual} {what}, more than the policy's limit of {limit}"
    )]
    OutputLimit {
        provider: String,
        what: &'static str,
        limit: u64,
        actual: u64,
    },
    #[error("provider {provider} returned an unsafe payload, nothing was written: {reason}")]
    InvalidOutput { provider: String, reason: String },
    #[error("provider {provider}: {detail}")]
    Internal { provider: String, detail: String },
}

fn denied_note(denied: &[String]) -> String {
    if denied.is_empty() {
        String::new()
    } else {
        format!(
            "; outbound requests denied by the provider's policy: {}",
            denied.join(", ")
        )
    }
}

impl CallError {
    pub fn provider(&self) -> &str {
        match self {
            CallError::Provider { provider, .. }
            | CallError::Deadline { provider, .. }
            | CallError::MemoryLimit { provider, .. }
            | CallError::Trap { provider, .. }
            | CallError::OutputLimit { provider, .. }
            | CallError::InvalidOutput { provider, .. }
            | CallError::Internal { provider, .. } => provider,
        }
    }

    /// A short label for metrics and event reasons.
    pub fn kind_label(&self) -> &'static str {
        match self {
            CallError::Provider { .. } => "provider_error",
            CallError::Deadline { .. } => "deadline",
            CallError::MemoryLimit { .. } => "memory_limit",
            CallError::Trap { .. } => "trap",
            CallError::OutputLimit { .. } => "output_limit",
            CallError::InvalidOutput { .. } => "invalid_output",
            CallError::Internal { .. } => "internal",
        }
    }
}
