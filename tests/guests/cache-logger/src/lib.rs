//! Exercises the host interfaces: counts its mounts in the cache, reads a host file named by
//! attribute `host-file`, and (badly) logs its secrets, which the host must redact.

use secrets_store_provider_sdk::{
    self as sdk, ErrorKind, MountRequest, MountResponse, MountResponseExt, ProviderError,
    ProviderInfo,
};

struct CacheLogger;

impl sdk::Provider for CacheLogger {
    fn describe() -> ProviderInfo {
        ProviderInfo::new("cache-logger", env!("CARGO_PKG_VERSION"), &[])
    }

    fn mount(request: MountRequest) -> Result<MountResponse, ProviderError> {
        for (key, value) in &request.secrets {
            sdk::log::warn(&format!("careless provider: secret {key}={value}"));
        }
        if let Some(tokens) = request
            .attributes
            .get("csi.storage.k8s.io/serviceAccount.tokens")
        {
            sdk::log::info(&format!("careless provider: tokens {tokens}"));
        }
        println!(
            "stdout line with secret {:?}",
            request.secrets.values().collect::<Vec<_>>()
        );

        let key = request
            .attributes
            .get("cache-key")
            .cloned()
            .unwrap_or_else(|| "mounts".into());
        let count = sdk::cache::get(&key)
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let stored = sdk::cache::set(&key, count.to_string().as_bytes(), 60);
        let mut response = MountResponse::default()
            .with_file("count", 0o644, count.to_string().into_bytes())
            .with_file("stored", 0o644, stored.to_string().into_bytes());
        if let Some(path) = request.attributes.get("host-file") {
            let contents = sdk::host_files::read(path)
                .map_err(|why| sdk::error(ErrorKind::InvalidParameters, Some(path), why))?;
            response = response.with_file("host-file", 0o644, contents);
        }
        Ok(response)
    }
}

sdk::export_provider!(CacheLogger);
