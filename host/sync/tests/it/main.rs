//! Secret sync's integration tests against the in-process fake API server: the Secrets of
//! `secretObjects`, their TLS values, labels, owners and events.
//!
//! One test binary for the crate: each file below is a module (see tests/support for the helpers
//! shared across crates).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod secret_sync;
