//! The Secret objects secret sync writes: a new one, an existing one brought up to date (keeping
//! what others put on it), and the checks that refuse to touch a Secret that is not the driver's or
//! cannot change as asked.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::desired::{Desired, OPAQUE};
use crate::error::SyncError;
use crate::secret_sync::MANAGED_LABEL;

fn secret_data(data: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, ByteString> {
    data.iter()
        .map(|(k, v)| (k.clone(), ByteString(v.clone())))
        .collect()
}

/// A new Secret holding `desired`, owned by `owner`.
pub(crate) fn created(namespace: &str, desired: &Desired, owner: &OwnerReference) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(desired.name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(desired.labels.clone()),
            annotations: (!desired.annotations.is_empty()).then(|| desired.annotations.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        type_: Some(desired.type_.clone()),
        data: Some(secret_data(&desired.data)),
        ..Secret::default()
    }
}

/// Refuses to touch a Secret that is not ours, or one whose type or immutability forbids the
/// change.
pub(crate) fn check_replaceable(current: &Secret, desired: &Desired) -> Result<(), SyncError> {
    let namespace = current.metadata.namespace.as_deref().unwrap_or_default();
    let managed = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_LABEL))
        .is_some_and(|v| v == "true");
    if !managed {
        return Err(SyncError::NotManaged {
            namespace: namespace.to_string(),
            name: desired.name.clone(),
        });
    }
    let current_type = current.type_.as_deref().unwrap_or(OPAQUE);
    if current_type != desired.type_ {
        return Err(SyncError::TypeChange {
            current: current_type.to_string(),
            wanted: desired.type_.clone(),
        });
    }
    if current.immutable == Some(true) && !same_data(current, desired) {
        return Err(SyncError::Immutable);
    }
    Ok(())
}

fn same_data(current: &Secret, desired: &Desired) -> bool {
    let empty = BTreeMap::new();
    let data = current.data.as_ref().unwrap_or(&empty);
    data.len() == desired.data.len()
        && desired
            .data
            .iter()
            .all(|(k, v)| data.get(k).is_some_and(|c| c.0 == *v))
}

/// `current` with the wanted data, the wanted labels and annotations over its own, and `owner`
/// added to its owners; `None` when that changes nothing.
pub(crate) fn updated(
    current: &Secret,
    desired: &Desired,
    owner: &OwnerReference,
) -> Option<Secret> {
    let mut changed = false;
    let mut next = current.clone();
    if !same_data(current, desired) {
        next.data = Some(secret_data(&desired.data));
        changed = true;
    }
    // A stringData a client left behind would be folded over the data on update.
    if next.string_data.take().is_some() {
        changed = true;
    }
    for (wanted, have) in [
        (&desired.labels, &mut next.metadata.labels),
        (&desired.annotations, &mut next.metadata.annotations),
    ] {
        for (k, v) in wanted {
            let map = have.get_or_insert_with(BTreeMap::new);
            if map.get(k) != Some(v) {
                map.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    let owners = next.metadata.owner_references.get_or_insert_with(Vec::new);
    if !owners.iter().any(|o| o.uid == owner.uid) {
        owners.push(owner.clone());
        changed = true;
    }
    changed.then_some(next)
}

/// The UIDs of a Secret's owners.
pub(crate) fn owner_uids(secret: &Secret) -> BTreeSet<String> {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.clone())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::desired::desired_with;

    #[test]
    fn updates_keep_foreign_metadata_and_add_owners_once() {
        let desired = desired_with(&[("k", b"v")]);
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: "u1".into(),
            controller: None,
            block_owner_deletion: None,
        };
        let mut current = created("ns", &desired, &owner);
        assert!(updated(&current, &desired, &owner).is_none());

        current
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("foreign".into(), "kept".into());
        assert!(updated(&current, &desired, &owner).is_none());

        let other = OwnerReference {
            uid: "u2".into(),
            ..owner.clone()
        };
        let next = updated(&current, &desired, &other).unwrap();
        let uids: Vec<_> = next
            .metadata
            .owner_references
            .as_ref()
            .unwrap()
            .iter()
            .map(|o| o.uid.as_str())
            .collect();
        assert_eq!(uids, ["u1", "u2"]);
        assert_eq!(next.metadata.labels.as_ref().unwrap()["foreign"], "kept");

        let changed = desired_with(&[("k", b"w")]);
        let next = updated(&current, &changed, &owner).unwrap();
        assert_eq!(next.data.unwrap()["k"].0, b"w");
    }
}
