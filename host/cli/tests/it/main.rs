//! The driver binary's integration tests: the CLI, the CSI node service over a unix socket with
//! real tmpfs mounts and a fake Kubernetes API server, and reliability under faults.
//!
//! One test binary for the crate: each file below is a module (see tests/support for the helpers
//! shared across crates).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod driver;

mod cli;
mod csi;
mod reliability;
