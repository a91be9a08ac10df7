//! CSI Identity: who the driver is and whether it is alive.

use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::csi::v1::identity_server::Identity;
use tonic::{Request, Response, Status};

use crate::error::RequestError;

/// The name pod specs and the CSIDriver object use.
pub const DRIVER_NAME: &str = "secrets-store.csi.k8s.io";

pub struct IdentityService {
    version: String,
}

impl IdentityService {
    pub fn new(version: &str) -> Self {
        IdentityService {
            version: version.to_string(),
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        if self.version.is_empty() {
            return Err(RequestError::NoVersion.into());
        }
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: DRIVER_NAME.to_string(),
            vendor_version: self.version.clone(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        // A node-only plugin for ephemeral inline volumes: no controller service, no topology.
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    /// Answering at all is the health signal: the liveness-probe sidecar restarts the pod when Probe
    /// fails, so it must not fail while providers compile or the API server is briefly away.
    /// Readiness for new mounts is the metrics listener's `/readyz`.
    async fn probe(
        &self,
        _: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}
