//! Secret sync: after a mount (and on every republish refresh), creates or updates the Kubernetes
//! Secrets a SecretProviderClass describes in `spec.secretObjects`, from the files just written.
//!
//! Each Secret is labelled `secrets-store.csi.k8s.io/managed=true` and owned by the pod's controller
//! (its ReplicaSet, StatefulSet, ...) or, for a pod without one, by the pod's
//! SecretProviderClassPodStatus, so the garbage collector removes it once its last owner is gone;
//! nothing here deletes Secrets. Pods sharing a Secret add themselves to its owner references, in
//! the same write that sets the data, and owners are never taken away again.
//!
//! A Secret is written only when it differs from what is wanted: the wanted type, data, labels and
//! annotations are fingerprinted (SHA-256), and the fingerprint and owner UIDs of each Secret
//! written or verified are remembered for [`SecretSync::with_verify_interval`], so an unchanged
//! refresh costs no API call at all; after that (or on any change) the Secret is read, compared and,
//! if it differs, replaced with the resourceVersion that was read (a 409 causes a fresh read and
//! another attempt, a bounded number of times).
//!
//! Sync never fails a mount: every problem becomes a Warning event on the pod and an entry of the
//! [`SyncReport`]. Secret data never reaches an event, a log line or an error.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::{Api, Client, Resource};
use secrets_store_contract::File;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::crd::SecretObject;
use crate::crd::v1::{SecretProviderClass, SecretProviderClassPodStatus};
use crate::error::Op;
use crate::events::{EventRecorder, EventType};
use crate::pod::get_pod;
use crate::pod_status::pod_status_name;
use crate::tls::{self, SECRET_TYPE_TLS};

/// Label on every Secret the driver creates; a Secret without it is never overwritten.
pub const MANAGED_LABEL: &str = "secrets-store.csi.k8s.io/managed";
/// Event reason of a sync problem on a first mount (upstream's).
pub const REASON_FAILED_TO_CREATE_SECRET: &str = "FailedToCreateSecret";
/// Event reason of a Secret updated by a republish refresh (upstream's).
pub const REASON_SECRET_ROTATION_COMPLETE: &str = "SecretRotationComplete";
/// Event reason of a sync problem on a republish refresh (upstream's).
pub const REASON_SECRET_ROTATION_FAILED: &str = "SecretRotationFailed";

/// Read-compare-write rounds before giving up on concurrent writers.
const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// How long a Secret written or verified is trusted to still hold what was written: upstream's
/// controller re-checks its Secrets every 5 minutes as well.
const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(300);
/// Pods and classes remembered for the once-only "sync disabled" warning; the set is emptied when
/// it reaches this size (a repeated warning is only a count increment of the same event).
const MAX_WARNED_DISABLED: usize = 10_000;
/// Mounted object names listed in an event about a missing object.
const MAX_NAMES_LISTED: usize = 20;

const KIND: &str = "Secret";
const RESOURCE: &str = "secrets";
const OPAQUE: &str = "Opaque";

/// One mount's files and the class whose `secretObjects` they fill. (`Debug` shows file sizes only.)
#[derive(Clone, Copy, Debug)]
pub struct SyncRequest<'a> {
    /// The class (any served version reads the same; the cache reads v1).
    pub class: &'a SecretProviderClass,
    /// Namespace of the pod, the class and the Secrets.
    pub pod_namespace: &'a str,
    /// Name of the pod.
    pub pod_name: &'a str,
    /// UID of the pod.
    pub pod_uid: &'a str,
    /// The payload just written: paths are object names (or aliases); nested paths hold version
    /// history.
    pub files: &'a [File],
    /// A republish refresh rather than a first mount: events use the rotation reasons.
    pub rotation: bool,
}

/// What [`SecretSync::sync`] did, by Secret name (`secretObjects[<index>]` for an entry without a
/// name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Secrets created or updated.
    pub written: Vec<String>,
    /// Secrets that already held what was wanted.
    pub unchanged: Vec<String>,
    /// Secrets not synced, with the reason (the text of the Warning event).
    pub failed: Vec<(String, String)>,
    /// Sync is disabled and the class has `secretObjects`: nothing was done.
    pub skipped_disabled: bool,
}

/// Creates and updates the Secrets of `spec.secretObjects`. Cheap to share: `Send + Sync`, and its
/// caches are behind a mutex that is never held across an API call.
pub struct SecretSync {
    client: Client,
    events: EventRecorder,
    enabled: bool,
    max_attempts: u32,
    verify_interval: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Secrets written or verified, by (namespace, name).
    synced: HashMap<(String, String), Synced>,
    /// The controller owner of pods looked up, by pod key; `None`: the pod has no controller.
    pod_owners: HashMap<String, Cached<Option<OwnerReference>>>,
    /// UIDs of SecretProviderClassPodStatus objects looked up, by (pod key, class).
    pod_status_uids: HashMap<(String, String), Cached<String>>,
    /// (pod key, class) pairs already warned that sync is disabled.
    warned_disabled: HashSet<(String, String)>,
    last_prune: Option<Instant>,
}

struct Synced {
    fingerprint: [u8; 32],
    owner_uids: BTreeSet<String>,
    at: Instant,
}

struct Cached<T> {
    value: T,
    at: Instant,
}

/// A Secret as a class describes it, with the data cut from the files. Not `Debug`: it holds
/// secret data.
struct Desired {
    name: String,
    type_: String,
    data: BTreeMap<String, Vec<u8>>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    fingerprint: [u8; 32],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl SecretSync {
    /// A syncer writing through `client` and reporting on pods through `events`. `enabled` is the
    /// driver's `--enable-secret-sync` (off by default, as upstream's `syncSecret.enabled`).
    pub fn new(client: Client, events: EventRecorder, enabled: bool) -> Self {
        Self {
            client,
            events,
            enabled,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            verify_interval: DEFAULT_VERIFY_INTERVAL,
            state: Mutex::new(State::default()),
        }
    }

    /// Sets how long a Secret written or verified (and a pod's owner looked up) is trusted without
    /// reading it again (default 5 minutes). Zero reads every Secret on every sync.
    pub fn with_verify_interval(mut self, interval: Duration) -> Self {
        self.verify_interval = interval;
        self
    }

    /// Sets how many read-compare-write rounds a Secret gets before a conflict is reported
    /// (default 5).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Whether sync is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Creates or updates every Secret the class's `spec.secretObjects` describes, from the
    /// volume's files. Never fails the mount: each problem becomes a Warning event on the pod
    /// (naming the class, the Secret and the object) and an entry of the report.
    pub async fn sync(&self, request: &SyncRequest<'_>) -> SyncReport {
        let mut report = SyncReport::default();
        let objects = &request.class.spec.secret_objects;
        if objects.is_empty() {
            return report;
        }
        let class = class_id(request);
        if !self.enabled {
            report.skipped_disabled = true;
            self.warn_disabled(request, &class, objects);
            return report;
        }
        self.prune();

        // Everything that can be checked without the API first.
        let files: HashMap<&str, &[u8]> = request
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.contents.as_slice()))
            .collect();
        let mut wanted = Vec::with_capacity(objects.len());
        let mut names_seen: HashMap<String, usize> = HashMap::new();
        for (index, object) in objects.iter().enumerate() {
            match desired(index, object, &files, &class, request.pod_namespace) {
                Ok(desired) => {
                    if let Some(first) = names_seen.get(&desired.name) {
                        let message = format!(
                            "cannot sync Secret {}/{} for SecretProviderClass {class}: secretObjects[{index}] \
                             names the same Secret as secretObjects[{first}], which is used",
                            request.pod_namespace, desired.name
                        );
                        self.fail(request, &mut report, desired.name, message);
                        continue;
                    }
                    names_seen.insert(desired.name.clone(), index);
                    wanted.push(desired);
                }
                Err((secret, message)) => self.fail(request, &mut report, secret, message),
            }
        }
        if wanted.is_empty() {
            return report;
        }

        let owner = match self.owner(request).await {
            Ok(owner) => owner,
            Err(cause) => {
                let names: Vec<&str> = wanted.iter().map(|d| d.name.as_str()).collect();
                let message = format!(
                    "cannot sync Secrets {} for SecretProviderClass {class}: no owner for them: {cause}",
                    names.join(", ")
                );
                self.warn(request, &message);
                for desired in wanted {
                    report.failed.push((desired.name, message.clone()));
                }
                return report;
            }
        };

        for desired in wanted {
            match self.apply(request.pod_namespace, &desired, &owner).await {
                Ok(Outcome::Unchanged) => {
                    tracing::debug!(secret = %desired.name, namespace = request.pod_namespace,
                        class = %class, "synced Secret unchanged");
                    report.unchanged.push(desired.name);
                }
                Ok(outcome) => {
                    tracing::info!(secret = %desired.name, namespace = request.pod_namespace,
                        class = %class, pod = request.pod_name, ?outcome, rotation = request.rotation,
                        "synced Secret written");
                    if request.rotation {
                        self.events.record_pod(
                            request.pod_namespace,
                            request.pod_name,
                            request.pod_uid,
                            EventType::Normal,
                            REASON_SECRET_ROTATION_COMPLETE,
                            &format!(
                                "successfully rotated Kubernetes Secret {}/{} for SecretProviderClass {class}",
                                request.pod_namespace, desired.name
                            ),
                        );
                    }
                    report.written.push(desired.name);
                }
                Err(cause) => {
                    let message = format!(
                        "cannot sync Secret {}/{} for SecretProviderClass {class}: {cause}",
                        request.pod_namespace, desired.name
                    );
                    self.fail(request, &mut report, desired.name, message);
                }
            }
        }
        report
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is caches only; one left half-updated by a panic is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn warn(&self, request: &SyncRequest<'_>, message: &str) {
        tracing::warn!(
            namespace = request.pod_namespace,
            pod = request.pod_name,
            "{message}"
        );
        let reason = if request.rotation {
            REASON_SECRET_ROTATION_FAILED
        } else {
            REASON_FAILED_TO_CREATE_SECRET
        };
        self.events.record_pod(
            request.pod_namespace,
            request.pod_name,
            request.pod_uid,
            EventType::Warning,
            reason,
            message,
        );
    }

    fn fail(
        &self,
        request: &SyncRequest<'_>,
        report: &mut SyncReport,
        secret: String,
        message: String,
    ) {
        self.warn(request, &message);
        report.failed.push((secret, message));
    }

    fn warn_disabled(&self, request: &SyncRequest<'_>, class: &str, objects: &[SecretObject]) {
        let key = (pod_key(request), class.to_string());
        {
            let mut state = self.state();
            if state.warned_disabled.contains(&key) {
                return;
            }
            if state.warned_disabled.len() >= MAX_WARNED_DISABLED {
                state.warned_disabled.clear();
            }
            state.warned_disabled.insert(key);
        }
        let names: Vec<&str> = objects
            .iter()
            .map(|o| o.secret_name.trim())
            .filter(|n| !n.is_empty())
            .collect();
        self.warn(
            request,
            &format!(
                "SecretProviderClass {class} lists Kubernetes Secrets to sync in spec.secretObjects ({}), \
                 but Secret sync is disabled on this driver, so they are not created or updated. \
                 Enable it with the driver flag --enable-secret-sync (Helm: syncSecret.enabled=true, \
                 which also grants the driver the RBAC permissions on secrets it needs)",
                names.join(", ")
            ),
        );
    }

    /// Forgets cache entries too old to be used, once per verify interval.
    fn prune(&self) {
        let now = Instant::now();
        let interval = self.verify_interval;
        let mut state = self.state();
        if state
            .last_prune
            .is_some_and(|at| now.duration_since(at) < interval)
        {
            return;
        }
        state.last_prune = Some(now);
        let fresh = |at: Instant| now.duration_since(at) < interval;
        state.synced.retain(|_, s| fresh(s.at));
        state.pod_owners.retain(|_, c| fresh(c.at));
        state.pod_status_uids.retain(|_, c| fresh(c.at));
    }

    fn is_fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.verify_interval
    }

    /// The owner reference the pod contributes to its Secrets: its controller, else its
    /// SecretProviderClassPodStatus.
    async fn owner(&self, request: &SyncRequest<'_>) -> Result<OwnerReference, String> {
        let pod = pod_key(request);
        let cached = self
            .state()
            .pod_owners
            .get(&pod)
            .filter(|c| self.is_fresh(c.at))
            .map(|c| c.value.clone());
        let controller = match cached {
            Some(controller) => controller,
            None => {
                let info = get_pod(&self.client, request.pod_namespace, request.pod_name)
                    .await
                    .map_err(|e| e.to_string())?;
                if !request.pod_uid.is_empty() && info.uid != request.pod_uid {
                    return Err(format!(
                        "pod {}/{} now has UID {}, not {}: the pod was replaced",
                        request.pod_namespace, request.pod_name, info.uid, request.pod_uid
                    ));
                }
                let controller = info
                    .owner_references
                    .iter()
                    .find(|o| o.controller == Some(true))
                    .map(|o| OwnerReference {
                        api_version: o.api_version.clone(),
                        kind: o.kind.clone(),
                        name: o.name.clone(),
                        uid: o.uid.clone(),
                        controller: None,
                        block_owner_deletion: None,
                    });
                self.state().pod_owners.insert(
                    pod.clone(),
                    Cached {
                        value: controller.clone(),
                        at: Instant::now(),
                    },
                );
                controller
            }
        };
        if let Some(controller) = controller {
            return Ok(controller);
        }

        let class = request.class.metadata.name.clone().unwrap_or_default();
        let name = pod_status_name(request.pod_name, request.pod_namespace, &class);
        let key = (pod, class);
        let cached = self
            .state()
            .pod_status_uids
            .get(&key)
            .filter(|c| self.is_fresh(c.at))
            .map(|c| c.value.clone());
        let uid = match cached {
            Some(uid) => uid,
            None => {
                let api: Api<SecretProviderClassPodStatus> =
                    Api::namespaced(self.client.clone(), request.pod_namespace);
                let op = Op {
                    verb: "get",
                    kind: "SecretProviderClassPodStatus",
                    resource: "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io",
                    namespace: request.pod_namespace,
                    name: &name,
                };
                let status = api.get(&name).await.map_err(|e| {
                    format!(
                        "the pod has no controller, so its SecretProviderClassPodStatus must own \
                         them, and reading it failed: {}",
                        op.error(e)
                    )
                })?;
                let uid = status.metadata.uid.clone().unwrap_or_default();
                self.state().pod_status_uids.insert(
                    key,
                    Cached {
                        value: uid.clone(),
                        at: Instant::now(),
                    },
                );
                uid
            }
        };
        Ok(OwnerReference {
            api_version: SecretProviderClassPodStatus::api_version(&()).into_owned(),
            kind: SecretProviderClassPodStatus::kind(&()).into_owned(),
            name,
            uid,
            controller: None,
            block_owner_deletion: None,
        })
    }

    /// Makes the API server hold `desired` with `owner` among its owners, writing only if needed.
    async fn apply(
        &self,
        namespace: &str,
        desired: &Desired,
        owner: &OwnerReference,
    ) -> Result<Outcome, String> {
        let key = (namespace.to_string(), desired.name.clone());
        {
            let state = self.state();
            if let Some(synced) = state.synced.get(&key)
                && self.is_fresh(synced.at)
                && synced.fingerprint == desired.fingerprint
                && synced.owner_uids.contains(&owner.uid)
            {
                return Ok(Outcome::Unchanged);
            }
        }
        let result = self.write(namespace, desired, owner).await;
        let mut state = self.state();
        match result {
            Ok((outcome, owner_uids)) => {
                state.synced.insert(
                    key,
                    Synced {
                        fingerprint: desired.fingerprint,
                        owner_uids,
                        at: Instant::now(),
                    },
                );
                Ok(outcome)
            }
            Err(cause) => {
                state.synced.remove(&key);
                Err(cause)
            }
        }
    }

    /// The read-compare-write rounds; returns the outcome and the owner UIDs the Secret now has.
    async fn write(
        &self,
        namespace: &str,
        desired: &Desired,
        owner: &OwnerReference,
    ) -> Result<(Outcome, BTreeSet<String>), String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let name = desired.name.as_str();
        let op = |verb| Op {
            verb,
            kind: KIND,
            resource: RESOURCE,
            namespace,
            name,
        };
        let mut last_conflict = String::new();
        for attempt in 1..=self.max_attempts {
            let current = api
                .get_opt(name)
                .await
                .map_err(|e| explain(op("get").error(e), namespace))?;
            let (verb, object) = match current {
                None => ("create", created(namespace, desired, owner)),
                Some(current) => {
                    check_replaceable(&current, desired)?;
                    match updated(&current, desired, owner) {
                        None => return Ok((Outcome::Unchanged, owner_uids(&current))),
                        Some(updated) => ("update", updated),
                    }
                }
            };
            let result = if verb == "create" {
                api.create(&PostParams::default(), &object).await
            } else {
                api.replace(name, &PostParams::default(), &object).await
            };
            match result {
                Ok(written) => {
                    let outcome = if verb == "create" {
                        Outcome::Created
                    } else {
                        Outcome::Updated
                    };
                    return Ok((outcome, owner_uids(&written)));
                }
                // 409 on create: created meanwhile; on update: changed meanwhile; 404 on update:
                // deleted meanwhile. Read again.
                Err(kube::Error::Api(s))
                    if s.code == 409 || (s.code == 404 && verb == "update") =>
                {
                    tracing::debug!(secret = name, namespace, attempt, reason = %s.reason,
                        "Secret changed concurrently; reading it again");
                    last_conflict = s.message.clone();
                }
                Err(e) => return Err(explain(op(verb).error(e), namespace)),
            }
        }
        Err(Error::Conflict {
            kind: KIND.into(),
            namespace: namespace.into(),
            name: name.into(),
            message: format!(
                "still conflicting after {} attempts: {last_conflict}",
                self.max_attempts
            ),
        }
        .to_string())
    }
}

/// `namespace/name` of the class.
fn class_id(request: &SyncRequest<'_>) -> String {
    let namespace = request
        .class
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(request.pod_namespace);
    let name = request.class.metadata.name.as_deref().unwrap_or_default();
    format!("{namespace}/{name}")
}

fn pod_key(request: &SyncRequest<'_>) -> String {
    format!(
        "{}/{}/{}",
        request.pod_namespace, request.pod_name, request.pod_uid
    )
}

/// The Secret entry `index` of a class describes, with its data cut from `files`; or the name to
/// report it under and why it cannot be synced.
fn desired(
    index: usize,
    object: &SecretObject,
    files: &HashMap<&str, &[u8]>,
    class: &str,
    namespace: &str,
) -> Result<Desired, (String, String)> {
    let name = object.secret_name.trim();
    if name.is_empty() {
        return Err((
            format!("secretObjects[{index}]"),
            format!(
                "cannot sync secretObjects[{index}] of SecretProviderClass {class}: secretName is empty"
            ),
        ));
    }
    let fail = |detail: String| {
        (
            name.to_string(),
            format!(
                "cannot sync Secret {namespace}/{name} for SecretProviderClass {class}: {detail}"
            ),
        )
    };
    if object.data.is_empty() {
        return Err(fail(format!("secretObjects[{index}] has no data")));
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
            return Err(fail(format!(
                "secretObjects[{index}].data[{item}] has no objectName"
            )));
        }
        if key.is_empty() {
            return Err(fail(format!(
                "secretObjects[{index}].data[{item}] (object {object_name:?}) has no key"
            )));
        }
        if !is_secret_key(key) {
            return Err(fail(format!(
                "key {key:?} (object {object_name:?}) is not a valid Secret key: at most 253 \
                 letters, digits, '-', '_' and '.'"
            )));
        }
        let Some(content) = files.get(object_name) else {
            return Err(fail(format!(
                "object {object_name:?} (for key {key:?}) is not among the mounted objects ({})",
                listed(files)
            )));
        };
        let value = if type_ == SECRET_TYPE_TLS {
            tls::tls_value(content, key)
                .map_err(|e| fail(format!("object {object_name:?} for key {key:?}: {e}")))?
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
fn fingerprint(
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

fn secret_data(data: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, ByteString> {
    data.iter()
        .map(|(k, v)| (k.clone(), ByteString(v.clone())))
        .collect()
}

fn created(namespace: &str, desired: &Desired, owner: &OwnerReference) -> Secret {
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
fn check_replaceable(current: &Secret, desired: &Desired) -> Result<(), String> {
    let namespace = current.metadata.namespace.as_deref().unwrap_or_default();
    let managed = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_LABEL))
        .is_some_and(|v| v == "true");
    if !managed {
        return Err(format!(
            "Secret {namespace}/{} exists and is not managed by the Secrets Store CSI driver (it lacks \
             the label {MANAGED_LABEL}=true), so it is not overwritten; choose another secretName or \
             delete that Secret",
            desired.name
        ));
    }
    let current_type = current.type_.as_deref().unwrap_or(OPAQUE);
    if current_type != desired.type_ {
        return Err(format!(
            "the existing Secret has type {current_type:?} but secretObjects asks for {:?}, and a \
             Secret's type cannot change; delete the Secret so that the driver creates it again",
            desired.type_
        ));
    }
    if current.immutable == Some(true) && !same_data(current, desired) {
        return Err(
            "the existing Secret is immutable and its data differs; delete it so that the driver \
             creates it again"
                .to_string(),
        );
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
fn updated(current: &Secret, desired: &Desired, owner: &OwnerReference) -> Option<Secret> {
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

fn owner_uids(secret: &Secret) -> BTreeSet<String> {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.clone())
        .collect()
}

/// The error as an event sentence; a refused verb says which permission is missing and how sync
/// gets it.
fn explain(error: Error, namespace: &str) -> String {
    match error {
        Error::Forbidden { verb, message, .. } => format!(
            "the driver is not allowed to {verb} secrets in namespace {namespace:?} (missing RBAC \
             permission: verb {verb:?} on resource \"secrets\" in API group \"\"). Secret sync needs \
             get, create and update on secrets; installing the Helm chart with \
             syncSecret.enabled=true grants them. API server: {message}"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn desired_with(data: &[(&str, &[u8])]) -> Desired {
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
