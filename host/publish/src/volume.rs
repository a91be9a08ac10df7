//! What the pipeline knows about a volume: the request kubelet sent ([`PublishRequest`]), the pod
//! and class its volume context names ([`VolumeContext`]), and, in memory, which volumes are busy
//! and when each mounted one is due for a refresh ([`Volumes`]; after a restart, a republish
//! rebuilds it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use parking_lot::Mutex;
use secrets_store_contract::ObjectVersion;

use crate::error::PublishError;
use crate::request;

/// A NodePublishVolume, after the gRPC layer's argument checks.
#[derive(Clone, Default)]
pub struct PublishRequest {
    pub volume_id: String,
    pub target_path: PathBuf,
    pub readonly: bool,
    pub volume_context: BTreeMap<String, String>,
    /// The request's secrets: the nodePublishSecretRef data, and possibly the service-account tokens.
    pub secrets: BTreeMap<String, String>,
}

// Secrets: Debug shows keys only.
impl std::fmt::Debug for PublishRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishRequest")
            .field("volume_id", &self.volume_id)
            .field("target_path", &self.target_path)
            .field("readonly", &self.readonly)
            .field(
                "volume_context",
                &self.volume_context.keys().collect::<Vec<_>>(),
            )
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The pod and class a volume belongs to, from its volume context.
#[derive(Clone, Debug)]
pub(crate) struct VolumeContext {
    pub(crate) class: String,
    pub(crate) pod_name: String,
    pub(crate) pod_namespace: String,
    pub(crate) pod_uid: String,
}

impl VolumeContext {
    pub(crate) fn parse(context: &BTreeMap<String, String>) -> Result<Self, PublishError> {
        let get = |key: &str| -> Result<String, PublishError> {
            match context.get(key).map(|v| v.trim()) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(PublishError::InvalidArgument(format!(
                    "volume context is missing {key:?}"
                ))),
            }
        };
        Ok(VolumeContext {
            class: get(request::SECRET_PROVIDER_CLASS)?,
            pod_name: get(request::POD_NAME)?,
            pod_namespace: get(request::POD_NAMESPACE)?,
            pod_uid: context.get(request::POD_UID).cloned().unwrap_or_default(),
        })
    }

    pub(crate) fn pod(&self) -> String {
        format!("{}/{}", self.pod_namespace, self.pod_name)
    }
}

/// What the driver remembers about a mounted volume.
#[derive(Clone, Debug)]
pub(crate) struct VolumeState {
    /// The object versions last recorded in the pod status.
    pub(crate) versions: Vec<ObjectVersion>,
    pub(crate) next_refresh: Instant,
}

/// The volumes of this process: which are busy, and the state of the mounted ones.
#[derive(Default)]
pub(crate) struct Volumes {
    busy: Mutex<HashSet<String>>,
    mounted: Mutex<HashMap<String, VolumeState>>,
}

/// Marks a volume busy for the lifetime of the guard.
pub(crate) struct BusyGuard<'a> {
    volumes: &'a Volumes,
    volume_id: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.volumes.busy.lock().remove(&self.volume_id);
    }
}

impl Volumes {
    /// One operation per volume at a time: the second one is refused while the first runs.
    pub(crate) fn claim(&self, volume_id: &str) -> Result<BusyGuard<'_>, PublishError> {
        if !self.busy.lock().insert(volume_id.to_string()) {
            return Err(PublishError::Busy {
                volume_id: volume_id.to_string(),
            });
        }
        Ok(BusyGuard {
            volumes: self,
            volume_id: volume_id.to_string(),
        })
    }

    pub(crate) fn get(&self, volume_id: &str) -> Option<VolumeState> {
        self.mounted.lock().get(volume_id).cloned()
    }

    pub(crate) fn remember(
        &self,
        volume_id: &str,
        versions: Vec<ObjectVersion>,
        next_refresh: Instant,
    ) {
        self.mounted.lock().insert(
            volume_id.to_string(),
            VolumeState {
                versions,
                next_refresh,
            },
        );
    }

    /// Postpone a known volume's next refresh (its versions stay).
    pub(crate) fn postpone(&self, volume_id: &str, next_refresh: Instant) {
        if let Some(state) = self.mounted.lock().get_mut(volume_id) {
            state.next_refresh = next_refresh;
        }
    }

    pub(crate) fn forget(&self, volume_id: &str) {
        self.mounted.lock().remove(volume_id);
    }

    pub(crate) fn len(&self) -> usize {
        self.mounted.lock().len()
    }
}
