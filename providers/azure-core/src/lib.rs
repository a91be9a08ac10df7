//! Azure Key Vault provider logic, pure Rust: parameters, auth flows, Key Vault calls, output formats.
//!
//! Everything external (HTTP, the cross-mount cache, host files, time, randomness, logging) comes
//! through [`Host`], so the same code runs natively in tests and inside the wasm guest
//! `providers/azure`, whose adapter implements `Host` over wasi:http and the host interfaces.
//! [`mount`] turns one mount request into files byte-identical to the upstream provider
//! (Azure/secrets-store-csi-driver-provider-azure).

use std::fmt;
use std::time::Duration;

pub use secrets_store_contract::{
    ErrorKind, File, MountRequest, MountResponse, ObjectVersion, ProviderError,
};

pub mod auth;
pub mod challenge;
pub mod cloud;
pub mod content;
pub mod encoding;
mod http;
pub mod keyvault;
mod mount;
pub mod params;
pub mod yaml;

pub use http::parse_retry_after;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// An outgoing request. Headers and body may carry credentials: `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field(
                "headers",
                &secrets_store_contract::HeaderNames(&self.headers),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A response. The body may carry a token or a secret: `Debug` shows its size only.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field(
                "headers",
                &secrets_store_contract::HeaderNames(&self.headers),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why a request got no response. The strings describe the failure (destination, reason),
/// never credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The host's outbound policy refused the destination.
    #[error("denied by the host's outbound policy: {0}")]
    Denied(String),
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("{0}")]
    Other(String),
}

/// The host's reason for not handing out a host file (not in the provider's policy, missing, too
/// large). Says nothing about the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostFileError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// What the provider needs from its environment.
pub trait Host {
    /// Sends the requests concurrently (the adapter bounds the concurrency); results in input order.
    fn send_all(&self, requests: Vec<HttpRequest>) -> Vec<Result<HttpResponse, TransportError>>;
    fn cache_get(&self, key: &str) -> Option<Vec<u8>>;
    fn cache_set(&self, key: &str, value: &[u8], ttl_secs: u32);
    fn cache_remove(&self, key: &str);
    /// Reads a file the operator made available to the provider.
    fn read_host_file(&self, path: &str) -> Result<Vec<u8>, HostFileError>;
    fn now_unix_secs(&self) -> u64;
    fn sleep(&self, duration: Duration);
    fn random_u64(&self) -> u64;
    /// Never called with secrets or tokens.
    fn log(&self, level: Level, message: &str);
}

/// Static facts about the provider (the WIT world's `provider-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    pub name: String,
    pub version: String,
    /// `scheme://host[:port]`, where host may start with `*.`.
    pub outbound_hosts: Vec<String>,
}

/// The provider's name, version and the destinations it may contact in any cloud.
pub fn describe() -> ProviderInfo {
    let hosts = [
        "https://*.vault.azure.net",
        "https://*.vault.usgovcloudapi.net",
        "https://*.vault.azure.cn",
        "https://*.vault.microsoftazure.de",
        "https://login.microsoftonline.com",
        "https://login.microsoftonline.us",
        "https://login.chinacloudapi.cn",
        "https://login.microsoftonline.de",
        "http://169.254.169.254",
        "http://localhost:2579",
    ];
    ProviderInfo {
        name: "azure".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        outbound_hosts: hosts.iter().map(|h| h.to_string()).collect(),
    }
}

/// Produces the files of one volume mount.
pub fn mount(host: &dyn Host, request: &MountRequest) -> Result<MountResponse, ProviderError> {
    mount::mount(host, request)
}
