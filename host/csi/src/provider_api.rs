//! The upstream provider API (`v1alpha1.CSIDriverProvider`) in front of a wasm provider, so clusters
//! that keep the upstream Go driver can use our sandboxed providers: `Version`, and `Mount` returning
//! the files in the response (the upstream driver writes them).

use std::collections::BTreeMap;

use secrets_store_contract::{DEFAULT_FILE_MODE, MountRequest, ObjectVersion};
use secrets_store_proto::provider::v1alpha1 as api;
use secrets_store_proto::provider::v1alpha1::csi_driver_provider_server::CsiDriverProvider;
use secrets_store_publish::ErrorClass;
use secrets_store_publish::request::{POD_NAME, POD_NAMESPACE};
use secrets_store_runtime::{CallContext, Provider};
use tonic::{Request, Response, Status};

use crate::error::RequestError;
use crate::status;

pub struct ProviderApiService {
    provider: Provider,
}

impl ProviderApiService {
    pub fn new(provider: Provider) -> Self {
        ProviderApiService { provider }
    }
}

fn json_map(field: &'static str, text: &str) -> Result<BTreeMap<String, String>, RequestError> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(text).map_err(|source| RequestError::NotAStringMap { field, source })
}

/// Upstream sends the file mode as a decimal string ("420" for 0644); a JSON number reads the same.
fn permission(text: &str) -> Result<u32, RequestError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(DEFAULT_FILE_MODE);
    }
    text.parse::<u32>()
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| RequestError::Permission {
            text: text.to_string(),
        })
}

#[tonic::async_trait]
impl CsiDriverProvider for ProviderApiService {
    async fn version(
        &self,
        _: Request<api::VersionRequest>,
    ) -> Result<Response<api::VersionResponse>, Status> {
        Ok(Response::new(api::VersionResponse {
            version: "v1alpha1".to_string(),
            runtime_name: format!("secrets-store-wasm/{}", self.provider.name()),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn mount(
        &self,
        request: Request<api::MountRequest>,
    ) -> Result<Response<api::MountResponse>, Status> {
        let request = request.into_inner();
        let attributes = json_map("attributes", &request.attributes)?;
        let pod = match (attributes.get(POD_NAMESPACE), attributes.get(POD_NAME)) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            _ => None,
        };
        let mount = MountRequest {
            attributes,
            secrets: json_map("secrets", &request.secrets)?,
            default_file_mode: permission(&request.permission)?,
            current_object_versions: request
                .current_object_version
                .into_iter()
                .map(|v| ObjectVersion {
                    id: v.id,
                    version: v.version,
                })
                .collect(),
        };
        let response = self
            .provider
            .mount(&mount, &CallContext { pod })
            .await
            .map_err(|e| status::new(ErrorClass::of_call(&e), &e))?;
        Ok(Response::new(api::MountResponse {
            object_version: response
                .object_versions
                .into_iter()
                .map(|v| api::ObjectVersion {
                    id: v.id,
                    version: v.version,
                })
                .collect(),
            error: None,
            files: response
                .files
                .into_iter()
                .map(|f| api::File {
                    path: f.path,
                    mode: f.mode as i32,
                    contents: f.contents,
                })
                .collect(),
        }))
    }
}
