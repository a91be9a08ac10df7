//! Hostile provider: tries to allocate and touch 1 GiB; the host's memory cap must stop it.

use secrets_store_provider_sdk::{
    self as sdk, MountRequest, MountResponse, MountResponseExt, ProviderError, ProviderInfo,
};

struct Hog;

impl sdk::Provider for Hog {
    fn describe() -> ProviderInfo {
        ProviderInfo::new("hog", env!("CARGO_PKG_VERSION"), &[])
    }

    fn mount(request: MountRequest) -> Result<MountResponse, ProviderError> {
        let mut big = vec![0u8; 1 << 30];
        big[request.attributes.len()] = 1;
        let touched = big.iter().step_by(4096).filter(|b| **b != 0).count();
        Ok(MountResponse::default().with_file("size", 0o644, touched.to_string().into_bytes()))
    }
}

sdk::export_provider!(Hog);
