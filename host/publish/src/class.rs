//! One classification of every publish failure, by what a retry can achieve. The gRPC edge turns
//! an [`ErrorClass`] into a status code and needs no other crate's error types; the choices follow
//! the CSI spec for argument errors (what csi-sanity checks).

use secrets_store_contract::ErrorKind;
use secrets_store_providers::{GrpcCode, ProviderCallError, RegistryError};
use secrets_store_runtime::CallError;

use crate::error::PublishError;

/// What kind of failure an error is, named after the gRPC code it becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request, the class or the provider's parameters are wrong: retrying the same is useless.
    InvalidArgument,
    /// Something the request names does not exist.
    NotFound,
    /// The node or the store is not in a state to serve this; fixing that makes a retry succeed.
    FailedPrecondition,
    /// Another operation on the volume is in progress.
    Aborted,
    /// A dependency is briefly away; retry.
    Unavailable,
    DeadlineExceeded,
    /// A limit was hit (memory, output size, the store's throttling).
    ResourceExhausted,
    Unauthenticated,
    PermissionDenied,
    /// A fault of the driver or the provider.
    Internal,
    /// A gRPC provider's own status, passed on as it answered.
    Provider(GrpcCode),
}

impl PublishError {
    pub fn class(&self) -> ErrorClass {
        match self {
            PublishError::InvalidArgument(_) | PublishError::Target(_) => {
                ErrorClass::InvalidArgument
            }
            PublishError::Busy { .. } => ErrorClass::Aborted,
            PublishError::ClassNotFound { .. } => ErrorClass::NotFound,
            PublishError::InvalidClass { .. } => ErrorClass::InvalidArgument,
            PublishError::ProviderNotFound { source, .. } => match **source {
                RegistryError::InvalidName { .. } => ErrorClass::InvalidArgument,
                _ => ErrorClass::FailedPrecondition,
            },
            PublishError::Provider { source, .. } => ErrorClass::of_provider_call(source),
            PublishError::ForeignMount { .. } => ErrorClass::FailedPrecondition,
            PublishError::Mount { .. }
            | PublishError::Write { .. }
            | PublishError::Unmount { .. } => ErrorClass::Internal,
            PublishError::Cluster { source, .. } if source.is_transient() => {
                ErrorClass::Unavailable
            }
            PublishError::Cluster { .. } => ErrorClass::Internal,
        }
    }
}

impl ErrorClass {
    /// A call to a wasm or gRPC provider failed.
    pub fn of_provider_call(error: &ProviderCallError) -> ErrorClass {
        match error {
            ProviderCallError::Wasm(call) => ErrorClass::of_call(call),
            ProviderCallError::Grpc { code, .. } => ErrorClass::Provider(*code),
            ProviderCallError::Unreachable { .. } => ErrorClass::Unavailable,
            ProviderCallError::Deadline { .. } => ErrorClass::DeadlineExceeded,
            ProviderCallError::InvalidResponse { .. } => ErrorClass::Internal,
        }
    }

    /// A call into a wasm provider failed: its own error kind, or the sandbox's bound.
    pub fn of_call(error: &CallError) -> ErrorClass {
        match error {
            CallError::Provider { error, .. } => match error.kind {
                ErrorKind::InvalidParameters => ErrorClass::InvalidArgument,
                ErrorKind::Unauthenticated => ErrorClass::Unauthenticated,
                ErrorKind::PermissionDenied => ErrorClass::PermissionDenied,
                ErrorKind::NotFound => ErrorClass::NotFound,
                ErrorKind::Throttled(_) => ErrorClass::ResourceExhausted,
                ErrorKind::Upstream(status) if status >= 500 => ErrorClass::Unavailable,
                ErrorKind::Upstream(_) => ErrorClass::FailedPrecondition,
                ErrorKind::Unavailable => ErrorClass::Unavailable,
                ErrorKind::Internal => ErrorClass::Internal,
            },
            CallError::Deadline { .. } => ErrorClass::DeadlineExceeded,
            CallError::MemoryLimit { .. } | CallError::OutputLimit { .. } => {
                ErrorClass::ResourceExhausted
            }
            CallError::Trap { .. }
            | CallError::InvalidOutput { .. }
            | CallError::Internal { .. } => ErrorClass::Internal,
        }
    }
}
