//! Names of the writer's timestamped payload directories: `..YYYY_MM_DD_HH_MM_SS.<random>`.
//!
//! The format is kubelet's, so a target written by kubelet's AtomicWriter (or a crashed earlier
//! run of ours) is recognised and its leftovers cleaned up. Only names matching this exact shape
//! are ever deleted as leftovers; anything else in the target is not ours to remove.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of `..YYYY_MM_DD_HH_MM_SS.`.
const PREFIX_LEN: usize = 22;

/// A fresh candidate name for the current time (UTC). Collisions are possible in principle; the
/// caller creates the directory exclusively and asks again on `AlreadyExists`.
pub(crate) fn new_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}{}",
        prefix_for(now.as_secs()),
        random_suffix(now.as_nanos())
    )
}

/// Whether `name` has the shape of a timestamped payload directory (ours or kubelet's).
pub(crate) fn is_ts_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.len() <= PREFIX_LEN || !name.starts_with("..") || b[PREFIX_LEN - 1] != b'.' {
        return false;
    }
    // YYYY_MM_DD_HH_MM_SS: digits with `_` at fixed offsets.
    let stamp = &b[2..PREFIX_LEN - 1];
    let stamp_ok = stamp.iter().enumerate().all(|(i, &c)| match i {
        4 | 7 | 10 | 13 | 16 => c == b'_',
        _ => c.is_ascii_digit(),
    });
    let suffix = &name[PREFIX_LEN..];
    stamp_ok && !suffix.contains(['/', '\0'])
}

/// `..YYYY_MM_DD_HH_MM_SS.` for seconds since the Unix epoch, in UTC.
fn prefix_for(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "..{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}.",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`, restricted to dates after the epoch (a clock before 1970 reads as 1970).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A decimal suffix that differs between calls. It only has to avoid collisions (the directory is
/// created exclusively, and nothing trusts it to be unguessable), so std's randomly keyed
/// SipHash over the time and a counter is enough and spares a dependency.
fn random_suffix(nanos: u128) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one((nanos, count, std::process::id()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(prefix_for(0), "..1970_01_01_00_00_00.");
        // 2000-02-29 23:59:59 (leap day of a century leap year).
        assert_eq!(prefix_for(951_868_799), "..2000_02_29_23_59_59.");
        // 2024-12-31 12:34:56.
        assert_eq!(prefix_for(1_735_648_496), "..2024_12_31_12_34_56.");
        // 2100-03-01 00:00:00 (2100 is not a leap year).
        assert_eq!(prefix_for(4_107_542_400), "..2100_03_01_00_00_00.");
    }

    #[test]
    fn recognises_only_timestamped_names() {
        let fresh = new_name();
        assert!(is_ts_name(&fresh), "{fresh}");
        assert!(is_ts_name("..2020_01_01_00_00_00.abc"));
        assert!(is_ts_name("..2020_01_01_00_00_00.123456789"));
        for not in [
            "..data",
            "..data_tmp",
            "..2020_01_01_00_00_00.",
            "..2020_01_01_00_00_00",
            "..2020-01-01_00_00_00.abc",
            "..2020_01_01_00_00_0x.abc",
            ".2020_01_01_00_00_00.abc",
            "2020_01_01_00_00_00.abcde",
            "..2020_01_01_00_00_00.a/b",
            "secret",
        ] {
            assert!(!is_ts_name(not), "{not}");
        }
    }

    #[test]
    fn names_differ() {
        let a = new_name();
        let b = new_name();
        assert_ne!(a, b);
    }
}
