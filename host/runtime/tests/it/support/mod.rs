//! A local HTTP/HTTPS server for runtime tests: records every request and answers through a
//! handler the test supplies; plus small helpers to load guests and build requests.

#![allow(dead_code, clippy::unwrap_used)] // Test support: a failed unwrap is a failed test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrets_store_runtime::{NetworkConfig, Policy, PolicySpec, Provider, Runtime, RuntimeConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn text(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub at: Instant,
}

type Handler = Arc<dyn Fn(Seen) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub ca_pem: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    arrivals: tokio::sync::Mutex<mpsc::UnboundedReceiver<Seen>>,
}

impl TestServer {
    pub async fn http(
        handler: impl Fn(Seen) -> BoxFuture<'static, Response<Body>> + Send + Sync + 'static,
    ) -> TestServer {
        Self::start(None, Arc::new(handler)).await
    }

    /// HTTPS with a fresh CA; the certificate covers `names`.
    pub async fn https(
        names: &[&str],
        handler: impl Fn(Seen) -> BoxFuture<'static, Response<Body>> + Send + Sync + 'static,
    ) -> TestServer {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "runtime test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap()
                .signed_by(&leaf_key, &ca)
                .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
        let mut server = Self::start(Some(Arc::new(config)), Arc::new(handler)).await;
        server.ca_pem = ca.pem();
        server
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let record = record.clone();
                let tx = tx.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let seen = Seen {
                            method: request.method().to_string(),
                            path: request
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                            headers: request.headers().clone(),
                            at: Instant::now(),
                        };
                        record.lock().push(seen.clone());
                        let _ = tx.send(seen.clone());
                        let response = handler(seen);
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        TestServer {
            addr,
            ca_pem: String::new(),
            seen,
            arrivals: tokio::sync::Mutex::new(rx),
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// Wait for the next request to arrive.
    pub async fn next_arrival(&self) -> Seen {
        self.arrivals.lock().await.recv().await.unwrap()
    }
}

pub fn policy(spec: PolicySpec) -> Policy {
    Policy::from_spec(&spec).unwrap()
}

pub fn allow(hosts: &[&str]) -> PolicySpec {
    PolicySpec {
        allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        ..Default::default()
    }
}

pub fn runtime_with(network: NetworkConfig) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 8,
        network,
        ..Default::default()
    })
    .unwrap()
}

/// A runtime for tests that need more than [`runtime`]: set the fields, the rest is as there.
pub fn runtime_from(config: RuntimeConfig) -> Runtime {
    Runtime::new(RuntimeConfig {
        network: NetworkConfig {
            no_system_roots: true,
            ..Default::default()
        },
        ..config
    })
    .unwrap()
}

pub fn runtime() -> Runtime {
    runtime_with(NetworkConfig {
        no_system_roots: true,
        ..Default::default()
    })
}

pub fn load(runtime: &Runtime, name: &str, path: &str, spec: PolicySpec) -> Provider {
    runtime
        .load_file(name, std::path::Path::new(path), policy(spec))
        .unwrap()
}

pub use secrets_store_test_support::mount_request as request;
