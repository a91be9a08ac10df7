//! NodePublishVolume and NodeUnpublishVolume, from the request to the files and the pod status:
//! validate, find the class, call the provider, mount the tmpfs, write atomically, record.
//!
//! One operation per volume at a time. A first mount that fails leaves nothing behind. A republish
//! (kubelet calls publish again when the CSIDriver has `requiresRepublish`) refreshes the content at
//! most once per rotation interval, and a failed refresh keeps the previous content and still
//! answers OK, so kubelet never tears a working volume down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrets_store_contract::{File, MountResponse, ObjectVersion};
use secrets_store_k8s::crd::SecretProviderClassObject;
use secrets_store_k8s::crd::v1::SecretProviderClass;
use secrets_store_k8s::{EventRecorder, EventType, MountStatus, PodStatusWriter, SpcCache};
use secrets_store_providers::{ProviderHandle, ProviderRegistry};
use secrets_store_runtime::CallContext;
use secrets_store_sync::{SecretSync, SyncRequest};
use secrets_store_writer::AtomicWriter;

use crate::error::PublishError;
use crate::mounts::{self, MountState};
use crate::request::{self, mount_request};
use crate::target;

/// Settings of the pipeline.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    pub node_name: String,
    /// Targets must lie below `<kubelet_dir>/pods`.
    pub kubelet_dir: PathBuf,
    /// `Some(interval)` when rotation is enabled: a republish refreshes at most once per interval.
    pub rotation_interval: Option<Duration>,
    /// Deadline of a gRPC provider's Mount (wasm providers have their policy's deadline).
    pub provider_timeout: Duration,
    /// Size cap of each volume's tmpfs.
    pub volume_size_bytes: u64,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            node_name: String::new(),
            kubelet_dir: PathBuf::from("/var/lib/kubelet"),
            rotation_interval: None,
            provider_timeout: Duration::from_secs(60),
            volume_size_bytes: 64 << 20,
        }
    }
}

/// What a publish did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// A first mount: the volume now holds `files` files.
    Mounted { files: usize },
    /// A republish with nothing to do (rotation off, or refreshed recently).
    AlreadyMounted,
    /// A republish that asked the provider again; `changed` when the content changed.
    Refreshed { changed: bool },
    /// A republish whose refresh failed; the previous content stays and kubelet gets OK.
    RefreshFailed { reason: String },
}

/// Receives what the pipeline does, for metrics. Every method has a no-op default.
pub trait PublishMetrics: Send + Sync + 'static {
    fn publish(&self, _provider: &str, _error_type: Option<&str>) {}
    fn unpublish(&self, _error_type: Option<&str>) {}
    fn rotation(
        &self,
        _provider: &str,
        _rotated: bool,
        _elapsed: Duration,
        _error_type: Option<&str>,
    ) {
    }
    fn secret_sync(&self, _provider: &str, _elapsed: Duration) {}
}

struct NoMetrics;
impl PublishMetrics for NoMetrics {}

/// The Kubernetes side the pipeline needs.
pub struct Cluster {
    pub classes: SpcCache,
    pub pod_status: PodStatusWriter,
    pub events: EventRecorder,
    /// Kubernetes Secrets from `spec.secretObjects` (a no-op unless sync is enabled).
    pub secrets: SecretSync,
}

pub struct Publisher {
    config: PublisherConfig,
    providers: Arc<ProviderRegistry>,
    cluster: Cluster,
    metrics: Arc<dyn PublishMetrics>,
    busy: Mutex<HashSet<String>>,
    volumes: Mutex<HashMap<String, VolumeState>>,
}

/// What the driver remembers about a mounted volume (in memory; after a restart, a republish
/// rebuilds it).
#[derive(Clone, Debug)]
struct VolumeState {
    versions: Vec<ObjectVersion>,
    next_refresh: Instant,
}

/// The pod and class a volume belongs to, from its volume context.
#[derive(Clone, Debug)]
struct VolumeContext {
    class: String,
    pod_name: String,
    pod_namespace: String,
    pod_uid: String,
}

impl VolumeContext {
    fn parse(context: &BTreeMap<String, String>) -> Result<Self, PublishError> {
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

    fn pod(&self) -> String {
        format!("{}/{}", self.pod_namespace, self.pod_name)
    }
}

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

/// Marks a volume busy for the lifetime of the guard.
struct BusyGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    volume_id: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.volume_id);
    }
}

impl Publisher {
    pub fn new(
        config: PublisherConfig,
        providers: Arc<ProviderRegistry>,
        cluster: Cluster,
    ) -> Self {
        Publisher {
            config,
            providers,
            cluster,
            metrics: Arc::new(NoMetrics),
            busy: Mutex::new(HashSet::new()),
            volumes: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_metrics(mut self, metrics: Arc<dyn PublishMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn config(&self) -> &PublisherConfig {
        &self.config
    }

    pub fn providers(&self) -> &Arc<ProviderRegistry> {
        &self.providers
    }

    pub fn classes(&self) -> &SpcCache {
        &self.cluster.classes
    }

    fn claim(&self, volume_id: &str) -> Result<BusyGuard<'_>, PublishError> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(volume_id.to_string()) {
            return Err(PublishError::Busy {
                volume_id: volume_id.to_string(),
            });
        }
        Ok(BusyGuard {
            set: &self.busy,
            volume_id: volume_id.to_string(),
        })
    }

    fn pods_dir(&self) -> PathBuf {
        self.config.kubelet_dir.join("pods")
    }

    pub async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, PublishError> {
        if !request.readonly {
            return Err(PublishError::InvalidArgument(
                "the volume must be mounted read-only (readOnly: true)".into(),
            ));
        }
        let _busy = self.claim(&request.volume_id)?;
        let context = VolumeContext::parse(&request.volume_context)?;
        let target = request.target_path.clone();
        target::check(&target, &self.pods_dir())?;

        match mounts::state(&target).map_err(|source| PublishError::Mount {
            target: target.clone(),
            source,
        })? {
            MountState::Ours { healthy: true } => {
                return Ok(self.republish(&request, &context).await);
            }
            MountState::Ours { healthy: false } => {
                tracing::warn!(target = %target.display(), "volume mount is unreadable; mounting it again");
                mounts::unmount(&target).map_err(|source| PublishError::Mount {
                    target: target.clone(),
                    source,
                })?;
            }
            MountState::Foreign(fstype) => {
                return Err(PublishError::ForeignMount { target, fstype });
            }
            MountState::None => {}
        }

        let mut provider_label = String::new();
        let result = self
            .first_mount(&request, &context, &mut provider_label)
            .await;
        match result {
            Ok((_, files)) => {
                self.metrics.publish(&provider_label, None);
                Ok(PublishOutcome::Mounted { files })
            }
            Err(error) => {
                tracing::warn!(volume = %request.volume_id, pod = %context.pod(), class = %context.class,
                    reason = error.reason(), error = %error, "publish failed");
                self.metrics.publish(&provider_label, Some(error.reason()));
                self.cluster.events.record_pod(
                    &context.pod_namespace,
                    &context.pod_name,
                    &context.pod_uid,
                    EventType::Warning,
                    error.reason(),
                    &error.to_string(),
                );
                Err(error)
            }
        }
    }

    /// Returns the provider's name and the number of files.
    async fn first_mount(
        &self,
        request: &PublishRequest,
        context: &VolumeContext,
        provider_label: &mut String,
    ) -> Result<(String, usize), PublishError> {
        let target = &request.target_path;
        let class = self.class(context).await?;
        let provider = self.provider(context, &class)?;
        *provider_label = provider.name().to_string();
        let response = self
            .call(request, context, &class, &provider, Vec::new())
            .await?;

        // Mount and write only once the provider has answered: a provider failure leaves nothing to
        // clean up.
        let created = ensure_dir(target).map_err(|source| PublishError::Mount {
            target: target.clone(),
            source,
        })?;
        if let Err(source) = mounts::mount_tmpfs(target, self.config.volume_size_bytes) {
            if created {
                let _ = std::fs::remove_dir(target);
            }
            return Err(PublishError::Mount {
                target: target.clone(),
                source,
            });
        }
        let result = async {
            let writer = AtomicWriter::open(target).map_err(|source| PublishError::Write {
                target: target.clone(),
                source: Box::new(source),
            })?;
            writer
                .write(&response.files)
                .map_err(|source| PublishError::Write {
                    target: target.clone(),
                    source: Box::new(source),
                })?;
            self.record_status(context, target, &response).await
        }
        .await;
        if let Err(error) = result {
            if let Err(e) = mounts::unmount(target) {
                tracing::error!(target = %target.display(), error = %e, "could not unmount a failed volume");
            } else if created {
                let _ = std::fs::remove_dir(target);
            }
            return Err(error);
        }

        self.remember(
            &request.volume_id,
            response.object_versions.clone(),
            Instant::now(),
        );
        // The pod status is written first: a pod without a controller owner makes it the Secrets'
        // owner.
        self.sync_secrets(&class, context, &response.files, false, provider.name())
            .await;
        tracing::info!(volume = %request.volume_id, pod = %context.pod(), class = %context.class, provider = provider.name(),
            files = response.files.len(), "volume mounted");
        Ok((provider.name().to_string(), response.files.len()))
    }

    async fn republish(&self, request: &PublishRequest, context: &VolumeContext) -> PublishOutcome {
        let rotation = self.config.rotation_interval;
        let now = Instant::now();
        let known = self
            .volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&request.volume_id)
            .cloned();
        let mut adopting = false;
        let versions = match (known, rotation) {
            (Some(_), None) => return PublishOutcome::AlreadyMounted,
            (Some(state), Some(_)) if now < state.next_refresh => {
                return PublishOutcome::AlreadyMounted;
            }
            (Some(state), Some(_)) => state.versions,
            (None, _) => {
                // Mounted by an earlier driver process. If it stopped between writing the files and
                // the pod status, kubelet is retrying a publish that never finished: adopt the
                // volume with a refresh now. Otherwise leave it, and with rotation schedule its first
                // refresh at a random point of the interval, so a restart is not a wave of refreshes.
                if self.status_recorded(context).await {
                    let first = rotation
                        .map(|interval| interval.mul_f64(rand::random::<f64>()))
                        .unwrap_or_default();
                    self.remember_until(&request.volume_id, Vec::new(), now + first);
                    return PublishOutcome::AlreadyMounted;
                }
                tracing::info!(volume = %request.volume_id, pod = %context.pod(), class = %context.class,
                    "adopting a mounted volume without a pod status (an earlier driver stopped mid-publish)");
                adopting = true;
                Vec::new()
            }
        };
        let started = Instant::now();
        let mut provider_name = String::new();
        let result = async {
            let class = self.class(context).await?;
            let provider = self.provider(context, &class)?;
            provider_name = provider.name().to_string();
            // What this process last recorded in the pod status; empty for a volume mounted by an
            // earlier process, whose status may lag its files (a crash between the two writes).
            let recorded = versions.clone();
            let response = self
                .call(request, context, &class, &provider, versions)
                .await?;
            let target = &request.target_path;
            let writer = AtomicWriter::open(target).map_err(|source| PublishError::Write {
                target: target.clone(),
                source: Box::new(source),
            })?;
            let outcome = writer
                .write(&response.files)
                .map_err(|source| PublishError::Write {
                    target: target.clone(),
                    source: Box::new(source),
                })?;
            if outcome.changed || adopting || response.object_versions != recorded {
                self.record_status(context, target, &response).await?;
            }
            // Also when unchanged: the sync remembers what it wrote, so this costs no API call,
            // and it repairs a Secret someone changed by hand.
            self.sync_secrets(&class, context, &response.files, true, provider.name())
                .await;
            Ok::<_, PublishError>((outcome.changed, response.object_versions))
        }
        .await;
        // Whatever happened, try again only after the next interval (with jitter, so volumes mounted
        // together drift apart instead of refreshing in waves).
        let next = Instant::now() + rotation.map(jittered).unwrap_or_default();
        match result {
            Ok((changed, versions)) => {
                self.remember_until(&request.volume_id, versions, next);
                self.metrics
                    .rotation(&provider_name, changed, started.elapsed(), None);
                if changed {
                    self.cluster.events.record_pod(
                        &context.pod_namespace,
                        &context.pod_name,
                        &context.pod_uid,
                        EventType::Normal,
                        "MountRotationComplete",
                        &format!(
                            "successfully rotated mounted contents for SecretProviderClass {}",
                            context.class
                        ),
                    );
                }
                tracing::debug!(volume = %request.volume_id, changed, "volume refreshed");
                PublishOutcome::Refreshed { changed }
            }
            Err(error) => {
                self.bump_refresh(&request.volume_id, next);
                self.metrics.rotation(
                    &provider_name,
                    false,
                    started.elapsed(),
                    Some(error.reason()),
                );
                let message = format!(
                    "failed to rotate mounted contents, keeping the previous ones: {error}"
                );
                tracing::warn!(volume = %request.volume_id, pod = %context.pod(), "{message}");
                self.cluster.events.record_pod(
                    &context.pod_namespace,
                    &context.pod_name,
                    &context.pod_uid,
                    EventType::Warning,
                    "MountRotationFailed",
                    &message,
                );
                PublishOutcome::RefreshFailed {
                    reason: error.to_string(),
                }
            }
        }
    }

    pub async fn unpublish(&self, volume_id: &str, target: &Path) -> Result<(), PublishError> {
        let _busy = self.claim(volume_id)?;
        let result = self.remove_volume(target);
        self.volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(volume_id);
        self.metrics
            .unpublish(result.as_ref().err().map(|e| e.reason()));
        if result.is_ok() {
            tracing::info!(volume = volume_id, target = %target.display(), "volume unpublished");
        }
        result
    }

    fn remove_volume(&self, target: &Path) -> Result<(), PublishError> {
        target::check(target, &self.pods_dir())?;
        let unmount_error = |source| PublishError::Unmount {
            target: target.to_path_buf(),
            source,
        };
        match mounts::state(target).map_err(unmount_error)? {
            MountState::Ours { .. } => mounts::unmount(target).map_err(unmount_error)?,
            MountState::Foreign(fstype) => {
                return Err(PublishError::ForeignMount {
                    target: target.to_path_buf(),
                    fstype,
                });
            }
            MountState::None => {}
        }
        match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            // Below the pods dir, checked above, and no longer a mount point: what remains is the
            // directory we created and, after a failed earlier attempt, nothing of anyone else's.
            Ok(_) => std::fs::remove_dir_all(target).map_err(unmount_error),
            Err(e) => Err(unmount_error(e)),
        }
    }

    async fn class(
        &self,
        context: &VolumeContext,
    ) -> Result<Arc<SecretProviderClass>, PublishError> {
        let class = self
            .cluster
            .classes
            .get_or_fetch(&context.pod_namespace, &context.class)
            .await
            .map_err(|e| match e {
                secrets_store_k8s::Error::NotFound { .. } => PublishError::ClassNotFound {
                    namespace: context.pod_namespace.clone(),
                    name: context.class.clone(),
                },
                source => PublishError::Cluster {
                    namespace: context.pod_namespace.clone(),
                    class: context.class.clone(),
                    source: Box::new(source),
                },
            })?;
        let invalid = |reason: &str| PublishError::InvalidClass {
            namespace: context.pod_namespace.clone(),
            name: context.class.clone(),
            reason: reason.to_string(),
        };
        if class.spec.provider.trim().is_empty() {
            return Err(invalid("spec.provider is empty"));
        }
        if class.spec.parameters.is_empty() {
            return Err(invalid("spec.parameters is empty"));
        }
        Ok(class)
    }

    fn provider(
        &self,
        context: &VolumeContext,
        class: &SecretProviderClass,
    ) -> Result<ProviderHandle, PublishError> {
        self.providers
            .resolve(class.spec.provider.trim())
            .map_err(|source| PublishError::ProviderNotFound {
                namespace: context.pod_namespace.clone(),
                class: context.class.clone(),
                source: Box::new(source),
            })
    }

    async fn call(
        &self,
        request: &PublishRequest,
        context: &VolumeContext,
        class: &SecretProviderClass,
        provider: &ProviderHandle,
        versions: Vec<ObjectVersion>,
    ) -> Result<MountResponse, PublishError> {
        let mut publish_secrets = request.secrets.clone();
        publish_secrets.remove(request::SERVICE_ACCOUNT_TOKENS);
        let mount = mount_request(
            &class.spec.parameters,
            &request.volume_context,
            &request.secrets,
            publish_secrets,
            versions,
        );
        let call = CallContext {
            pod: Some(context.pod()),
        };
        provider
            .mount(
                &mount,
                &call,
                &request.target_path,
                self.config.provider_timeout,
            )
            .await
            .map_err(|source| PublishError::Provider {
                namespace: context.pod_namespace.clone(),
                class: context.class.clone(),
                source: Box::new(source),
            })
    }

    async fn sync_secrets(
        &self,
        class: &SecretProviderClass,
        context: &VolumeContext,
        files: &[File],
        rotation: bool,
        provider: &str,
    ) {
        if class.spec.secret_objects.is_empty() {
            return;
        }
        let started = Instant::now();
        let report = self
            .cluster
            .secrets
            .sync(&SyncRequest {
                class,
                pod_namespace: &context.pod_namespace,
                pod_name: &context.pod_name,
                pod_uid: &context.pod_uid,
                files,
                rotation,
            })
            .await;
        for _ in &report.written {
            self.metrics.secret_sync(provider, started.elapsed());
        }
        if !report.failed.is_empty() {
            tracing::warn!(pod = %context.pod(), class = %context.class, failed = report.failed.len(),
                "some Secrets could not be synced; see the pod's events");
        }
    }

    async fn record_status(
        &self,
        context: &VolumeContext,
        target: &Path,
        response: &MountResponse,
    ) -> Result<(), PublishError> {
        let status = MountStatus {
            pod_namespace: context.pod_namespace.clone(),
            pod_name: context.pod_name.clone(),
            pod_uid: context.pod_uid.clone(),
            class_name: context.class.clone(),
            target_path: target.display().to_string(),
            mounted: true,
            objects: response
                .object_versions
                .iter()
                .map(|v| SecretProviderClassObject {
                    id: v.id.clone(),
                    version: v.version.clone(),
                })
                .collect(),
        };
        self.cluster
            .pod_status
            .write(&status)
            .await
            .map(|_| ())
            .map_err(|source| PublishError::Cluster {
                namespace: context.pod_namespace.clone(),
                class: context.class.clone(),
                source: Box::new(source),
            })
    }

    fn remember(&self, volume_id: &str, versions: Vec<ObjectVersion>, now: Instant) {
        let next = now
            + self
                .config
                .rotation_interval
                .map(jittered)
                .unwrap_or_default();
        self.remember_until(volume_id, versions, next);
    }

    /// Whether the pod status of this volume is there; an API error counts as yes, so that an
    /// unreachable API server does not turn a driver restart into a wave of provider calls.
    async fn status_recorded(&self, context: &VolumeContext) -> bool {
        match self
            .cluster
            .pod_status
            .is_recorded(&context.pod_namespace, &context.pod_name, &context.class)
            .await
        {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(pod = %context.pod(), class = %context.class, error = %e,
                    "could not read the pod status of a volume mounted by an earlier driver; leaving it as it is");
                true
            }
        }
    }

    fn remember_until(&self, volume_id: &str, versions: Vec<ObjectVersion>, next_refresh: Instant) {
        self.volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                volume_id.to_string(),
                VolumeState {
                    versions,
                    next_refresh,
                },
            );
    }

    fn bump_refresh(&self, volume_id: &str, next_refresh: Instant) {
        if let Some(state) = self
            .volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(volume_id)
        {
            state.next_refresh = next_refresh;
        }
    }

    /// Volumes this process knows as mounted.
    pub fn known_volumes(&self) -> usize {
        self.volumes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The interval plus up to a quarter more: never sooner than the interval, and volumes mounted
/// together drift apart.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 + 0.25 * rand::random::<f64>())
}

/// Create the target directory (0750) if missing; true when this call created it.
fn ensure_dir(target: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o750).create(target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}
