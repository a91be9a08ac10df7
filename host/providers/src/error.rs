//! The registry's errors: finding a provider ([`RegistryError`]) and calling one
//! ([`ProviderCallError`]), plus [`GrpcCode`], our own copy of the gRPC status codes so that this
//! crate's callers never need tonic's types (the csi crate alone turns errors into `tonic::Status`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Finding a provider by name failed, or the registry could not start watching.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "invalid provider name {name:?}: a provider name is 1 to 30 characters of a-z, A-Z, 0-9, `_` and `-`"
    )]
    InvalidName { name: String },
    #[error("provider {name:?} not found: {}", not_found_detail(.name, .searched, .wasm_available))]
    NotFound {
        name: String,
        /// The directories searched for `<name>.sock`, in search order.
        searched: Vec<PathBuf>,
        /// The wasm providers that are loaded.
        wasm_available: Vec<String>,
    },
    /// The provider is listed in providers.yaml but its module could not be loaded (and no legacy
    /// socket of that name exists either).
    #[error(
        "wasm provider {name:?} is configured (module {}) but not loaded: {reason}; no socket {name}.sock exists in {} either",
        .module.display(),
        dir_list(.searched)
    )]
    NotLoaded {
        name: String,
        module: PathBuf,
        reason: String,
        searched: Vec<PathBuf>,
    },
    #[error("watching the providers directory: {}: {source}", .dir.display())]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("watching the providers directory: starting the watcher thread: {source}")]
    WatchThread {
        #[source]
        source: std::io::Error,
    },
}

fn dir_list(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no provider socket directories configured)".to_string();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn not_found_detail(name: &str, searched: &[PathBuf], wasm: &[String]) -> String {
    let wasm = if wasm.is_empty() {
        "no wasm providers are loaded".to_string()
    } else {
        format!(
            "it is not among the loaded wasm providers ({})",
            wasm.join(", ")
        )
    };
    format!(
        "{wasm}, and no socket {name}.sock exists in {}",
        dir_list(searched)
    )
}

/// A call to a provider failed. Messages name the provider (and the socket of a gRPC provider);
/// they never contain the request's secrets.
#[derive(Debug, thiserror::Error)]
pub enum ProviderCallError {
    /// The wasm runtime's own error; it names the provider and the bound or failure.
    #[error(transparent)]
    Wasm(secrets_store_runtime::CallError),
    /// The gRPC provider answered with a non-OK status, or reported an error code in its response
    /// (then `code` is `Unknown` and the message carries the provider's code).
    #[error("gRPC provider {provider} (socket {}) failed with {code}: {message}", .socket.display())]
    Grpc {
        provider: String,
        code: GrpcCode,
        message: String,
        socket: PathBuf,
    },
    /// The provider's socket could not be connected to (after the retries).
    #[error("gRPC provider {provider} is unreachable at {}: {message}", .socket.display())]
    Unreachable {
        provider: String,
        socket: PathBuf,
        message: String,
    },
    /// The caller's deadline passed before the provider answered.
    #[error("provider {provider} did not answer within {after:?} (deadline exceeded)")]
    Deadline { provider: String, after: Duration },
    /// The gRPC provider answered, but with something the driver must not write.
    #[error("gRPC provider {provider} (socket {}) returned an invalid response, nothing was written: {message}", .socket.display())]
    InvalidResponse {
        provider: String,
        message: String,
        socket: PathBuf,
    },
}

impl From<secrets_store_runtime::CallError> for ProviderCallError {
    fn from(error: secrets_store_runtime::CallError) -> Self {
        ProviderCallError::Wasm(error)
    }
}

impl ProviderCallError {
    pub fn provider(&self) -> &str {
        match self {
            ProviderCallError::Wasm(e) => e.provider(),
            ProviderCallError::Grpc { provider, .. }
            | ProviderCallError::Unreachable { provider, .. }
            | ProviderCallError::Deadline { provider, .. }
            | ProviderCallError::InvalidResponse { provider, .. } => provider,
        }
    }

    /// A short, bounded label for metrics (`error_type`) and event reasons.
    pub fn kind_label(&self) -> &'static str {
        match self {
            ProviderCallError::Wasm(e) => e.kind_label(),
            ProviderCallError::Grpc { .. } => "grpc_error",
            ProviderCallError::Unreachable { .. } => "provider_unreachable",
            ProviderCallError::Deadline { .. } => "deadline",
            ProviderCallError::InvalidResponse { .. } => "invalid_response",
        }
    }
}

/// The gRPC status codes, numbered as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code's wire number.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code of a wire number; numbers outside 0..=16 are `Unknown`, as gRPC specifies.
    pub fn from_i32(value: i32) -> GrpcCode {
        usize::try_from(value)
            .ok()
            .and_then(|i| GrpcCode::ALL.get(i).copied())
            .unwrap_or(GrpcCode::Unknown)
    }

    /// The canonical upper-case name, e.g. `UNAVAILABLE`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<tonic::Code> for GrpcCode {
    fn from(code: tonic::Code) -> Self {
        GrpcCode::from_i32(code as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_tonic_and_the_wire() {
        for (i, code) in GrpcCode::ALL.iter().enumerate() {
            assert_eq!(code.as_i32(), i as i32);
            assert_eq!(GrpcCode::from_i32(i as i32), *code);
            assert_eq!(GrpcCode::from(tonic::Code::from_i32(i as i32)), *code);
        }
        assert_eq!(GrpcCode::from_i32(17), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_i32(-1), GrpcCode::Unknown);
        assert_eq!(GrpcCode::Unavailable.to_string(), "UNAVAILABLE");
    }

    #[test]
    fn not_found_names_dirs_and_wasm_providers() {
        let e = RegistryError::NotFound {
            name: "vault".into(),
            searched: vec!["/etc/p".into(), "/var/run/p".into()],
            wasm_available: vec!["azure".into(), "echo".into()],
        };
        assert_eq!(
            e.to_string(),
            "provider \"vault\" not found: it is not among the loaded wasm providers (azure, echo), \
             and no socket vault.sock exists in /etc/p, /var/run/p"
        );
    }
}
