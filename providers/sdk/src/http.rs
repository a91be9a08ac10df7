//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! Requests go to the host, which checks them against the provider's outbound policy, pools the
//! connections and enforces timeouts and body limits. [`send_all`] keeps several requests in flight
//! at once, which is how a provider fetches many objects in about one round trip.

use std::fmt;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, FutureIncomingResponse, IncomingResponse, Method as WitMethod, OutgoingBody,
    OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::poll;
use crate::bindings::wasi::io::streams::StreamError;

/// Bodies larger than this are refused unless the request says otherwise.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Head,
    Patch,
}

#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Time allowed until the response starts (the host bounds it too).
    pub timeout: Option<Duration>,
    /// Largest response body accepted.
    pub body_limit: usize,
}

// Headers may carry credentials: Debug shows their names only.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
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

impl Request {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// A `application/x-www-form-urlencoded` body from name/value pairs.
    pub fn form(self, fields: &[(&str, &str)]) -> Self {
        let encoded = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(encoded)
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request produced no response. The texts name the destination and the failure (WASI
/// error codes carry no payloads), never headers or bodies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The host's outbound policy refused the destination.
    #[error("the host's outbound policy does not allow {0}")]
    Denied(String),
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("timed out")]
    Timeout,
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("response body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("{0}")]
    Other(String),
}

/// Send one request and wait for its whole response.
pub fn send(request: Request) -> Result<Response, Error> {
    start(request)?.wait()
}

/// A request the host is already working on.
pub struct PendingResponse(InFlight);

impl PendingResponse {
    /// Block until the whole response has arrived.
    pub fn wait(self) -> Result<Response, Error> {
        self.0.future.subscribe().block();
        finish(&self.0)
    }
}

/// Hand a request to the host and return at once; the host sends it while the provider goes on.
pub fn start(request: Request) -> Result<PendingResponse, Error> {
    let future = begin(&request)?;
    Ok(PendingResponse(InFlight {
        index: 0,
        future,
        body_limit: request.body_limit,
        dest: destination(&request.url),
    }))
}

/// Send all requests, at most `max_in_flight` at a time, and return their results in input order.
pub fn send_all(requests: Vec<Request>, max_in_flight: usize) -> Vec<Result<Response, Error>> {
    let max_in_flight = max_in_flight.max(1);
    let mut results: Vec<Option<Result<Response, Error>>> =
        (0..requests.len()).map(|_| None).collect();
    let mut pending = requests.into_iter().enumerate();
    let mut in_flight: Vec<InFlight> = Vec::new();

    loop {
        while in_flight.len() < max_in_flight {
            let Some((index, request)) = pending.next() else {
                break;
            };
            match begin(&request) {
                Ok(future) => in_flight.push(InFlight {
                    index,
                    future,
                    body_limit: request.body_limit,
                    dest: destination(&request.url),
                }),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        if in_flight.is_empty() {
            break;
        }
        let pollables: Vec<_> = in_flight.iter().map(|f| f.future.subscribe()).collect();
        let refs: Vec<_> = pollables.iter().collect();
        let mut ready = poll::poll(&refs);
        drop(refs);
        drop(pollables);
        // Remove from the back so earlier indices stay valid.
        ready.sort_unstable_by(|a, b| b.cmp(a));
        for position in ready {
            let done = in_flight.swap_remove(position as usize);
            let result = finish(&done);
            results[done.index] = Some(result);
        }
    }

    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Other("request was not sent".into()))))
        .collect()
}

struct InFlight {
    index: usize,
    future: FutureIncomingResponse,
    body_limit: usize,
    dest: String,
}

fn begin(request: &Request) -> Result<FutureIncomingResponse, Error> {
    let url = ParsedUrl::parse(&request.url)?;
    let headers = crate::bindings::wasi::http::types::Fields::new();
    for (name, value) in &request.headers {
        headers
            .append(&name.to_ascii_lowercase(), value.as_bytes())
            .map_err(|e| Error::Other(format!("header {name:?} refused: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        Method::Get => WitMethod::Get,
        Method::Post => WitMethod::Post,
        Method::Put => WitMethod::Put,
        Method::Delete => WitMethod::Delete,
        Method::Head => WitMethod::Head,
        Method::Patch => WitMethod::Patch,
    };
    let bad = |what: &str| Error::InvalidUrl(format!("{what} of {}", destination(&request.url)));
    outgoing.set_method(&method).map_err(|()| bad("method"))?;
    outgoing
        .set_scheme(Some(&url.scheme))
        .map_err(|()| bad("scheme"))?;
    outgoing
        .set_authority(Some(&url.authority))
        .map_err(|()| bad("authority"))?;
    outgoing
        .set_path_with_query(Some(&url.path_and_query))
        .map_err(|()| bad("path"))?;
    let body = outgoing
        .body()
        .map_err(|()| Error::Other("request body unavailable".into()))?;

    let options = RequestOptions::new();
    if let Some(timeout) = request.timeout {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        // A host may not support every option; its own limits apply regardless.
        let _ = options.set_first_byte_timeout(Some(nanos));
    }
    // The host starts sending as soon as the request is handed over, so the body is written after.
    let future =
        outgoing_handler::handle(outgoing, Some(options)).map_err(map_error_code(&request.url))?;
    write_body(body, &request.body)?;
    Ok(future)
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
    {
        let stream = body
            .write()
            .map_err(|()| Error::Other("request body stream unavailable".into()))?;
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| Error::Other(format!("writing request body: {e:?}")))?;
        }
    }
    OutgoingBody::finish(body, None)
        .map_err(|e| Error::Other(format!("finishing request body: {e:?}")))
}

fn finish(done: &InFlight) -> Result<Response, Error> {
    let map = map_error_code(&done.dest);
    let response = match done.future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(map(code)),
        Some(Err(())) => return Err(Error::Other("response already taken".into())),
        None => return Err(Error::Other("response not ready".into())),
    };
    read_response(response, done.body_limit).map_err(|e| match e {
        ReadError::Code(code) => map(code),
        ReadError::Other(e) => e,
    })
}

enum ReadError {
    Code(ErrorCode),
    Other(Error),
}

fn read_response(response: IncomingResponse, limit: usize) -> Result<Response, ReadError> {
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body = response
        .consume()
        .map_err(|()| ReadError::Other(Error::Other("response body unavailable".into())))?;
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| ReadError::Other(Error::Other("response stream unavailable".into())))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    if bytes.len() + chunk.len() > limit {
                        return Err(ReadError::Other(Error::BodyTooLarge(limit)));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    let code = crate::bindings::wasi::http::types::http_error_code(&e);
                    return Err(match code {
                        Some(code) => ReadError::Code(code),
                        None => ReadError::Other(Error::Other(format!(
                            "reading response body: {}",
                            e.to_debug_string()
                        ))),
                    });
                }
            }
        }
    }
    drop(body);
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

fn map_error_code(url: &str) -> impl Fn(ErrorCode) -> Error + '_ {
    move |code| match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
            Error::Denied(destination(url))
        }
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::DnsTimeout => Error::Timeout,
        ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => Error::Tls(format!("{code:?}")),
        ErrorCode::HttpResponseBodySize(limit) => {
            Error::BodyTooLarge(limit.map(|l| l as usize).unwrap_or(DEFAULT_BODY_LIMIT))
        }
        ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::DnsError(_) => Error::Connect(format!("{code:?}")),
        other => Error::Other(format!("{other:?}")),
    }
}

/// `scheme://authority` of a URL, for messages (never the path or query, which may carry data).
fn destination(url: &str) -> String {
    match ParsedUrl::parse(url) {
        Ok(u) => {
            let scheme = match &u.scheme {
                Scheme::Http => "http".to_string(),
                Scheme::Https => "https".to_string(),
                Scheme::Other(s) => s.clone(),
            };
            format!("{scheme}://{}", u.authority)
        }
        Err(_) => "an invalid URL".to_string(),
    }
}

struct ParsedUrl {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

impl ParsedUrl {
    fn parse(url: &str) -> Result<Self, Error> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::InvalidUrl("missing scheme".into()))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(Error::InvalidUrl(format!("unsupported scheme {other:?}"))),
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(Error::InvalidUrl("missing or unsupported authority".into()));
        }
        // Fragments never go on the wire.
        let tail = tail.split('#').next().unwrap_or("");
        let path_and_query = if tail.is_empty() {
            "/".to_string()
        } else if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        Ok(ParsedUrl {
            scheme,
            authority: authority.to_string(),
            path_and_query,
        })
    }
}

/// RFC 3986's unreserved characters stay, everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode for `application/x-www-form-urlencoded` (spaces become `+`, as Go's
/// `url.QueryEscape` writes them).
pub fn form_encode(value: &str) -> String {
    value
        .split(' ')
        .map(|part| utf8_percent_encode(part, UNRESERVED).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// Percent-encode one URL path segment or query value.
pub fn url_encode(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED).to_string()
}
