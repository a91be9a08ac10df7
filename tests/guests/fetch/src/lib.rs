//! Fetches the URLs in attribute `urls` (space-separated) concurrently and returns each body as
//! `body-N`. With `spin-after-send=true` it starts the requests and then never returns.

use sdk::http::{self, Request};
use secrets_store_provider_sdk::{
    self as sdk, ErrorKind, MountRequest, MountResponse, MountResponseExt, ProviderError,
    ProviderInfo,
};

struct Fetch;

impl sdk::Provider for Fetch {
    fn describe() -> ProviderInfo {
        ProviderInfo::new("fetch", env!("CARGO_PKG_VERSION"), &["http://localhost"])
    }

    fn mount(request: MountRequest) -> Result<MountResponse, ProviderError> {
        let urls: Vec<&str> = request
            .attributes
            .get("urls")
            .map(|u| u.split_whitespace().collect())
            .unwrap_or_default();
        let mut requests: Vec<Request> = urls.iter().map(|u| Request::get(*u)).collect();
        if let Some(auth) = request.attributes.get("authorization") {
            requests = requests
                .into_iter()
                .map(|r| r.header("authorization", auth.as_str()))
                .collect();
        }
        if request
            .attributes
            .get("spin-after-send")
            .is_some_and(|v| v == "true")
        {
            let _in_flight: Vec<_> = requests.into_iter().map(http::start).collect();
            let mut counter = 0u64;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        let concurrency = request
            .attributes
            .get("concurrency")
            .and_then(|c| c.parse().ok())
            .unwrap_or(8);
        let mut response = MountResponse::default();
        for (i, result) in http::send_all(requests, concurrency)
            .into_iter()
            .enumerate()
        {
            let reply = result
                .map_err(|e| sdk::error(ErrorKind::Unavailable, Some(urls[i]), e.to_string()))?;
            if !reply.is_success() {
                return Err(sdk::error(
                    ErrorKind::Upstream(reply.status),
                    Some(urls[i]),
                    "unexpected status",
                ));
            }
            response =
                response.with_file(format!("body-{i}"), request.default_file_mode, reply.body);
        }
        Ok(response)
    }
}

sdk::export_provider!(Fetch);
