//! [`ProviderHandle`]: one resolved provider, wasm or gRPC, behind one `mount` call.

use std::path::Path;
use std::time::Duration;

use secrets_store_contract::{MountRequest, MountResponse};
use secrets_store_runtime::{CallContext, Provider};

use crate::error::ProviderCallError;
use crate::legacy::LegacyProvider;

/// A provider as resolved at one moment. Cheap to clone; it keeps the module (or socket) it was
/// resolved to even if the registry swaps that provider afterwards.
#[derive(Clone, Debug)]
pub enum ProviderHandle {
    Wasm(Provider),
    Legacy(LegacyProvider),
}

impl ProviderHandle {
    pub fn name(&self) -> &str {
        match self {
            ProviderHandle::Wasm(p) => p.name(),
            ProviderHandle::Legacy(p) => p.name(),
        }
    }

    /// `"wasm"` or `"grpc"`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderHandle::Wasm(_) => "wasm",
            ProviderHandle::Legacy(_) => "grpc",
        }
    }

    /// Call Mount. A gRPC provider is sent `target_path` (upstream sends it; old providers wrote
    /// files there themselves) and the whole call, retries included, is bounded by `deadline`. A
    /// wasm provider is bounded by its policy's timeout and by `deadline`, whichever ends first.
    pub async fn mount(
        &self,
        request: &MountRequest,
        context: &CallContext,
        target_path: &Path,
        deadline: Duration,
    ) -> Result<MountResponse, ProviderCallError> {
        match self {
            ProviderHandle::Wasm(provider) => {
                match tokio::time::timeout(deadline, provider.mount(request, context)).await {
                    Ok(result) => result.map_err(ProviderCallError::Wasm),
                    Err(_) => Err(ProviderCallError::Deadline {
                        provider: provider.name().to_string(),
                        after: deadline,
                    }),
                }
            }
            ProviderHandle::Legacy(provider) => {
                provider.mount(request, target_path, deadline).await
            }
        }
    }
}
