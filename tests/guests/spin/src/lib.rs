//! Hostile provider: loops forever; the host's deadline must stop it.

use secrets_store_provider_sdk::{
    self as sdk, MountRequest, MountResponse, ProviderError, ProviderInfo,
};

struct Spin;

impl sdk::Provider for Spin {
    fn describe() -> ProviderInfo {
        ProviderInfo::new("spin", env!("CARGO_PKG_VERSION"), &[])
    }

    fn mount(request: MountRequest) -> Result<MountResponse, ProviderError> {
        let mut counter = request.attributes.len() as u64;
        loop {
            counter =
                std::hint::black_box(counter.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

sdk::export_provider!(Spin);
