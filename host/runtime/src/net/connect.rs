//! The connector of a provider's pool: resolve, connect, speak TLS.
//!
//! Kept hand-written on purpose. hyper-util's `HttpConnector` with a custom resolver plus
//! hyper-rustls' `HttpsConnector` would cover the plain case, but this connector must:
//!
//! - apply the operator's `--resolve HOST:PORT=ADDR:PORT` overrides, which are keyed by host *and*
//!   port and may change the port (a resolver only sees the name);
//! - filter the addresses DNS returns through the provider's own policy (`privateNetworks`) *after*
//!   resolution, per provider and per destination, so that a public name rebound to a private
//!   address is refused rather than connected to;
//! - trust the system roots plus the operator's extra CA (the shared `rustls::ClientConfig`).
//!
//! The stream it returns is hyper-rustls' [`MaybeHttpsStream`], which already carries the ALPN
//! result (HTTP/2 when the server chose `h2`) to the pool.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::policy::{Policy, Scheme, Target};

use super::config::NetworkConfig;

/// What the pool gets from the connector: TCP, or TLS over TCP.
pub(super) type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Why no connection could be made. Cloned into every request that shares a failed exchange.
#[derive(Clone, Debug, thiserror::Error)]
pub(super) enum ConnectError {
    /// Every address the name resolved to is private and not in the policy's `privateNetworks`.
    #[error("destination address prohibited")]
    Prohibited,
    #[error("name resolution failed: timed out")]
    DnsTimeout,
    #[error("name resolution failed: no addresses")]
    NoAddresses,
    #[error("name resolution failed: {0}")]
    Dns(#[source] Arc<io::Error>),
    #[error("connection refused")]
    Refused(#[source] Option<Arc<io::Error>>),
    #[error("connect timed out")]
    Timeout,
    #[error("TLS: {0}")]
    Tls(#[source] Arc<dyn std::error::Error + Send + Sync>),
    #[error("unsupported URI")]
    UnsupportedUri,
}

impl ConnectError {
    /// The `rcode` text a guest sees in `wasi:http`'s DNS error.
    pub(super) fn dns_info(&self) -> Option<String> {
        match self {
            ConnectError::DnsTimeout => Some("timed out".into()),
            ConnectError::NoAddresses => Some("no addresses".into()),
            ConnectError::Dns(e) => Some(e.to_string()),
            _ => None,
        }
    }
}

/// Resolves (overrides first, then DNS filtered by the policy), connects and speaks TLS.
#[derive(Clone)]
pub(super) struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    policy: Arc<Policy>,
    overrides: HashMap<(String, u16), Vec<SocketAddr>>,
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl Connector {
    pub(super) fn new(
        policy: Arc<Policy>,
        network: &NetworkConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        let mut overrides: HashMap<(String, u16), Vec<SocketAddr>> = HashMap::new();
        for o in &network.resolve {
            overrides
                .entry((o.host.clone(), o.port))
                .or_default()
                .push(o.addr);
        }
        Connector {
            inner: Arc::new(ConnectorInner {
                policy,
                overrides,
                tls: TlsConnector::from(tls),
                connect_timeout: network.connect_timeout,
            }),
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.connect(uri).await })
    }
}

impl ConnectorInner {
    async fn connect(&self, uri: Uri) -> Result<Stream, ConnectError> {
        let target = Target::from_uri(&uri).ok_or(ConnectError::UnsupportedUri)?;
        let addrs = self.resolve(&target).await?;
        let tcp = self.connect_any(addrs).await?;
        // Requests are small and latency-bound.
        let _ = tcp.set_nodelay(true);
        match target.scheme {
            Scheme::Http => Ok(MaybeHttpsStream::Http(TokioIo::new(tcp))),
            Scheme::Https => {
                let name = match target.ip {
                    Some(ip) => ServerName::IpAddress(ip.into()),
                    None => ServerName::try_from(target.host.clone())
                        .map_err(|e| ConnectError::Tls(Arc::new(e)))?,
                };
                let handshake = self.tls.connect(name, TokioIo::new(TokioIo::new(tcp)));
                let tls = tokio::time::timeout(self.connect_timeout, handshake)
                    .await
                    .map_err(|_| ConnectError::Timeout)?
                    .map_err(|e| ConnectError::Tls(Arc::new(e)))?;
                Ok(MaybeHttpsStream::Https(TokioIo::new(tls)))
            }
        }
    }

    /// The first address that accepts a connection; the last failure otherwise.
    async fn connect_any(&self, addrs: Vec<SocketAddr>) -> Result<TcpStream, ConnectError> {
        let mut last = ConnectError::Refused(None);
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = ConnectError::Refused(Some(Arc::new(e))),
                Err(_) => last = ConnectError::Timeout,
            }
        }
        Err(last)
    }

    async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, ConnectError> {
        if let Some(addrs) = self.overrides.get(&(target.host.clone(), target.port)) {
            return Ok(addrs.clone());
        }
        if let Some(ip) = target.ip {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        let found: Vec<SocketAddr> = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::lookup_host((target.host.as_str(), target.port)),
        )
        .await
        {
            Err(_) => return Err(ConnectError::DnsTimeout),
            Ok(Err(e)) => return Err(ConnectError::Dns(Arc::new(e))),
            Ok(Ok(addrs)) => addrs.collect(),
        };
        let allowed: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|a| self.policy.address_allowed(target, a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(if found.is_empty() {
                ConnectError::NoAddresses
            } else {
                ConnectError::Prohibited
            });
        }
        Ok(allowed)
    }
}
