//! What one `spec.secretObjects` entry asks for, checked and cut from the mount's files before any
//! API call: the Secret's name, type, data, labels and annotations, and a fingerprint of all of it.

use std::collections::{BTreeMap, HashMap};

use secrets_store_k8s::crd::SecretObject;
use sha2::{Digest, Sha256};

use crate::error::SyncError;
use crate::secret_sync::MANAGED_LABEL;
use crate::tls::{self, SECRET_TYPE_TLS};

/// The type of a Secret whose entry names none.
pub(crate) const OPAQUE: &str = "Opaque";
/// Mounted object names listed in an error about a missing object.
const MAX_NAMES_LISTED: usize = 20;

/// A Secret as a class describes it, with the data cut from the files. Not `Debug`: it holds
/// secret data.
pub(crate) struct Desired {
    pub name: String,
    pub type_: String,
    pub data: BTreeMap<String, Vec<u8>>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub fingerprint: [u8; 32],
}

/// The Secret entry `index` describes, with its data cut from `files`.
pub(crate) fn desired(
    index: usize,
    object: &SecretObject,
    files: &HashMap<&str, &[u8]>,
) -> Result<Desired, SyncError> {
    let name = object.secret_name.trim();
    if name.is_empty() {
        return Err(SyncError::EmptySecretName);
    }
    if object.data.is_empty() {
        return Err(SyncError::NoData { index });
    }
    let type_ = match object.type_.trim() {
        "" => OPAQUE.to_string(),
        other => other.to_string(),
    };
    let mut data = BTreeMap::new();
    for (item, entry) in object.data.iter().enumerate() {
        let object_name = entry.object_name.trim();
        let key = entry.key.trim();
        if object_name.is_empty() {
            return Err(SyncError::NoObjectName { index, item });
        }
        if key.is_empty() {
            return Err(SyncError::NoKey {
                index,
                item,
                object: object_name.to_string(),
            });
        }
        if !is_secret_key(key) {
            return Err(SyncError::InvalidKey {
                key: key.to_string(),
                object: object_name.to_string(),
            });
        }
        let Some(content) = files.get(object_name) else {
            return Err(SyncError::MissingObject {
                object: object_name.to_string(),
                key: key.to_string(),
                mounted: listed(files),
            });
        };
        let value = if type_ == SECRET_TYPE_TLS {
            tls::tls_value(content, key).map_err(|source| SyncError::Tls {
                object: object_name.to_string(),
                key: key.to_string(),
                source,
            })?
        } else {
            content.to_vec()
        };
        data.insert(key.to_string(), value);
    }
    let mut labels = object.labels.clone();
    labels.insert(MANAGED_LABEL.to_string(), "true".to_string());
    let annotations = object.annotations.clone();
    let fingerprint = fingerprint(&type_, &data, &labels, &annotations);
    Ok(Desired {
        name: name.to_string(),
        type_,
        data,
        labels,
        annotations,
        fingerprint,
    })
}

/// The mounted object names for an error message, sorted and abbreviated.
fn listed(files: &HashMap<&str, &[u8]>) -> String {
    if files.is_empty() {
        return "none".to_string();
    }
    let mut names: Vec<&str> = files.keys().copied().collect();
    names.sort_unstable();
    let more = names.len().saturating_sub(MAX_NAMES_LISTED);
    names.truncate(MAX_NAMES_LISTED);
    let mut text = names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    format!("mounted: {text}")
}

/// A Secret data key: `[-._a-zA-Z0-9]+`, at most 253 characters (the API server's rule).
fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// SHA-256 over an unambiguous encoding (every field length-prefixed) of what the driver sets.
pub(crate) fn fingerprint(
    type_: &str,
    data: &BTreeMap<String, Vec<u8>>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> [u8; 32] {
    fn field(hash: &mut Sha256, bytes: &[u8]) {
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    }
    fn count(hash: &mut Sha256, n: usize) {
        hash.update((n as u64).to_be_bytes());
    }
    let mut hash = Sha256::new();
    field(&mut hash, b"secret-sync/v1");
    field(&mut hash, type_.as_bytes());
    count(&mut hash, data.len());
    for (k, v) in data {
        field(&mut hash, k.as_bytes());
        field(&mut hash, v);
    }
    for map in [labels, annotations] {
        count(&mut hash, map.len());
        for (k, v) in map {
            field(&mut hash, k.as_bytes());
            field(&mut hash, v.as_bytes());
        }
    }
    hash.finalize().into()
}

/// A desired Opaque Secret named `s` with `data`, for the unit tests here and in `secret`.
#[cfg(test)]
pub(crate) fn desired_with(data: &[(&str, &[u8])]) -> Desired {
    let data: BTreeMap<String, Vec<u8>> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    let labels = BTreeMap::from([(MANAGED_LABEL.to_string(), "true".to_string())]);
    let fingerprint = fingerprint(OPAQUE, &data, &labels, &BTreeMap::new());
    Desired {
        name: "s".into(),
        type_: OPAQUE.into(),
        data,
        labels,
        annotations: BTreeMap::new(),
        fingerprint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_unambiguous() {
        // "a=b;c" vs "a" = "b;c=": the concatenations agree, the fingerprints must not.
        let one = desired_with(&[("a", b"b"), ("c", b"")]);
        let two = desired_with(&[("a", b"bc")]);
        assert_ne!(one.fingerprint, two.fingerprint);
        let labels = BTreeMap::from([("x".to_string(), "y".to_string())]);
        assert_ne!(
            fingerprint(OPAQUE, &one.data, &labels, &BTreeMap::new()),
            fingerprint(OPAQUE, &one.data, &BTreeMap::new(), &labels)
        );
        assert_ne!(
            fingerprint(OPAQUE, &one.data, &one.labels, &BTreeMap::new()),
            fingerprint(
                "kubernetes.io/tls",
                &one.data,
                &one.labels,
                &BTreeMap::new()
            )
        );
        assert_eq!(
            one.fingerprint,
            desired_with(&[("c", b""), ("a", b"b")]).fingerprint
        );
    }

    #[test]
    fn secret_keys() {
        assert!(is_secret_key("tls.crt"));
        assert!(is_secret_key("a-b_c.D9"));
        assert!(!is_secret_key("a/b"));
        assert!(!is_secret_key(""));
        assert!(!is_secret_key(&"k".repeat(254)));
    }
}
