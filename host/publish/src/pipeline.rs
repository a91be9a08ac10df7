//! The [`Publisher`]: NodePublishVolume and NodeUnpublishVolume, from the request to the files and
//! the pod status — validate, find the class, call the provider, mount the tmpfs, write
//! atomically, record.
//!
//! One operation per volume at a time. A first mount that fails leaves nothing behind. A republish
//! (kubelet calls publish again when the CSIDriver has `requiresRepublish`) is the job of
//! [`rotation`]: it refreshes the content at most once per rotation interval, and a failed refresh
//! keeps the previous content and still answers OK, so kubelet never tears a working volume down.

mod rotation;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrets_store_contract::{File, MountResponse, ObjectVersion};
use secrets_store_k8s::crd::v1::SecretProviderClass;
use secrets_store_k8s::{EventType, SpcCache};
use secrets_store_providers::{ProviderHandle, ProviderRegistry};
use secrets_store_runtime::CallContext;
use secrets_store_writer::{AtomicWriter, WriteOutcome};

use crate::cluster::Cluster;
use crate::error::PublishError;
use crate::metrics::{NoMetrics, PublishMetrics};
use crate::mounts::{self, MountState};
use crate::request::{self, mount_request};
use crate::target;
use crate::volume::{PublishRequest, VolumeContext, Volumes};

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

pub struct Publisher {
    config: PublisherConfig,
    providers: Arc<ProviderRegistry>,
    cluster: Cluster,
    metrics: Arc<dyn PublishMetrics>,
    volumes: Volumes,
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
            volumes: Volumes::default(),
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

    /// Volumes this process knows as mounted.
    pub fn known_volumes(&self) -> usize {
        self.volumes.len()
    }

    /// When a volume mounted or refreshed now is due for its next refresh: after the rotation
    /// interval plus jitter, so volumes mounted together drift apart instead of refreshing in waves.
    pub(crate) fn next_refresh(&self) -> Instant {
        Instant::now()
            + self
                .config
                .rotation_interval
                .map(jittered)
                .unwrap_or_default()
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
        let _busy = self.volumes.claim(&request.volume_id)?;
        let context = VolumeContext::parse(&request.volume_context)?;
        let target = request.target_path.clone();
        target::check(&target, &self.pods_dir())?;

        let mount_error = |source| PublishError::Mount {
            target: target.clone(),
            source,
        };
        match mounts::state(&target).map_err(mount_error)? {
            MountState::Ours { healthy: true } => {
                return Ok(self.republish(&request, &context).await);
            }
            MountState::Ours { healthy: false } => {
                tracing::warn!(target = %target.display(), "volume mount is unreadable; mounting it again");
                mounts::unmount(&target).map_err(mount_error)?;
            }
            MountState::Foreign(fstype) => {
                return Err(PublishError::ForeignMount { target, fstype });
            }
            MountState::None => {}
        }

        let mut provider_label = String::new();
        match self
            .first_mount(&request, &context, &mut provider_label)
            .await
        {
            Ok(files) => {
                self.metrics.publish(&provider_label, None);
                Ok(PublishOutcome::Mounted { files })
            }
            Err(error) => {
                tracing::warn!(volume = %request.volume_id, pod = %context.pod(), class = %context.class,
                    reason = error.reason(), error = %error, "publish failed");
                self.metrics.publish(&provider_label, Some(error.reason()));
                self.cluster.pod_event(
                    &context,
                    EventType::Warning,
                    error.reason(),
                    &error.to_string(),
                );
                Err(error)
            }
        }
    }

    /// Mount a volume that is not mounted yet; returns the number of files. `provider_label` is
    /// set as soon as the provider is known, for the metrics of a failure.
    async fn first_mount(
        &self,
        request: &PublishRequest,
        context: &VolumeContext,
        provider_label: &mut String,
    ) -> Result<usize, PublishError> {
        let target = &request.target_path;
        let class = self.cluster.class(context).await?;
        let provider = self.provider(context, &class)?;
        *provider_label = provider.name().to_string();
        let response = self
            .call(request, context, &class, &provider, Vec::new())
            .await?;

        // Mount and write only once the provider has answered: a provider failure leaves nothing to
        // clean up.
        self.mount_and_write(target, context, &response).await?;

        let next = self.next_refresh();
        self.volumes
            .remember(&request.volume_id, response.object_versions.clone(), next);
        // The pod status is written first: a pod without a controller owner makes it the Secrets'
        // owner.
        self.cluster
            .sync_secrets(
                &class,
                context,
                &response.files,
                false,
                provider.name(),
                &*self.metrics,
            )
            .await;
        tracing::info!(volume = %request.volume_id, pod = %context.pod(), class = %context.class, provider = provider.name(),
            files = response.files.len(), "volume mounted");
        Ok(response.files.len())
    }

    /// Mount the tmpfs, write the files and record the pod status; on any failure, undo the mount
    /// (and the directory, if this created it).
    async fn mount_and_write(
        &self,
        target: &Path,
        context: &VolumeContext,
        response: &MountResponse,
    ) -> Result<(), PublishError> {
        let mount_error = |source| PublishError::Mount {
            target: target.to_path_buf(),
            source,
        };
        let created = ensure_dir(target).map_err(mount_error)?;
        if let Err(source) = mounts::mount_tmpfs(target, self.config.volume_size_bytes) {
            if created {
                let _ = std::fs::remove_dir(target);
            }
            return Err(mount_error(source));
        }
        let result = async {
            write_files(target, &response.files)?;
            self.cluster.record_status(context, target, response).await
        }
        .await;
        if result.is_err() {
            if let Err(e) = mounts::unmount(target) {
                tracing::error!(target = %target.display(), error = %e, "could not unmount a failed volume");
            } else if created {
                let _ = std::fs::remove_dir(target);
            }
        }
        result
    }

    pub async fn unpublish(&self, volume_id: &str, target: &Path) -> Result<(), PublishError> {
        let _busy = self.volumes.claim(volume_id)?;
        let result = self.remove_volume(target);
        self.volumes.forget(volume_id);
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
}

/// Write `files` into the volume at `target`, atomically.
fn write_files(target: &Path, files: &[File]) -> Result<WriteOutcome, PublishError> {
    let write_error = |source| PublishError::Write {
        target: target.to_path_buf(),
        source: Box::new(source),
    };
    AtomicWriter::open(target)
        .map_err(write_error)?
        .write(files)
        .map_err(write_error)
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
