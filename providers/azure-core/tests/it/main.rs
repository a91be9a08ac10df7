//! The Azure provider's logic, tested natively: mounts, formats checked against the openssl CLI,
//! robustness and fuzz regressions.
//!
//! One test binary for the crate: each file below is a module (see tests/support for the helpers
//! shared across crates).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

/// The hosts the provider must declare, shared with the host's suites
/// (`secrets_store_test_support::AZURE_HOSTS`), included by path for the reason below.
#[path = "../../../../tests/support/src/azure.rs"]
mod azure;
mod common;
/// The `openssl` CLI oracle and chain builder the host's suites share
/// (`secrets_store_test_support::openssl`), included by path rather than as a dependency:
/// azure-core is also a member of the guest workspace (`providers/`), whose lock file and wasm
/// builds must not take in the host's test dependencies. The module uses `std` only.
#[path = "../../../../tests/support/src/openssl.rs"]
#[allow(dead_code)] // Shared with other suites: not every helper is used here.
mod openssl;

mod formats;
mod fuzz_regressions;
mod mount;
mod robustness;
