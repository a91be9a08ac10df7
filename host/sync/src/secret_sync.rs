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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PostParams;
use kube::{Api, Client, Resource};
use parking_lot::{Mutex, MutexGuard};
use secrets_store_contract::File;
use secrets_store_k8s::crd::SecretObject;
use secrets_store_k8s::crd::v1::{SecretProviderClass, SecretProviderClassPodStatus};
use secrets_store_k8s::{Error, EventRecorder, EventType, Op, get_pod, pod_status_name};

use crate::desired::{Desired, desired};
use crate::error::SyncError;
use crate::secret::{check_replaceable, created, owner_uids, updated};

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

const KIND: &str = "Secret";
const RESOURCE: &str = "secrets";

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
        let wanted = self.wanted(request, &class, &mut report);
        if wanted.is_empty() {
            return report;
        }
        let owner = match self.owner(request).await {
            Ok(owner) => owner,
            Err(cause) => {
                self.fail_all(request, &class, wanted, &cause, &mut report);
                return report;
            }
        };
        for desired in wanted {
            let outcome = self.apply(request.pod_namespace, &desired, &owner).await;
            self.record(request, &class, desired.name, outcome, &mut report);
        }
        report
    }

    /// The Secrets the class's entries describe, cut from the files; an entry that cannot be
    /// synced, or that names a Secret an earlier entry names, is reported instead.
    fn wanted(
        &self,
        request: &SyncRequest<'_>,
        class: &str,
        report: &mut SyncReport,
    ) -> Vec<Desired> {
        let files: HashMap<&str, &[u8]> = request
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.contents.as_slice()))
            .collect();
        let objects = &request.class.spec.secret_objects;
        let mut wanted = Vec::with_capacity(objects.len());
        let mut names_seen: HashMap<String, usize> = HashMap::new();
        for (index, object) in objects.iter().enumerate() {
            let checked = desired(index, object, &files).and_then(|desired| {
                match names_seen.get(&desired.name) {
                    Some(&first) => Err(SyncError::DuplicateName { index, first }),
                    None => Ok(desired),
                }
            });
            match checked {
                Ok(desired) => {
                    names_seen.insert(desired.name.clone(), index);
                    wanted.push(desired);
                }
                Err(error @ SyncError::EmptySecretName) => {
                    let message = format!(
                        "cannot sync secretObjects[{index}] of SecretProviderClass {class}: {error}"
                    );
                    self.fail(request, report, format!("secretObjects[{index}]"), message);
                }
                Err(error) => {
                    let name = object.secret_name.trim().to_string();
                    let message = failure(request, class, &name, &error);
                    self.fail(request, report, name, message);
                }
            }
        }
        wanted
    }

    /// Reports every wanted Secret as failed for want of an owner, in one event.
    fn fail_all(
        &self,
        request: &SyncRequest<'_>,
        class: &str,
        wanted: Vec<Desired>,
        cause: &SyncError,
        report: &mut SyncReport,
    ) {
        let names: Vec<&str> = wanted.iter().map(|d| d.name.as_str()).collect();
        let message = format!(
            "cannot sync Secrets {} for SecretProviderClass {class}: no owner for them: {cause}",
            names.join(", ")
        );
        self.warn(request, &message);
        for desired in wanted {
            report.failed.push((desired.name, message.clone()));
        }
    }

    /// Logs, reports and (for a rotation that wrote, or any failure) records an event for the
    /// outcome of one Secret.
    fn record(
        &self,
        request: &SyncRequest<'_>,
        class: &str,
        name: String,
        outcome: Result<Outcome, SyncError>,
        report: &mut SyncReport,
    ) {
        match outcome {
            Ok(Outcome::Unchanged) => {
                tracing::debug!(secret = %name, namespace = request.pod_namespace,
                    class = %class, "synced Secret unchanged");
                report.unchanged.push(name);
            }
            Ok(outcome) => {
                tracing::info!(secret = %name, namespace = request.pod_namespace,
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
                            "successfully rotated Kubernetes Secret {}/{name} for SecretProviderClass {class}",
                            request.pod_namespace
                        ),
                    );
                }
                report.written.push(name);
            }
            Err(cause) => {
                let message = failure(request, class, &name, &cause);
                self.fail(request, report, name, message);
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
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
    async fn owner(&self, request: &SyncRequest<'_>) -> Result<OwnerReference, SyncError> {
        match self.controller(request).await? {
            Some(controller) => Ok(controller),
            None => self.pod_status_owner(request).await,
        }
    }

    /// The pod's controller (as an owner reference without the controller flag), cached.
    async fn controller(
        &self,
        request: &SyncRequest<'_>,
    ) -> Result<Option<OwnerReference>, SyncError> {
        let pod = pod_key(request);
        let cached = self
            .state()
            .pod_owners
            .get(&pod)
            .filter(|c| self.is_fresh(c.at))
            .map(|c| c.value.clone());
        if let Some(controller) = cached {
            return Ok(controller);
        }
        let info = get_pod(&self.client, request.pod_namespace, request.pod_name)
            .await
            .map_err(SyncError::from)?;
        if !request.pod_uid.is_empty() && info.uid != request.pod_uid {
            return Err(SyncError::PodReplaced {
                namespace: request.pod_namespace.to_string(),
                name: request.pod_name.to_string(),
                uid: info.uid,
                expected: request.pod_uid.to_string(),
            });
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
            pod,
            Cached {
                value: controller.clone(),
                at: Instant::now(),
            },
        );
        Ok(controller)
    }

    /// The pod's SecretProviderClassPodStatus as an owner reference (its UID cached): the owner of
    /// a pod without a controller.
    async fn pod_status_owner(
        &self,
        request: &SyncRequest<'_>,
    ) -> Result<OwnerReference, SyncError> {
        let class = request.class.metadata.name.clone().unwrap_or_default();
        let name = pod_status_name(request.pod_name, request.pod_namespace, &class);
        let key = (pod_key(request), class);
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
                let status = api
                    .get(&name)
                    .await
                    .map_err(|e| SyncError::PodStatus(Box::new(op.error(e))))?;
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
    ) -> Result<Outcome, SyncError> {
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
    ) -> Result<(Outcome, BTreeSet<String>), SyncError> {
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
                .map_err(|e| SyncError::api(op("get").error(e), namespace))?;
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
                Err(e) => return Err(SyncError::api(op(verb).error(e), namespace)),
            }
        }
        Err(SyncError::from(Error::Conflict {
            kind: KIND.into(),
            namespace: namespace.into(),
            name: name.into(),
            message: format!(
                "still conflicting after {} attempts: {last_conflict}",
                self.max_attempts
            ),
        }))
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

/// The event text of a Secret that was not synced.
fn failure(request: &SyncRequest<'_>, class: &str, name: &str, error: &SyncError) -> String {
    format!(
        "cannot sync Secret {}/{name} for SecretProviderClass {class}: {error}",
        request.pod_namespace
    )
}
