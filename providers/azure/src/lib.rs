//! The Azure Key Vault provider component: the logic lives in `secrets-store-azure-core`; this crate
//! connects it to the host through the provider SDK (wasi:http, the provider cache, host files,
//! clocks, randomness and logging).

use std::time::Duration;

use secrets_store_azure_core::{
    self as azure, Host, HttpRequest, HttpResponse, Level, Method, TransportError,
};
use secrets_store_provider_sdk::{
    self as sdk, MountRequest, MountResponse, ProviderError, ProviderInfo,
};

/// Requests of one batch in flight at once (the host's policy may bound this further).
const MAX_IN_FLIGHT: usize = 16;

struct Azure;

impl sdk::Provider for Azure {
    fn describe() -> ProviderInfo {
        let info = azure::describe();
        ProviderInfo {
            name: info.name,
            version: info.version,
            outbound_hosts: info.outbound_hosts,
        }
    }

    fn mount(request: MountRequest) -> Result<MountResponse, ProviderError> {
        azure::mount(&WasiHost, &request)
    }
}

sdk::export_provider!(Azure);

struct WasiHost;

impl Host for WasiHost {
    fn send_all(&self, requests: Vec<HttpRequest>) -> Vec<Result<HttpResponse, TransportError>> {
        let requests = requests
            .into_iter()
            .map(|r| {
                let method = match r.method {
                    Method::Get => sdk::http::Method::Get,
                    Method::Post => sdk::http::Method::Post,
                };
                let mut request = sdk::http::Request::new(method, r.url).body(r.body);
                request.headers = r.headers;
                request
            })
            .collect();
        sdk::http::send_all(requests, MAX_IN_FLIGHT)
            .into_iter()
            .map(|result| {
                result
                    .map(|r| HttpResponse {
                        status: r.status,
                        headers: r.headers,
                        body: r.body,
                    })
                    .map_err(|e| match e {
                        sdk::http::Error::Denied(destination) => {
                            TransportError::Denied(destination)
                        }
                        sdk::http::Error::Timeout => TransportError::Timeout,
                        sdk::http::Error::Connect(why) => TransportError::Connect(why),
                        sdk::http::Error::Tls(why) => TransportError::Tls(why),
                        other => TransportError::Other(other.to_string()),
                    })
            })
            .collect()
    }

    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        sdk::cache::get(key)
    }

    fn cache_set(&self, key: &str, value: &[u8], ttl_secs: u32) {
        // A refused entry only costs a token request next time.
        let _ = sdk::cache::set(key, value, ttl_secs);
    }

    fn cache_remove(&self, key: &str) {
        sdk::cache::remove(key)
    }

    fn read_host_file(&self, path: &str) -> Result<Vec<u8>, azure::HostFileError> {
        sdk::host_files::read(path).map_err(|refused| azure::HostFileError(refused.to_string()))
    }

    fn now_unix_secs(&self) -> u64 {
        sdk::time::now_unix_secs()
    }

    fn sleep(&self, duration: Duration) {
        sdk::time::sleep(duration)
    }

    fn random_u64(&self) -> u64 {
        sdk::time::random_u64()
    }

    fn log(&self, level: Level, message: &str) {
        match level {
            Level::Trace => sdk::log::trace(message),
            Level::Debug => sdk::log::debug(message),
            Level::Info => sdk::log::info(message),
            Level::Warn => sdk::log::warn(message),
            Level::Error => sdk::log::error(message),
        }
    }
}
