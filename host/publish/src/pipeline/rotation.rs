//! A republish: kubelet calls NodePublishVolume again on a mounted volume (the CSIDriver's
//! `requiresRepublish`). With rotation enabled, the volume is refreshed from its provider at most
//! once per interval; a refresh that fails keeps the previous content and still answers OK.

use std::time::{Duration, Instant};

use secrets_store_contract::ObjectVersion;
use secrets_store_k8s::EventType;

use super::{Publisher, write_files};
use crate::error::PublishError;
use crate::pipeline::PublishOutcome;
use crate::volume::{PublishRequest, VolumeContext};

/// What a successful refresh did.
struct Refresh {
    changed: bool,
    versions: Vec<ObjectVersion>,
}

impl Publisher {
    pub(super) async fn republish(
        &self,
        request: &PublishRequest,
        context: &VolumeContext,
    ) -> PublishOutcome {
        let Some((versions, adopting)) = self.refresh_due(request, context).await else {
            return PublishOutcome::AlreadyMounted;
        };
        let started = Instant::now();
        let mut provider = String::new();
        let result = self
            .refresh(request, context, versions, adopting, &mut provider)
            .await;
        // Whatever happened, try again only after the next interval.
        let next = self.next_refresh();
        let elapsed = started.elapsed();
        match result {
            Ok(refresh) => self.refreshed(request, context, &provider, elapsed, next, refresh),
            Err(error) => self.refresh_failed(request, context, &provider, elapsed, next, error),
        }
    }

    /// Whether the volume is due for a refresh, and if so from which recorded versions (and
    /// whether it is being adopted from an earlier driver process).
    async fn refresh_due(
        &self,
        request: &PublishRequest,
        context: &VolumeContext,
    ) -> Option<(Vec<ObjectVersion>, bool)> {
        let rotation = self.config.rotation_interval;
        let now = Instant::now();
        match (self.volumes.get(&request.volume_id), rotation) {
            (Some(_), None) => None,
            (Some(state), Some(_)) if now < state.next_refresh => None,
            (Some(state), Some(_)) => Some((state.versions, false)),
            (None, _) => {
                // Mounted by an earlier driver process. If it stopped between writing the files and
                // the pod status, kubelet is retrying a publish that never finished: adopt the
                // volume with a refresh now. Otherwise leave it, and with rotation schedule its first
                // refresh at a random point of the interval, so a restart is not a wave of refreshes.
                if self.cluster.status_recorded(context).await {
                    let first = rotation
                        .map(|interval| interval.mul_f64(rand::random::<f64>()))
                        .unwrap_or_default();
                    self.volumes
                        .remember(&request.volume_id, Vec::new(), now + first);
                    return None;
                }
                tracing::info!(volume = %request.volume_id, pod = %context.pod(), class = %context.class,
                    "adopting a mounted volume without a pod status (an earlier driver stopped mid-publish)");
                Some((Vec::new(), true))
            }
        }
    }

    /// Ask the provider again and write what changed. `versions` is what this process last
    /// recorded in the pod status; empty for a volume mounted by an earlier process, whose status
    /// may lag its files (a crash between the two writes).
    async fn refresh(
        &self,
        request: &PublishRequest,
        context: &VolumeContext,
        versions: Vec<ObjectVersion>,
        adopting: bool,
        provider_name: &mut String,
    ) -> Result<Refresh, PublishError> {
        let class = self.cluster.class(context).await?;
        let provider = self.provider(context, &class)?;
        *provider_name = provider.name().to_string();
        let recorded = versions.clone();
        let response = self
            .call(request, context, &class, &provider, versions)
            .await?;
        let target = &request.target_path;
        let outcome = write_files(target, &response.files)?;
        if outcome.changed || adopting || response.object_versions != recorded {
            self.cluster
                .record_status(context, target, &response)
                .await?;
        }
        // Also when unchanged: the sync remembers what it wrote, so this costs no API call, and it
        // repairs a Secret someone changed by hand.
        self.cluster
            .sync_secrets(
                &class,
                context,
                &response.files,
                true,
                provider.name(),
                &*self.metrics,
            )
            .await;
        Ok(Refresh {
            changed: outcome.changed,
            versions: response.object_versions,
        })
    }

    fn refreshed(
        &self,
        request: &PublishRequest,
        context: &VolumeContext,
        provider: &str,
        elapsed: Duration,
        next: Instant,
        refresh: Refresh,
    ) -> PublishOutcome {
        let changed = refresh.changed;
        self.volumes
            .remember(&request.volume_id, refresh.versions, next);
        self.metrics.rotation(provider, changed, elapsed, None);
        if changed {
            self.cluster.pod_event(
                context,
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

    fn refresh_failed(
        &self,
        request: &PublishRequest,
        context: &VolumeContext,
        provider: &str,
        elapsed: Duration,
        next: Instant,
        error: PublishError,
    ) -> PublishOutcome {
        self.volumes.postpone(&request.volume_id, next);
        self.metrics
            .rotation(provider, false, elapsed, Some(error.reason()));
        let message =
            format!("failed to rotate mounted contents, keeping the previous ones: {error}");
        tracing::warn!(volume = %request.volume_id, pod = %context.pod(), "{message}");
        self.cluster
            .pod_event(context, EventType::Warning, "MountRotationFailed", &message);
        PublishOutcome::RefreshFailed {
            reason: error.to_string(),
        }
    }
}
