//! Helpers shared by the test suites of every crate and by the benchmark, so none of them keeps its
//! own copy: [`require_root`] for the tests that mount tmpfs, [`wait_for`], [`mount_request`],
//! [`AZURE_HOSTS`], [`uds`] for a gRPC channel over a unix socket, [`openssl`] for the `openssl`
//! CLI used as an independent oracle (and the CA chain builder), and (feature `driver`) [`driver`],
//! the shipped driver binary started as a child process the way kubelet talks to it.
//!
//! A dev-dependency only: nothing here ships. `openssl.rs` and `azure.rs` use `std` only, because
//! azure-core's suite includes them by path (see its `tests/it/main.rs`).

#[cfg(feature = "driver")]
pub mod driver;
pub mod openssl;
pub mod uds;

pub use azure::AZURE_HOSTS;

mod azure;

/// A mount request with `attributes` (the SecretProviderClass parameters and pod fields) and the
/// default file mode 0644, the rest empty.
pub fn mount_request(attributes: &[(&str, &str)]) -> secrets_store_contract::MountRequest {
    secrets_store_contract::MountRequest {
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        default_file_mode: 0o644,
        ..Default::default()
    }
}

/// Polls `condition` every 10 ms until it holds; fails the test after 10 s, naming `what`.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Panics with one clear message when the test is not running as root: `why` says what needs it
/// (e.g. `"mounts tmpfs"`). CI runs the suite as root; a developer sees why a test cannot run
/// instead of an `EPERM` deep inside it.
pub fn require_root(why: &str) {
    if let Err(message) = check_root(why) {
        panic!("{message}");
    }
}

/// [`require_root`] as a value, for callers that report errors instead of panicking (the
/// benchmark).
pub fn check_root(why: &str) -> Result<(), String> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(format!(
            "this test {why}, which needs root: run the suite as root (CI does), e.g. \
             `sudo -E cargo nextest run --workspace`"
        ))
    }
}
