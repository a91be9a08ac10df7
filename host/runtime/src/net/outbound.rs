//! One provider's outbound side, and the host-wide [`Network`] that makes one per provider.
//!
//! An [`Outbound`] owns the provider's connection pool (one per provider, because which addresses
//! a name may resolve to is part of the provider's policy), its coalescer and its gates, and routes
//! an admitted request: a bodiless GET through the coalescer, anything else straight upstream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::call::CallState;
use crate::observer::Observer;
use crate::policy::{Policy, Target};

use super::coalesce::{Coalescer, Key, request_key};
use super::config::{NetError, NetworkConfig, tls_config};
use super::connect::Connector;
use super::exchange::{Buffered, FetchError, HttpClient, Timeouts, exchange, rebuild};
use super::gate::{Gates, MAX_RETRY_AFTER, retry_after};

/// The host-wide outbound settings with their TLS configuration built once; hands each provider
/// its own [`Outbound`].
pub(crate) struct Network {
    config: NetworkConfig,
    tls: Arc<rustls::ClientConfig>,
    observer: Arc<dyn Observer>,
}

impl Network {
    pub(crate) fn new(
        config: NetworkConfig,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, NetError> {
        let tls = tls_config(&config)?;
        Ok(Network {
            config,
            tls,
            observer,
        })
    }

    /// A fresh outbound side (pool, coalescer, gates) for `provider` under `policy`.
    pub(crate) fn outbound(&self, provider: Arc<str>, policy: Arc<Policy>) -> Arc<Outbound> {
        let connector = Connector::new(policy.clone(), &self.config, self.tls.clone());
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.config.pool_idle_timeout)
            .pool_max_idle_per_host(policy.max_concurrent_requests as usize)
            .build(connector);
        Arc::new(Outbound {
            provider,
            coalescer: Arc::new(Coalescer::new(&policy)),
            gates: Gates::new(policy.rate_limit_per_host),
            policy,
            client,
            timeouts: Timeouts {
                first_byte: self.config.first_byte_timeout,
                between_bytes: self.config.between_bytes_timeout,
            },
            total_timeout: self.config.total_timeout,
            observer: self.observer.clone(),
        })
    }
}

/// One provider's outbound side: its pool, its coalescer and its gates.
pub(crate) struct Outbound {
    provider: Arc<str>,
    policy: Arc<Policy>,
    client: HttpClient,
    timeouts: Timeouts,
    total_timeout: Duration,
    coalescer: Arc<Coalescer>,
    gates: Gates,
    observer: Arc<dyn Observer>,
}

impl Outbound {
    pub(super) fn provider(&self) -> &str {
        &self.provider
    }

    pub(super) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The host's timeouts; a guest may only narrow them.
    pub(super) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Refuse `target` for `call`: logged, observed, and remembered for the call's error.
    pub(super) fn deny(&self, call: &CallState, target: &Target, why: &str) {
        let destination = target.to_string();
        tracing::warn!(provider = %self.provider, pod = call.pod_label(), %destination, "outbound request denied: {why}");
        self.observer.denied(&self.provider, &destination);
        call.record_denied(destination);
    }

    /// Send an admitted request: a bodiless GET shares (see [`Coalescer`]), the rest goes upstream.
    pub(super) async fn route(
        self: Arc<Self>,
        call_started: Instant,
        target: Target,
        parts: http::request::Parts,
        body: Bytes,
        timeouts: Timeouts,
    ) -> Result<Arc<Buffered>, FetchError> {
        if parts.method == Method::GET && body.is_empty() {
            let key = request_key(&parts.method, &parts.uri, &parts.headers);
            self.shared_get(
                key,
                call_started,
                target,
                parts.uri,
                parts.headers,
                timeouts,
            )
            .await
        } else {
            let request = rebuild(parts.method, parts.uri, parts.headers, body);
            self.fetch(&target, request, timeouts).await.map(Arc::new)
        }
    }

    /// A GET answered from the coalescer: a kept answer, an exchange in flight, or a new one.
    async fn shared_get(
        self: Arc<Self>,
        key: Key,
        call_started: Instant,
        target: Target,
        uri: Uri,
        headers: HeaderMap,
        timeouts: Timeouts,
    ) -> Result<Arc<Buffered>, FetchError> {
        if let Some(recent) = self.coalescer.recent(&key, call_started) {
            self.observer.outbound(
                &self.provider,
                &target.host,
                Some(recent.status.as_u16()),
                true,
            );
            return Ok(recent);
        }
        let host = target.host.clone();
        let this = self.clone();
        let fetch = async move {
            let request = rebuild(Method::GET, uri, headers, Bytes::new());
            this.fetch(&target, request, timeouts).await.map(Arc::new)
        };
        let on_join = || self.observer.joined_in_flight(&self.provider, &host);
        let (result, joined) = self.coalescer.share(key, fetch, on_join).await;
        if let (true, Ok(buffered)) = (joined, &result) {
            self.observer.outbound(
                &self.provider,
                &buffered.host,
                Some(buffered.status.as_u16()),
                true,
            );
        }
        result
    }

    /// One exchange with `target`: through its gate, bounded in total time, observed.
    async fn fetch(
        &self,
        target: &Target,
        request: http::Request<http_body_util::Full<Bytes>>,
        timeouts: Timeouts,
    ) -> Result<Buffered, FetchError> {
        let max_body = self.policy.max_response_bytes;
        let gated = async {
            self.gates.wait(target).await;
            let buffered =
                exchange(&self.client, request, timeouts, max_body, &target.host).await?;
            self.honour_retry_after(target, &buffered);
            Ok(buffered)
        };
        let result = match tokio::time::timeout(self.total_timeout, gated).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout("exchange took too long")),
        };
        let status = result.as_ref().ok().map(|b| b.status.as_u16());
        self.observer
            .outbound(&self.provider, &target.host, status, false);
        result
    }

    /// A throttled answer with `Retry-After` holds the destination back for everyone.
    fn honour_retry_after(&self, target: &Target, buffered: &Buffered) {
        let throttled = buffered.status == StatusCode::TOO_MANY_REQUESTS
            || buffered.status == StatusCode::SERVICE_UNAVAILABLE;
        if let (true, Some(wait)) = (throttled, retry_after(&buffered.headers)) {
            let wait = wait.min(MAX_RETRY_AFTER);
            self.gates.hold_back(target, wait);
            tracing::info!(provider = %self.provider, destination = %target, wait_ms = wait.as_millis() as u64,
                "destination asked to back off (Retry-After); holding requests to it");
        }
    }
}
