//! The Helm chart and manifests, rendered with a real helm.
//!
//! One test binary for the crate: each file below is a module (see tests/support for the helpers
//! shared across crates).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod chart;
