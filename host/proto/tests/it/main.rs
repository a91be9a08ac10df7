//! The generated gRPC code's tests: descriptors, wire compatibility and the services over a unix
//! socket.
//!
//! One test binary for the crate: each file below is a module (see tests/support for the helpers
//! shared across crates).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod descriptor;
mod services;
mod wire;
