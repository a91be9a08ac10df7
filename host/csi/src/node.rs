//! CSI Node: publish and unpublish through the publish pipeline; everything else the driver does not
//! do answers Unimplemented.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::csi::v1::node_server::Node;
use secrets_store_publish::{PublishOutcome, PublishRequest, Publisher};
use tonic::{Request, Response, Status};

use crate::error::RequestError;
use crate::status;

pub struct NodeService {
    node_id: String,
    publisher: Arc<Publisher>,
}

impl NodeService {
    pub fn new(node_id: &str, publisher: Arc<Publisher>) -> Self {
        NodeService {
            node_id: node_id.to_string(),
            publisher,
        }
    }
}

fn required(value: &str, what: &'static str) -> Result<(), RequestError> {
    if value.is_empty() {
        Err(RequestError::Missing(what))
    } else {
        Ok(())
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_publish_volume(
        &self,
        request: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        let request = request.into_inner();
        required(&request.volume_id, "Volume ID")?;
        required(&request.target_path, "Target path")?;
        let Some(capability) = &request.volume_capability else {
            return Err(RequestError::Missing("Volume capability").into());
        };
        if matches!(
            capability.access_type,
            Some(csi::volume_capability::AccessType::Block(_))
        ) {
            return Err(RequestError::BlockVolume.into());
        }
        let publish = PublishRequest {
            volume_id: request.volume_id,
            target_path: PathBuf::from(request.target_path),
            readonly: request.readonly,
            volume_context: request
                .volume_context
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            secrets: request.secrets.into_iter().collect::<BTreeMap<_, _>>(),
        };
        match self.publisher.publish(publish).await {
            Ok(PublishOutcome::RefreshFailed { .. }) | Ok(_) => {
                Ok(Response::new(csi::NodePublishVolumeResponse {}))
            }
            Err(error) => Err(status::from_publish(&error)),
        }
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        let request = request.into_inner();
        required(&request.volume_id, "Volume ID")?;
        required(&request.target_path, "Target path")?;
        self.publisher
            .unpublish(&request.volume_id, &PathBuf::from(&request.target_path))
            .await
            .map_err(|e| status::from_publish(&e))?;
        Ok(Response::new(csi::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        // Ephemeral inline volumes need neither staging nor stats.
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }

    async fn node_stage_volume(
        &self,
        _: Request<csi::NodeStageVolumeRequest>,
    ) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        Err(RequestError::Unsupported("NodeStageVolume").into())
    }

    async fn node_unstage_volume(
        &self,
        _: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        Err(RequestError::Unsupported("NodeUnstageVolume").into())
    }

    async fn node_get_volume_stats(
        &self,
        _: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        Err(RequestError::Unsupported("NodeGetVolumeStats").into())
    }

    async fn node_get_volume_health(
        &self,
        _: Request<csi::NodeGetVolumeHealthRequest>,
    ) -> Result<Response<csi::NodeGetVolumeHealthResponse>, Status> {
        Err(RequestError::Unsupported("NodeGetVolumeHealth").into())
    }

    async fn node_get_storage_health(
        &self,
        _: Request<csi::NodeGetStorageHealthRequest>,
    ) -> Result<Response<csi::NodeGetStorageHealthResponse>, Status> {
        Err(RequestError::Unsupported("NodeGetStorageHealth").into())
    }

    async fn node_expand_volume(
        &self,
        _: Request<csi::NodeExpandVolumeRequest>,
    ) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        Err(RequestError::Unsupported("NodeExpandVolume").into())
    }
}
