//! The `secrets-store-host` binary's commands, as a library so the demo and the tests drive exactly
//! the code the binary runs.

pub mod inspect;
pub mod local;
pub mod logging;
pub mod serve;

use std::path::PathBuf;

/// Errors of the author tools; each names the file or option concerned.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{option}: {message}")]
    Option {
        option: &'static str,
        message: String,
    },
    #[error(transparent)]
    Load(#[from] secrets_store_runtime::LoadError),
    #[error(transparent)]
    Call(#[from] secrets_store_runtime::CallError),
    #[error("writing into {target}: {source}")]
    Write {
        target: PathBuf,
        source: secrets_store_writer::WriteError,
    },
}

impl CliError {
    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        CliError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}
