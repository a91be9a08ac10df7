//! The `cache` interface's store: one per provider, kept across mounts, bounded in entries and bytes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::policy::Policy;

pub(crate) struct ProviderCache {
    entries: Mutex<Entries>,
    max_entries: usize,
    max_value_bytes: usize,
    max_total_bytes: usize,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    total_bytes: usize,
}

struct Entry {
    value: Vec<u8>,
    expires: Instant,
}

impl Entries {
    fn remove(&mut self, key: &str) {
        if let Some(old) = self.map.remove(key) {
            self.total_bytes -= old.value.len() + key.len();
        }
    }
}

impl ProviderCache {
    pub(crate) fn new(policy: &Policy) -> Self {
        ProviderCache {
            entries: Mutex::new(Entries::default()),
            max_entries: policy.cache_max_entries,
            max_value_bytes: policy.cache_max_value_bytes,
            max_total_bytes: policy.cache_max_total_bytes,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut entries = self.entries.lock();
        let now = Instant::now();
        match entries.map.get(key) {
            Some(entry) if entry.expires > now => Some(entry.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> bool {
        let size = value.len() + key.len();
        if ttl.is_zero()
            || self.max_entries == 0
            || value.len() > self.max_value_bytes
            || size > self.max_total_bytes
        {
            return false;
        }
        let mut entries = self.entries.lock();
        entries.remove(key);
        let now = Instant::now();
        let expired: Vec<String> = entries
            .map
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            entries.remove(&k);
        }
        // Still full: drop the entries closest to expiry first.
        while entries.map.len() >= self.max_entries
            || entries.total_bytes + size > self.max_total_bytes
        {
            let Some(victim) = entries
                .map
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            entries.remove(&victim);
        }
        entries.total_bytes += size;
        entries.map.insert(
            key.to_string(),
            Entry {
                value,
                expires: now + ttl,
            },
        );
        true
    }

    pub(crate) fn remove(&self, key: &str) {
        self.entries.lock().remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySpec;

    fn cache(entries: u32, value: u32, total: u64) -> ProviderCache {
        ProviderCache::new(
            &Policy::from_spec(&PolicySpec {
                cache_max_entries: entries,
                cache_max_value_bytes: value,
                cache_max_total_bytes: total,
                ..Default::default()
            })
            .unwrap(),
        )
    }

    #[test]
    fn set_get_remove_and_expiry() {
        let c = cache(10, 100, 1000);
        assert!(c.set("a", b"1".to_vec(), Duration::from_secs(60)));
        assert_eq!(c.get("a"), Some(b"1".to_vec()));
        c.remove("a");
        assert_eq!(c.get("a"), None);
        assert!(!c.set("z", b"1".to_vec(), Duration::ZERO));
        assert!(c.set("e", b"1".to_vec(), Duration::from_nanos(1)));
        std::thread::yield_now();
        assert_eq!(c.get("e"), None, "an expired entry is never returned");
    }

    #[test]
    fn bounded_in_entries_and_bytes() {
        let c = cache(3, 10, 40);
        assert!(
            !c.set("big", vec![0; 11], Duration::from_secs(60)),
            "value over the per-value limit"
        );
        for i in 0..10 {
            assert!(c.set(&format!("k{i}"), vec![0; 8], Duration::from_secs(60 + i)));
            assert!(c.len() <= 3);
        }
        // The newest entries survive.
        assert!(c.get("k9").is_some());
        let c = cache(100, 10, 40);
        for i in 0..10 {
            c.set(&format!("k{i}"), vec![0; 10], Duration::from_secs(60 + i));
        }
        assert!(c.len() <= 3, "40 bytes hold at most three 12-byte entries");
    }
}
