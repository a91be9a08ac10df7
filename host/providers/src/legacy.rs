//! Legacy provider daemons: the upstream `v1alpha1.CSIDriverProvider` gRPC API on a unix socket.
//!
//! Compatible with upstream's client: attributes and secrets go as JSON objects, the default file
//! mode as a decimal string (0644 → `"420"`), the target path as is; a response's `error.code`
//! fails the mount; a response without object versions is refused, as upstream does. Calls are
//! retried only on `UNAVAILABLE`, three attempts in all, backing off from 1 s (×1.1, at most 10 s,
//! with jitter), and never past the caller's deadline. Unlike upstream (`waitForReady`), a socket
//! nobody listens on fails the mount after those attempts with the socket's path, instead of
//! waiting out the whole deadline.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use secrets_store_contract::{File, MountRequest, MountResponse, ObjectVersion};
use secrets_store_proto::provider::v1alpha1 as wire;
use secrets_store_runtime::redact::Redactor;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{GrpcCode, ProviderCallError};

/// Attempts of one call when the provider answers `UNAVAILABLE` (upstream's retry policy).
const ATTEMPTS: u32 = 3;
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const BACKOFF_MULTIPLIER: f64 = 1.1;
/// Provider-supplied text (status messages, error codes) is cut to this many bytes.
const MAX_MESSAGE: usize = 1024;

/// Channels to provider sockets, one per socket path, shared by every handle of a registry.
#[derive(Default)]
pub(crate) struct ChannelPool {
    channels: Mutex<HashMap<PathBuf, Channel>>,
}

impl ChannelPool {
    /// The channel for `socket`, created on first use. The channel connects lazily and reconnects
    /// by itself (a restarted provider daemon gets a fresh connection on the next call).
    fn get(&self, socket: &Path) -> Channel {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(socket) {
            return channel.clone();
        }
        let path = socket.to_path_buf();
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                UnixStream::connect(&path)
                    .await
                    .map(TokioIo::new)
                    .map_err(|source| SocketConnectError { source })
            }
        });
        // The URI is a placeholder that the connector ignores; it only sets `:authority`.
        let channel =
            Endpoint::from_static("http://localhost").connect_with_connector_lazy(connector);
        channels.insert(socket.to_path_buf(), channel.clone());
        channel
    }
}

/// Marks a failure to connect to the socket, so that it can be told apart from an `UNAVAILABLE`
/// the provider itself answered.
#[derive(Debug, thiserror::Error)]
#[error("connecting to the socket: {source}")]
struct SocketConnectError {
    source: std::io::Error,
}

/// A provider daemon reached over `<dir>/<name>.sock`. Cheap to clone.
#[derive(Clone)]
pub struct LegacyProvider {
    name: Arc<str>,
    socket: PathBuf,
    pool: Arc<ChannelPool>,
    max_recv_msg_size: usize,
}

impl fmt::Debug for LegacyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyProvider")
            .field("name", &self.name)
            .field("socket", &self.socket)
            .finish()
    }
}

/// What a provider daemon says about itself (`Version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: String,
    pub runtime_name: String,
    pub runtime_version: String,
}

impl LegacyProvider {
    pub(crate) fn new(
        name: &str,
        socket: PathBuf,
        pool: Arc<ChannelPool>,
        max_recv_msg_size: usize,
    ) -> Self {
        LegacyProvider {
            name: Arc::from(name),
            socket,
            pool,
            max_recv_msg_size,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket this provider was found at.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn client(&self) -> wire::csi_driver_provider_client::CsiDriverProviderClient<Channel> {
        wire::csi_driver_provider_client::CsiDriverProviderClient::new(self.pool.get(&self.socket))
            .max_decoding_message_size(self.max_recv_msg_size)
    }

    /// Call `Version` (e.g. for a health check), bounded by `deadline`, without retries.
    pub async fn version(&self, deadline: Duration) -> Result<VersionInfo, ProviderCallError> {
        let mut request = tonic::Request::new(wire::VersionRequest {
            version: "v1alpha1".into(),
        });
        request.set_timeout(deadline);
        let mut client = self.client();
        let started = Instant::now();
        let reply = tokio::time::timeout(deadline, client.version(request))
            .await
            .map_err(|_| self.deadline(deadline))?
            .map_err(|status| {
                if started.elapsed() >= deadline {
                    self.deadline(deadline)
                } else {
                    self.status_error(&status, &Redactor::default())
                }
            })?
            .into_inner();
        Ok(VersionInfo {
            version: bounded(&reply.version),
            runtime_name: bounded(&reply.runtime_name),
            runtime_version: bounded(&reply.runtime_version),
        })
    }

    /// Call `Mount` and turn the answer into a checked [`MountResponse`].
    pub async fn mount(
        &self,
        request: &MountRequest,
        target_path: &Path,
        deadline: Duration,
    ) -> Result<MountResponse, ProviderCallError> {
        let started = Instant::now();
        let redactor = Redactor::for_request(request);
        let message = self.wire_request(request, target_path)?;
        let reply = tokio::time::timeout(
            deadline,
            self.mount_with_retries(&message, started, deadline, &redactor),
        )
        .await
        .map_err(|_| self.deadline(deadline))??;
        self.check(reply, &redactor)
    }

    fn wire_request(
        &self,
        request: &MountRequest,
        target_path: &Path,
    ) -> Result<wire::MountRequest, ProviderCallError> {
        let json = |map| {
            serde_json::to_string(map).map_err(|e| ProviderCallError::InvalidResponse {
                provider: self.name.to_string(),
                message: format!("encoding the request: {e}"),
                socket: self.socket.clone(),
            })
        };
        Ok(wire::MountRequest {
            attributes: json(&request.attributes)?,
            secrets: json(&request.secrets)?,
            target_path: target_path.to_string_lossy().into_owned(),
            // Upstream sends the JSON encoding of the mode number: decimal.
            permission: request.default_file_mode.to_string(),
            current_object_version: request
                .current_object_versions
                .iter()
                .map(|v| wire::ObjectVersion {
                    id: v.id.clone(),
                    version: v.version.clone(),
                })
                .collect(),
        })
    }

    async fn mount_with_retries(
        &self,
        message: &wire::MountRequest,
        started: Instant,
        budget: Duration,
        redactor: &Redactor,
    ) -> Result<wire::MountResponse, ProviderCallError> {
        let deadline = started + budget;
        let mut attempt = 1;
        loop {
            let mut request = tonic::Request::new(message.clone());
            // Tells the provider how long it has (`grpc-timeout`); tonic enforces it on our side too.
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
            let mut client = self.client();
            let status = match client.mount(request).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) => status,
            };
            if Instant::now() >= deadline {
                return Err(self.deadline(budget));
            }
            let error = self.status_error(&status, redactor);
            if status.code() != tonic::Code::Unavailable || attempt >= ATTEMPTS {
                return Err(error);
            }
            let backoff = backoff(attempt);
            if Instant::now() + backoff >= deadline {
                return Err(error);
            }
            tracing::info!(provider = %self.name, socket = %self.socket.display(), attempt, error = %error,
                backoff_ms = backoff.as_millis() as u64, "provider unavailable; retrying");
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    fn deadline(&self, after: Duration) -> ProviderCallError {
        ProviderCallError::Deadline {
            provider: self.name.to_string(),
            after,
        }
    }

    fn status_error(&self, status: &tonic::Status, redactor: &Redactor) -> ProviderCallError {
        let provider = self.name.to_string();
        if let Some(connect) = find_source::<SocketConnectError>(status) {
            return ProviderCallError::Unreachable {
                provider,
                socket: self.socket.clone(),
                message: connect.to_string(),
            };
        }
        let mut code = GrpcCode::from(status.code());
        let mut message = redactor.redact(&bounded(status.message()));
        // tonic reports a reply over the receive limit as OUT_OF_RANGE; gRPC (and upstream's Go
        // client) call it RESOURCE_EXHAUSTED.
        let too_large = matches!(code, GrpcCode::OutOfRange | GrpcCode::ResourceExhausted)
            && message.contains("message length too large");
        if too_large {
            code = GrpcCode::ResourceExhausted;
            message.push_str(&format!(
                " (responses are limited to {} bytes; raise the driver's maximum receive message size if the provider's payloads are legitimately larger)",
                self.max_recv_msg_size
            ));
        }
        ProviderCallError::Grpc {
            provider,
            code,
            message,
            socket: self.socket.clone(),
        }
    }

    fn invalid(&self, message: String) -> ProviderCallError {
        ProviderCallError::InvalidResponse {
            provider: self.name.to_string(),
            message,
            socket: self.socket.clone(),
        }
    }

    fn check(
        &self,
        reply: wire::MountResponse,
        redactor: &Redactor,
    ) -> Result<MountResponse, ProviderCallError> {
        if let Some(error) = reply.error.as_ref().filter(|e| !e.code.is_empty()) {
            return Err(ProviderCallError::Grpc {
                provider: self.name.to_string(),
                code: GrpcCode::Unknown,
                message: format!(
                    "mount failed with provider error code {}",
                    redactor.redact(&bounded(&error.code))
                ),
                socket: self.socket.clone(),
            });
        }
        // Upstream refuses a response without object versions; so do we, so that a provider that
        // works with one driver works with the other.
        if reply.object_version.is_empty() {
            return Err(self.invalid("the response has no object versions".into()));
        }
        let files = reply
            .files
            .into_iter()
            .map(|f| {
                let mode = u32::try_from(f.mode).map_err(|_| {
                    self.invalid(format!("file {:?} has a negative mode {}", f.path, f.mode))
                })?;
                Ok(File {
                    path: f.path,
                    mode,
                    contents: f.contents,
                })
            })
            .collect::<Result<Vec<_>, ProviderCallError>>()?;
        secrets_store_contract::validate_payload(&files)
            .map_err(|e| self.invalid(e.to_string()))?;
        Ok(MountResponse {
            files,
            object_versions: reply
                .object_version
                .into_iter()
                .map(|v| ObjectVersion {
                    id: v.id,
                    version: v.version,
                })
                .collect(),
        })
    }
}

/// The pause before attempt `attempt + 1`: gRPC's exponential backoff (1 s × 1.1ⁿ⁻¹, at most 10 s),
/// with the upper half jittered so that mounts waiting on a restarting daemon spread out.
fn backoff(attempt: u32) -> Duration {
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let full = INITIAL_BACKOFF
        .mul_f64(BACKOFF_MULTIPLIER.powi(exponent))
        .min(MAX_BACKOFF);
    full / 2 + (full / 2).mul_f64(rand::random::<f64>())
}

fn find_source<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Provider-supplied text, cut to a bounded length on a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_MESSAGE {
        return text.to_string();
    }
    let mut cut = MAX_MESSAGE;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_upstream_policy() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(
                first >= Duration::from_millis(500) && first <= INITIAL_BACKOFF,
                "{first:?}"
            );
            let second = backoff(2);
            assert!(
                second >= Duration::from_millis(550) && second <= Duration::from_millis(1100),
                "{second:?}"
            );
            assert!(backoff(100) <= MAX_BACKOFF);
        }
    }

    #[test]
    fn bounded_cuts_on_char_boundaries() {
        let long = "é".repeat(MAX_MESSAGE);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short"), "short");
    }
}
