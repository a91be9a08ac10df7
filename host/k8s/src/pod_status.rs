//! Writes the SecretProviderClassPodStatus that records one pod's mount of one class on this node.
//!
//! The object is named `<pod>-<namespace>-<class>` in the pod's namespace, labelled with the node,
//! and owned by the pod (apiVersion v1, kind Pod, name, uid; no `controller` and no
//! `blockOwnerDeletion`, as upstream), so the garbage collector removes it with the pod. Writing is
//! idempotent: the object is read first, and an identical one causes no write; a changed one is
//! replaced with the resourceVersion that was read, and a 409 Conflict (a concurrent writer) or
//! AlreadyExists causes a fresh read and another attempt, a bounded number of times.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::crd::v1::{SecretProviderClassPodStatus, SecretProviderClassPodStatusFields};
use crate::crd::{NODE_NAME_LABEL, SecretProviderClassObject, SecretProviderClassPodStatusStatus};
use crate::error::Op;

const KIND: &str = "SecretProviderClassPodStatus";
const RESOURCE: &str = "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io";

/// Longest object name the API server accepts (a DNS subdomain).
const MAX_NAME_LEN: usize = 253;
/// Hex digits of the hash that replaces the tail of an over-long name.
const NAME_HASH_LEN: usize = 16;
/// Attempts `write` makes before giving up on concurrent writers.
const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The state of one mount, as the pod status records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountStatus {
    /// Namespace of the pod (and of the class, and of the status object).
    pub pod_namespace: String,
    /// Name of the pod.
    pub pod_name: String,
    /// UID of the pod, for the owner reference.
    pub pod_uid: String,
    /// Name of the SecretProviderClass.
    pub class_name: String,
    /// The volume's target path on the node.
    pub target_path: String,
    /// Whether the volume is mounted.
    pub mounted: bool,
    /// Objects written into the volume, in any order; the status lists them sorted by id, and of two
    /// entries with the same id the later wins.
    pub objects: Vec<SecretProviderClassObject>,
}

/// What [`PodStatusWriter::write`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The object did not exist and was created.
    Created,
    /// The object existed with other content and was replaced.
    Updated,
    /// The object already said exactly this; nothing was written.
    Unchanged,
}

/// Name of the SecretProviderClassPodStatus for a pod's mount of a class: `<pod>-<namespace>-<class>`,
/// as upstream names it. Upstream fails the mount when that exceeds the 253 characters an object name
/// may have; here the name is then cut to fit and ends with a hash of the full name, so it stays
/// unique and deterministic.
pub fn pod_status_name(pod_name: &str, namespace: &str, class_name: &str) -> String {
    let full = format!("{pod_name}-{namespace}-{class_name}");
    if full.len() <= MAX_NAME_LEN {
        return full;
    }
    let digest = hex::encode(Sha256::digest(full.as_bytes()));
    let mut keep = MAX_NAME_LEN - NAME_HASH_LEN - 1;
    while !full.is_char_boundary(keep) {
        keep -= 1;
    }
    // A DNS subdomain label may not end in '-' and the name may not have '.' before the '-'.
    let prefix = full[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{}", &digest[..NAME_HASH_LEN])
}

/// Creates and updates SecretProviderClassPodStatus objects for the mounts on one node.
#[derive(Clone)]
pub struct PodStatusWriter {
    client: Client,
    node_name: String,
    max_attempts: u32,
}

impl PodStatusWriter {
    /// A writer labelling its objects with `node_name`. The node name must be a valid label value
    /// (at most 63 characters), as the API server would otherwise reject every write.
    pub fn new(client: Client, node_name: &str) -> Result<Self, Error> {
        if !is_label_value(node_name) || node_name.is_empty() {
            return Err(Error::InvalidObject {
                kind: KIND.into(),
                name: format!("label {NODE_NAME_LABEL}"),
                message: format!(
                    "node name {node_name:?} cannot be a label value (1-63 characters: letters, digits, \
                     '-', '_', '.', starting and ending with a letter or digit)"
                ),
            });
        }
        Ok(Self {
            client,
            node_name: node_name.to_string(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        })
    }

    /// Sets how many read-then-write rounds `write` makes before reporting [`Error::Conflict`].
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The node this writer labels objects with.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The object `write` makes the API server hold for `status` (without server-set metadata).
    pub fn desired(&self, status: &MountStatus) -> SecretProviderClassPodStatus {
        let objects: BTreeMap<&str, &str> = status
            .objects
            .iter()
            .map(|o| (o.id.as_str(), o.version.as_str()))
            .collect();
        let mut object = SecretProviderClassPodStatus {
            metadata: ObjectMeta {
                name: Some(pod_status_name(
                    &status.pod_name,
                    &status.pod_namespace,
                    &status.class_name,
                )),
                namespace: Some(status.pod_namespace.clone()),
                labels: Some(BTreeMap::from([(
                    NODE_NAME_LABEL.to_string(),
                    self.node_name.clone(),
                )])),
                owner_references: Some(vec![pod_owner(status)]),
                ..ObjectMeta::default()
            },
            spec: SecretProviderClassPodStatusFields {},
            status: None,
        };
        object.status = Some(SecretProviderClassPodStatusStatus {
            pod_name: status.pod_name.clone(),
            secret_provider_class_name: status.class_name.clone(),
            mounted: status.mounted,
            target_path: status.target_path.clone(),
            objects: objects
                .into_iter()
                .map(|(id, version)| SecretProviderClassObject {
                    id: id.into(),
                    version: version.into(),
                })
                .collect(),
        });
        object
    }

    /// Whether the API server holds a status saying this pod's volume of `class_name` is mounted.
    /// (One status serves every volume of a pod that uses the class, as upstream's does.)
    pub async fn is_recorded(
        &self,
        pod_namespace: &str,
        pod_name: &str,
        class_name: &str,
    ) -> Result<bool, Error> {
        let name = pod_status_name(pod_name, pod_namespace, class_name);
        let api: Api<SecretProviderClassPodStatus> =
            Api::namespaced(self.client.clone(), pod_namespace);
        let current = api.get_opt(&name).await.map_err(|e| {
            Op {
                verb: "get",
                kind: KIND,
                resource: RESOURCE,
                namespace: pod_namespace,
                name: &name,
            }
            .error(e)
        })?;
        Ok(current.and_then(|c| c.status).is_some_and(|s| s.mounted))
    }

    /// Makes the API server hold the status for this mount, writing only if it differs.
    pub async fn write(&self, status: &MountStatus) -> Result<WriteOutcome, Error> {
        check(status)?;
        let desired = self.desired(status);
        let name = desired.metadata.name.clone().unwrap_or_default();
        let namespace = status.pod_namespace.as_str();
        let api: Api<SecretProviderClassPodStatus> =
            Api::namespaced(self.client.clone(), namespace);
        let op = |verb| Op {
            verb,
            kind: KIND,
            resource: RESOURCE,
            namespace,
            name: &name,
        };

        let mut last_conflict = String::new();
        for attempt in 1..=self.max_attempts {
            let current = api.get_opt(&name).await.map_err(|e| op("get").error(e))?;
            let (verb, result) = match current {
                None => (
                    "create",
                    api.create(&PostParams::default(), &desired)
                        .await
                        .map(|_| WriteOutcome::Created),
                ),
                Some(current) => {
                    let updated = self.merged(current.clone(), &desired);
                    if updated == current {
                        return Ok(WriteOutcome::Unchanged);
                    }
                    // `updated` carries the resourceVersion just read: a concurrent change is a 409.
                    (
                        "update",
                        api.replace(&name, &PostParams::default(), &updated)
                            .await
                            .map(|_| WriteOutcome::Updated),
                    )
                }
            };
            match result {
                Ok(outcome) => return Ok(outcome),
                // 409 on create: AlreadyExists (created meanwhile); on update: Conflict (changed
                // meanwhile); 404 on update: deleted between the read and the replace. Read again.
                Err(kube::Error::Api(s))
                    if s.code == 409 || (s.code == 404 && verb == "update") =>
                {
                    tracing::debug!(object = %name, %namespace, attempt, reason = %s.reason,
                        "pod status changed concurrently; reading it again");
                    last_conflict = s.message.clone();
                }
                Err(e) => return Err(op(verb).error(e)),
            }
        }
        Err(Error::Conflict {
            kind: KIND.into(),
            namespace: namespace.into(),
            name,
            message: format!(
                "still conflicting after {} attempts: {last_conflict}",
                self.max_attempts
            ),
        })
    }

    /// `current` with the node label, the pod owner and the status of `desired`; everything else
    /// (other labels, annotations, finalizers, resourceVersion) kept.
    fn merged(
        &self,
        mut current: SecretProviderClassPodStatus,
        desired: &SecretProviderClassPodStatus,
    ) -> SecretProviderClassPodStatus {
        current
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(NODE_NAME_LABEL.to_string(), self.node_name.clone());
        current.metadata.owner_references = desired.metadata.owner_references.clone();
        current.status = desired.status.clone();
        current
    }
}

fn pod_owner(status: &MountStatus) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: status.pod_name.clone(),
        uid: status.pod_uid.clone(),
        controller: None,
        block_owner_deletion: None,
    }
}

fn check(status: &MountStatus) -> Result<(), Error> {
    let missing = [
        ("pod namespace", &status.pod_namespace),
        ("pod name", &status.pod_name),
        ("pod UID", &status.pod_uid),
        ("SecretProviderClass name", &status.class_name),
    ]
    .into_iter()
    .filter(|(_, value)| value.is_empty())
    .map(|(what, _)| what)
    .collect::<Vec<_>>();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidObject {
        kind: KIND.into(),
        name: format!("{}/{}", status.pod_namespace, status.pod_name),
        message: format!("missing {}", missing.join(", ")),
    })
}

/// Label value syntax: empty, or at most 63 characters of `[A-Za-z0-9_.-]` that start and end with
/// an alphanumeric character.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (None, _) | (_, None) => true,
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_upstream_names() {
        assert_eq!(
            pod_status_name("web-0", "default", "kv"),
            "web-0-default-kv"
        );
    }

    #[test]
    fn long_names_are_cut_and_hashed_deterministically() {
        let pod = "p".repeat(200);
        let class = "c.d".repeat(40);
        let name = pod_status_name(&pod, "ns", &class);
        assert!(
            name.len() <= MAX_NAME_LEN && name.len() >= MAX_NAME_LEN - 2,
            "{}",
            name.len()
        );
        assert!(name.starts_with(&pod));
        assert_eq!(name, pod_status_name(&pod, "ns", &class));
        assert_ne!(name, pod_status_name(&pod, "ns", &format!("{class}x")));
        let tail = &name[name.len() - NAME_HASH_LEN..];
        assert!(tail.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!name.contains(".-") && !name.contains("--"));
    }

    #[test]
    fn a_cut_never_leaves_a_dot_or_dash_before_the_hash() {
        // Put a '.' exactly where the cut falls.
        let keep = MAX_NAME_LEN - NAME_HASH_LEN - 1;
        let pod = format!("{}.{}", "a".repeat(keep - 1), "b".repeat(100));
        let name = pod_status_name(&pod, "ns", "c");
        assert!(name.len() <= MAX_NAME_LEN);
        assert!(!name.contains(".-"), "{name}");
    }

    #[test]
    fn label_values() {
        assert!(is_label_value("node-1.example_a"));
        assert!(!is_label_value("-node"));
        assert!(!is_label_value(&"n".repeat(64)));
        assert!(is_label_value(&"n".repeat(63)));
    }
}
