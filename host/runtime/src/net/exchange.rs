//! One upstream exchange through a provider's pooled hyper client: send, wait for the first byte,
//! read the body whole within the policy's size limit and the between-bytes timeout. What comes
//! back is a [`Buffered`] response that any number of waiting guests can be handed.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use super::connect::{ConnectError, Connector};

/// A provider's connection pool.
pub(super) type HttpClient = Client<Connector, Full<Bytes>>;

/// Why an upstream exchange produced no response. Cloned to every guest sharing the exchange.
#[derive(Clone, Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("connection closed before the response")]
    Terminated,
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("response body over {0} bytes")]
    BodyTooLarge(u64),
    #[error("HTTP: {0}")]
    Protocol(#[source] Arc<dyn std::error::Error + Send + Sync>),
    #[error("fetch task failed")]
    TaskFailed(#[source] Arc<tokio::task::JoinError>),
}

impl From<FetchError> for HttpError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Connect(connect) => match connect {
                ConnectError::Prohibited => HttpError::DestinationIpProhibited,
                ConnectError::DnsTimeout | ConnectError::NoAddresses | ConnectError::Dns(_) => {
                    HttpError::DnsError {
                        rcode: connect.dns_info(),
                        info_code: None,
                    }
                }
                ConnectError::Refused(_) => HttpError::ConnectionRefused,
                ConnectError::Timeout => HttpError::ConnectionTimeout,
                ConnectError::Tls(_) => HttpError::TlsCertificateError,
                ConnectError::UnsupportedUri => HttpError::InternalError(Some(connect.to_string())),
            },
            FetchError::Terminated => HttpError::ConnectionTerminated,
            FetchError::Timeout(_) => HttpError::ConnectionReadTimeout,
            FetchError::BodyTooLarge(limit) => HttpError::HttpResponseBodySize(Some(limit)),
            FetchError::Protocol(_) => HttpError::HttpProtocolError,
            e @ FetchError::TaskFailed(_) => HttpError::InternalError(Some(e.to_string())),
        }
    }
}

impl FetchError {
    /// What a failed client request means, found in its chain of sources.
    fn from_client(e: hyper_util::client::legacy::Error) -> FetchError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        while let Some(err) = source {
            if let Some(connect) = err.downcast_ref::<ConnectError>() {
                return FetchError::Connect(connect.clone());
            }
            // The server closed the connection before answering (a dropped or reset connection,
            // or a pooled keep-alive connection it had already closed): the provider may retry.
            if let Some(hyper) = err.downcast_ref::<hyper::Error>()
                && (hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled())
            {
                return FetchError::Terminated;
            }
            source = err.source();
        }
        if e.is_connect() {
            FetchError::Connect(ConnectError::Refused(None))
        } else {
            FetchError::Protocol(Arc::new(e))
        }
    }
}

/// The host's timeouts for the response, as narrowed by the guest.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    pub(super) first_byte: Duration,
    pub(super) between_bytes: Duration,
}

impl Timeouts {
    /// The guest may shorten the host's timeouts, never lengthen them.
    pub(super) fn narrowed(self, options: Option<RequestOptions>) -> Timeouts {
        let Some(options) = options else { return self };
        let pick = |host: Duration, guest: Option<Duration>| match guest {
            Some(g) if !g.is_zero() => host.min(g),
            _ => host,
        };
        Timeouts {
            first_byte: pick(self.first_byte, options.first_byte_timeout),
            between_bytes: pick(self.between_bytes, options.between_bytes_timeout),
        }
    }
}

/// A response read whole.
#[derive(Debug)]
pub(super) struct Buffered {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// The destination host, for metrics.
    pub(super) host: String,
}

impl Buffered {
    /// A fresh `wasi:http` response with this status, headers and body.
    pub(super) fn response(&self) -> Response<WasiBody> {
        let mut response = Response::new(
            Full::new(self.body.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            // The body is complete; framing headers from the wire no longer describe it.
            if name != http::header::TRANSFER_ENCODING && name != http::header::CONNECTION {
                headers.append(name, value.clone());
            }
        }
        response
    }
}

/// Send `request` and read the answer whole: at most `max_body` bytes, within `timeouts`.
pub(super) async fn exchange(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    timeouts: Timeouts,
    max_body: usize,
    host: &str,
) -> Result<Buffered, FetchError> {
    let response = match tokio::time::timeout(timeouts.first_byte, client.request(request)).await {
        Err(_) => return Err(FetchError::Timeout("no response")),
        Ok(Err(e)) => return Err(FetchError::from_client(e)),
        Ok(Ok(response)) => response,
    };
    let (parts, mut body) = response.into_parts();
    let mut bytes = BytesMut::new();
    loop {
        match tokio::time::timeout(timeouts.between_bytes, body.frame()).await {
            Err(_) => return Err(FetchError::Timeout("response body stalled")),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(FetchError::Protocol(Arc::new(e))),
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if bytes.len() + data.len() > max_body {
                        return Err(FetchError::BodyTooLarge(max_body as u64));
                    }
                    bytes.extend_from_slice(data);
                }
            }
        }
    }
    Ok(Buffered {
        status: parts.status,
        headers: parts.headers,
        body: bytes.freeze(),
        host: host.to_string(),
    })
}

/// A request with a complete body, as the pool sends it.
pub(super) fn rebuild(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_can_only_shorten_timeouts() {
        let host = Timeouts {
            first_byte: Duration::from_secs(20),
            between_bytes: Duration::from_secs(10),
        };
        let narrowed = host.narrowed(Some(RequestOptions {
            connect_timeout: None,
            first_byte_timeout: Some(Duration::from_secs(2)),
            between_bytes_timeout: Some(Duration::from_secs(600)),
        }));
        assert_eq!(narrowed.first_byte, Duration::from_secs(2));
        assert_eq!(narrowed.between_bytes, Duration::from_secs(10));
    }
}
