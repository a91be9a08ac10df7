//! The Kubernetes side of the pipeline ([`Cluster`]): the SecretProviderClass a volume names, the
//! pod status that records a mount, the pod's events, and the Secrets synced from the files.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use secrets_store_contract::{File, MountResponse};
use secrets_store_k8s::crd::SecretProviderClassObject;
use secrets_store_k8s::crd::v1::SecretProviderClass;
use secrets_store_k8s::{EventRecorder, EventType, MountStatus, PodStatusWriter, SpcCache};
use secrets_store_sync::{SecretSync, SyncRequest};

use crate::error::PublishError;
use crate::metrics::PublishMetrics;
use crate::volume::VolumeContext;

/// The Kubernetes side the pipeline needs.
pub struct Cluster {
    pub classes: SpcCache,
    pub pod_status: PodStatusWriter,
    pub events: EventRecorder,
    /// Kubernetes Secrets from `spec.secretObjects` (a no-op unless sync is enabled).
    pub secrets: SecretSync,
}

impl Cluster {
    /// The volume's SecretProviderClass, checked for the fields a mount needs.
    pub(crate) async fn class(
        &self,
        context: &VolumeContext,
    ) -> Result<Arc<SecretProviderClass>, PublishError> {
        let class = self
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

    /// Record the mount and its object versions in the pod's SecretProviderClassPodStatus.
    pub(crate) async fn record_status(
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
        self.pod_status
            .write(&status)
            .await
            .map(|_| ())
            .map_err(|source| PublishError::Cluster {
                namespace: context.pod_namespace.clone(),
                class: context.class.clone(),
                source: Box::new(source),
            })
    }

    /// Whether the pod status of this volume is there; an API error counts as yes, so that an
    /// unreachable API server does not turn a driver restart into a wave of provider calls.
    pub(crate) async fn status_recorded(&self, context: &VolumeContext) -> bool {
        match self
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

    /// Create or update the class's `secretObjects` from the volume's files. Failures are the
    /// pod's events (the sync records them); the mount itself stands.
    pub(crate) async fn sync_secrets(
        &self,
        class: &SecretProviderClass,
        context: &VolumeContext,
        files: &[File],
        rotation: bool,
        provider: &str,
        metrics: &dyn PublishMetrics,
    ) {
        if class.spec.secret_objects.is_empty() {
            return;
        }
        let started = Instant::now();
        let report = self
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
            metrics.secret_sync(provider, started.elapsed());
        }
        if !report.failed.is_empty() {
            tracing::warn!(pod = %context.pod(), class = %context.class, failed = report.failed.len(),
                "some Secrets could not be synced; see the pod's events");
        }
    }

    /// An event on the volume's pod.
    pub(crate) fn pod_event(
        &self,
        context: &VolumeContext,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        self.events.record_pod(
            &context.pod_namespace,
            &context.pod_name,
            &context.pod_uid,
            kind,
            reason,
            message,
        );
    }
}
