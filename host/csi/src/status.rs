//! The one place where the driver's errors become gRPC statuses. The codes follow the CSI spec for
//! argument errors (what csi-sanity checks) and say what a retry can achieve for the rest.

use secrets_store_contract::ErrorKind;
use secrets_store_providers::{GrpcCode, ProviderCallError, RegistryError};
use secrets_store_publish::PublishError;
use secrets_store_runtime::CallError;
use tonic::{Code, Status};

pub fn from_publish(error: &PublishError) -> Status {
    let code = match error {
        PublishError::InvalidArgument(_) | PublishError::Target(_) => Code::InvalidArgument,
        PublishError::Busy { .. } => Code::Aborted,
        PublishError::ClassNotFound { .. } => Code::NotFound,
        PublishError::InvalidClass { .. } => Code::InvalidArgument,
        PublishError::ProviderNotFound { source, .. } => match **source {
            RegistryError::InvalidName { .. } => Code::InvalidArgument,
            _ => Code::FailedPrecondition,
        },
        PublishError::Provider { source, .. } => provider_code(source),
        PublishError::ForeignMount { .. } => Code::FailedPrecondition,
        PublishError::Mount { .. } | PublishError::Write { .. } | PublishError::Unmount { .. } => {
            Code::Internal
        }
        PublishError::Cluster { source, .. } if source.is_transient() => Code::Unavailable,
        PublishError::Cluster { .. } => Code::Internal,
    };
    Status::new(code, error.to_string())
}

pub fn from_call(error: &CallError) -> Status {
    Status::new(call_code(error), error.to_string())
}

fn provider_code(error: &ProviderCallError) -> Code {
    match error {
        ProviderCallError::Wasm(call) => call_code(call),
        ProviderCallError::Grpc { code, .. } => grpc_code(*code),
        ProviderCallError::Unreachable { .. } => Code::Unavailable,
        ProviderCallError::Deadline { .. } => Code::DeadlineExceeded,
        ProviderCallError::InvalidResponse { .. } => Code::Internal,
    }
}

fn call_code(error: &CallError) -> Code {
    match error {
        CallError::Provider { error, .. } => match error.kind {
            ErrorKind::InvalidParameters => Code::InvalidArgument,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::Throttled(_) => Code::ResourceExhausted,
            ErrorKind::Upstream(status) if status >= 500 => Code::Unavailable,
            ErrorKind::Upstream(_) => Code::FailedPrecondition,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        },
        CallError::Deadline { .. } => Code::DeadlineExceeded,
        CallError::MemoryLimit { .. } | CallError::OutputLimit { .. } => Code::ResourceExhausted,
        CallError::Trap { .. } | CallError::InvalidOutput { .. } | CallError::Internal { .. } => {
            Code::Internal
        }
    }
}

fn grpc_code(code: GrpcCode) -> Code {
    Code::from_i32(code.as_i32())
}
