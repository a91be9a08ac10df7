//! Hostile provider: panics, which aborts (traps) the instance.

use secrets_store_provider_sdk::{
    self as sdk, MountRequest, MountResponse, ProviderError, ProviderInfo,
};

struct Panic;

impl sdk::Provider for Panic {
    fn describe() -> ProviderInfo {
        ProviderInfo::new("panic", env!("CARGO_PKG_VERSION"), &[])
    }

    fn mount(request: MountRequest) -> Result<MountResponse, ProviderError> {
        panic!("provider bug: {} attributes", request.attributes.len());
    }
}

sdk::export_provider!(Panic);
