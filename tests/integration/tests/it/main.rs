//! End-to-end tests of the Azure provider in the runtime against the Key Vault emulator.
//!
//! One test binary for the crate: each file below is a module (see tests/support for the helpers
//! shared across crates).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod support;

mod azure;
mod azure_auth;
mod azure_formats;
mod azure_leaks;
