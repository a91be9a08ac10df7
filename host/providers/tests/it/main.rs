//! The provider registry's tests: loading and reloading wasm providers, and the legacy gRPC
//! providers.
//!
//! One test binary for the crate: each file below is a module (see tests/support for the helpers
//! shared across crates).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod support;

mod legacy;
mod reload;
