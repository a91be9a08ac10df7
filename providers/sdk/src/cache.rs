//! The provider's cache, kept by the host across mounts (each mount runs in a fresh instance).
//!
//! Key anything derived from a credential by everything that identifies the credential: the cache is
//! shared by all mounts of this provider on the node, whichever pod they serve.

use crate::bindings::secrets_store::provider::cache as host;

pub fn get(key: &str) -> Option<Vec<u8>> {
    host::get(key)
}

/// Store `value` for `ttl_seconds`; false when the host refused it (too large, or a TTL of zero).
pub fn set(key: &str, value: &[u8], ttl_seconds: u32) -> bool {
    host::set(key, value, ttl_seconds)
}

pub fn remove(key: &str) {
    host::remove(key)
}
