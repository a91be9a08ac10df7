//! The one place where the driver's errors become gRPC statuses: the pipeline classifies every
//! failure ([`ErrorClass`]), and this maps the class to its code; the services' own refusals
//! ([`RequestError`]) follow the CSI spec's codes. The message is always the error's own.

use std::fmt::Display;

use secrets_store_publish::{ErrorClass, PublishError};
use tonic::{Code, Status};

use crate::error::RequestError;

impl From<RequestError> for Status {
    fn from(error: RequestError) -> Status {
        let code = match error {
            RequestError::Missing(_)
            | RequestError::BlockVolume
            | RequestError::NotAStringMap { .. }
            | RequestError::Permission { .. } => Code::InvalidArgument,
            RequestError::NoVersion => Code::Unavailable,
            RequestError::Unsupported(_) => Code::Unimplemented,
        };
        Status::new(code, error.to_string())
    }
}

pub fn from_publish(error: &PublishError) -> Status {
    new(error.class(), error)
}

/// A status of `class`, with `error`'s message.
pub fn new(class: ErrorClass, error: &impl Display) -> Status {
    Status::new(code(class), error.to_string())
}

fn code(class: ErrorClass) -> Code {
    match class {
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::FailedPrecondition => Code::FailedPrecondition,
        ErrorClass::Aborted => Code::Aborted,
        ErrorClass::Unavailable => Code::Unavailable,
        ErrorClass::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorClass::ResourceExhausted => Code::ResourceExhausted,
        ErrorClass::Unauthenticated => Code::Unauthenticated,
        ErrorClass::PermissionDenied => Code::PermissionDenied,
        ErrorClass::Internal => Code::Internal,
        // Our GrpcCode is numbered as on the wire, as tonic's is.
        ErrorClass::Provider(code) => Code::from_i32(code.as_i32()),
    }
}
