//! The two listeners and request dispatch. HTTPS requests are routed by `Host` (a vault host
//! `{vault}.{vault suffix}`, an AAD login host, or `localhost` for control requests); plain-HTTP
//! requests by path (IMDS, NMI, control). Every request passes the fault engine first and is logged
//! and counted afterwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cloud::CloudProfile;
use crate::emulator::Inner;
use crate::faults::{Fault, RequestClass};
use crate::observe::{LogEntry, TokenPresence};
use crate::{aad, admin, imds, kv};

pub type Resp = Response<Full<Bytes>>;

const MAX_BODY: usize = 4 * 1024 * 1024;

/// A request with its body read.
pub struct Req {
    pub method: Method,
    pub host: String,
    pub path: String,
    pub raw_query: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl Req {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    pub fn path_and_query(&self) -> String {
        if self.raw_query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.raw_query)
        }
    }
}

/// A handler's answer plus what the log should say about the caller.
pub struct Outcome {
    pub resp: Resp,
    pub token: TokenPresence,
    pub identity: Option<String>,
}

impl Outcome {
    pub fn anonymous(resp: Resp) -> Self {
        Self {
            resp,
            token: TokenPresence::Absent,
            identity: None,
        }
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

pub fn text_response(status: StatusCode, text: &str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(text.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Https,
    Http,
}

/// Where a request goes.
enum Target {
    Vault { name: String, cloud: CloudProfile },
    Login { cloud: CloudProfile },
    Imds,
    Nmi,
    Admin,
    Unknown,
}

/// Returned from the service to make hyper close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

fn host_of(req: &Request<Incoming>) -> String {
    let raw = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
        .unwrap_or_default();
    // Strip a port (IPv6 literals keep their brackets).
    let host = match raw.rfind(':') {
        Some(i) if !raw[i..].contains(']') => raw[..i].to_string(),
        _ => raw,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn route(inner: &Inner, listener: Listener, req: &Req) -> (Target, RequestClass) {
    let is_local = matches!(req.host.as_str(), "localhost" | "127.0.0.1" | "[::1]");
    if req.path.starts_with("/_emulator/") && (is_local || listener == Listener::Http) {
        return (Target::Admin, RequestClass::Admin);
    }
    match listener {
        Listener::Http => {
            let p = req.path.trim_end_matches('/');
            if p == "/metadata/identity/oauth2/token" {
                (Target::Imds, RequestClass::Imds)
            } else if p == "/host/token" {
                (Target::Nmi, RequestClass::Nmi)
            } else {
                (Target::Unknown, RequestClass::Unknown)
            }
        }
        Listener::Https => {
            if let Some(cloud) = inner.clouds.by_login_host(&req.host) {
                let class = if req.method == Method::POST && req.path.ends_with("/token") {
                    RequestClass::AadToken
                } else {
                    RequestClass::AadDiscovery
                };
                return (
                    Target::Login {
                        cloud: cloud.clone(),
                    },
                    class,
                );
            }
            if let Some((name, cloud)) = inner.clouds.split_vault_host(&req.host) {
                let class = if req.method == Method::GET {
                    RequestClass::DataPlaneGet
                } else {
                    RequestClass::DataPlaneWrite
                };
                return (
                    Target::Vault {
                        name: name.to_string(),
                        cloud: cloud.clone(),
                    },
                    class,
                );
            }
            (Target::Unknown, RequestClass::Unknown)
        }
    }
}

fn fault_response(target: &Target, fault: Fault) -> Resp {
    match fault {
        Fault::Throttle { retry_after_secs } => {
            let status = StatusCode::TOO_MANY_REQUESTS;
            let mut resp = match target {
                Target::Vault { .. } => json_response(
                    status,
                    &json!({"error": {"code": "Throttled", "message": format!(
                        "Request was not processed because too many requests were received. Reason: A generic throttling limit was exceeded. Please retry after {retry_after_secs} seconds.")}}),
                ),
                Target::Login { cloud } => aad::error_response(
                    cloud,
                    status,
                    "temporarily_unavailable",
                    90055,
                    "TenantThrottlingThreshold: The request was throttled because the tenant exceeded its request limit.",
                    None,
                ),
                Target::Imds => json_response(
                    status,
                    &json!({"error": "too_many_requests", "error_description": "Too many requests were received. Retry later."}),
                ),
                _ => text_response(status, "too many requests\n"),
            };
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after_secs.to_string())
                    .unwrap_or(HeaderValue::from_static("1")),
            );
            resp
        }
        Fault::ServerError { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            match target {
                Target::Vault { .. } => {
                    let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                        "ServiceUnavailable"
                    } else {
                        "InternalServerError"
                    };
                    json_response(
                        status,
                        &json!({"error": {"code": code, "message": "The service is temporarily unavailable. Please retry the request."}}),
                    )
                }
                Target::Login { cloud } => aad::error_response(
                    cloud,
                    status,
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                    None,
                ),
                Target::Imds => json_response(
                    status,
                    &json!({"error": "server_error", "error_description": "An unexpected error occurred in the identity service. Retry the request."}),
                ),
                _ => text_response(status, "service unavailable\n"),
            }
        }
        // Drop and Delay are handled before answering.
        Fault::Drop | Fault::Delay { .. } => text_response(StatusCode::INTERNAL_SERVER_ERROR, ""),
    }
}

fn fault_name(f: Fault) -> &'static str {
    match f {
        Fault::Throttle { .. } => "throttle",
        Fault::ServerError { .. } => "server_error",
        Fault::Drop => "drop",
        Fault::Delay { .. } => "delay",
    }
}

async fn handle(
    inner: Arc<Inner>,
    listener: Listener,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Resp, DropConnection> {
    let host = host_of(&req);
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable\n",
            ));
        }
    };
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let req = Req {
        method: parts.method,
        host,
        path: parts.uri.path().to_string(),
        query: crate::util::parse_query(&raw_query),
        raw_query,
        headers: parts.headers,
        body,
        peer,
    };
    let (target, class) = route(&inner, listener, &req);
    let decision = inner.faults.decide(class);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let mut entry = LogEntry {
        seq: 0,
        unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis(),
        method: req.method.to_string(),
        host: req.host.clone(),
        path: req.path_and_query(),
        class,
        status: None,
        token: TokenPresence::Absent,
        identity: None,
        fault: decision.fault.map(|f| fault_name(f).to_string()),
    };
    match class {
        RequestClass::DataPlaneGet => inner.observer.count(|c| c.data_plane_gets += 1),
        RequestClass::DataPlaneWrite => inner.observer.count(|c| c.data_plane_writes += 1),
        _ => {}
    }
    if let Some(fault) = decision.fault {
        // A faulted token request never reaches its handler, which counts the others.
        let endpoint = match class {
            RequestClass::AadToken => Some("aad"),
            RequestClass::Imds => Some("imds"),
            RequestClass::Nmi => Some("nmi"),
            _ => None,
        };
        if let Some(endpoint) = endpoint {
            inner
                .observer
                .count(|c| *c.token_requests.entry(endpoint.into()).or_insert(0) += 1);
        }
        match fault {
            Fault::Drop => {
                inner.observer.count(|c| c.dropped += 1);
                inner.observer.record(entry);
                return Err(DropConnection);
            }
            Fault::Throttle { .. } => inner.observer.count(|c| c.throttled += 1),
            Fault::ServerError { .. } => inner.observer.count(|c| c.server_errors += 1),
            Fault::Delay { .. } => {}
        }
        let resp = fault_response(&target, fault);
        entry.status = Some(resp.status().as_u16());
        inner.observer.record(entry);
        return Ok(resp);
    }
    let outcome = match &target {
        Target::Vault { name, cloud } => kv::handle(&inner, name, cloud, &req).await,
        Target::Login { cloud } => aad::handle(&inner, cloud, &req),
        Target::Imds => imds::handle_imds(&inner, &req),
        Target::Nmi => imds::handle_nmi(&inner, &req),
        Target::Admin => admin::handle(&inner, &req),
        Target::Unknown => Outcome::anonymous(text_response(
            StatusCode::NOT_FOUND,
            &format!(
                "keyvault-emulator serves no {} {} on host '{}'\n",
                req.method, req.path, req.host
            ),
        )),
    };
    let status = outcome.resp.status();
    if matches!(target, Target::Vault { .. }) {
        inner.observer.count(|c| match status {
            StatusCode::UNAUTHORIZED => c.challenges += 1,
            StatusCode::FORBIDDEN => c.forbidden += 1,
            StatusCode::NOT_FOUND => c.not_found += 1,
            _ => {}
        });
    }
    entry.status = Some(status.as_u16());
    entry.token = outcome.token;
    entry.identity = outcome.identity;
    if class != RequestClass::Admin {
        inner.observer.record(entry);
    }
    Ok(outcome.resp)
}

/// Accepts connections until `shutdown` turns true; connection tasks end with the listener.
pub async fn serve(
    listener: TcpListener,
    kind: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    inner: Arc<Inner>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
        let Ok((stream, peer)) = accepted else {
            // Out of file descriptors and the like: back off instead of spinning on the error.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        // As real front ends do: without it, Nagle's algorithm holds a response's second small
        // write until the client's delayed ACK (~40 ms on Linux) and every exchange pays for it.
        let _ = stream.set_nodelay(true);
        let inner = inner.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| handle(inner.clone(), kind, peer, req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
    conns.shutdown().await;
}
