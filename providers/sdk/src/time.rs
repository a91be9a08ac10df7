//! Clocks, sleeping and randomness over WASI.

use std::time::Duration;

use crate::bindings::wasi::clocks::{monotonic_clock, wall_clock};

/// Seconds since the Unix epoch.
pub fn now_unix_secs() -> u64 {
    wall_clock::now().seconds
}

/// Block this mount for `duration` (the host's deadline still applies).
pub fn sleep(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    monotonic_clock::subscribe_duration(nanos).block();
}

pub fn random_u64() -> u64 {
    crate::bindings::wasi::random::random::get_random_u64()
}
