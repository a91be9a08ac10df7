//! The atomic writer's tests: layouts, payload sequences, validation, umask and readers racing
//! writers.
//!
//! One test binary for the crate: each file below is a module (see tests/support for the helpers
//! shared across crates).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

mod concurrent_reader;
mod payload_sequences;
mod umask;
mod validation;
mod writer;
