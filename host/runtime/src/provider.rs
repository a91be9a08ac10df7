//! A loaded provider and the execution of one call: a fresh store and instance per call, the
//! sandbox's limits, the host side of the `log`, `cache` and `host-files` interfaces, and the check
//! of what the provider returns.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrets_store_contract::{
    ErrorKind, File, MountRequest, MountResponse, ObjectVersion, ProviderError,
};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::secrets_store::provider::{cache, host_files, log, types};
use crate::bindings::{ProviderPre, wit};
use crate::cache::ProviderCache;
use crate::engine::{EPOCH_TICK, Runtime};
use crate::error::CallError;
use crate::net::{CallState, Hooks, Outbound};
use crate::policy::Policy;
use crate::redact::Redactor;
use crate::stdio::CapturedOutput;

/// Log lines one call may write; the rest are counted and dropped.
const MAX_LOG_LINES: u32 = 200;
const MAX_LOG_LINE: usize = 4096;
/// Host files are configuration documents, not payloads.
const MAX_HOST_FILE: u64 = 1 << 20;
/// Longest error message, and object label, kept from a provider's error: the guest chooses this
/// text, and it travels into gRPC statuses, Kubernetes events and log lines.
const MAX_ERROR_MESSAGE: usize = 4096;
const MAX_ERROR_OBJECT: usize = 512;

/// Who a call is for, for log lines.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// `namespace/name` of the pod.
    pub pod: Option<String>,
}

/// What a provider says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderInfo {
    pub name: String,
    pub version: String,
    pub outbound_hosts: Vec<String>,
}

/// A provider module ready to run. Cheap to clone; calls in flight keep the module they started on.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<ProviderInner>,
}

struct ProviderInner {
    runtime: Runtime,
    name: Arc<str>,
    digest: String,
    component: Component,
    pre: ProviderPre<StoreState>,
    policy: Arc<Policy>,
    outbound: Arc<Outbound>,
    cache: Arc<ProviderCache>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.inner.name)
            .field("digest", &self.inner.digest)
            .finish()
    }
}

impl Provider {
    pub(crate) fn new(
        runtime: Runtime,
        name: &str,
        digest: String,
        component: Component,
        pre: ProviderPre<StoreState>,
        policy: Policy,
    ) -> Self {
        let name: Arc<str> = Arc::from(name);
        let policy = Arc::new(policy);
        let outbound = Outbound::new(
            name.clone(),
            policy.clone(),
            &runtime.inner.network,
            runtime.inner.tls.clone(),
            runtime.inner.observer.clone(),
        );
        let cache = Arc::new(ProviderCache::new(&policy));
        Provider {
            inner: Arc::new(ProviderInner {
                runtime,
                name,
                digest,
                component,
                pre,
                policy,
                outbound,
                cache,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The same module under another policy (no recompilation). It gets its own connection pool and
    /// an empty cache.
    pub fn with_policy(&self, policy: Policy) -> Provider {
        let inner = &self.inner;
        Provider::new(
            inner.runtime.clone(),
            &inner.name,
            inner.digest.clone(),
            inner.component.clone(),
            inner.pre.clone(),
            policy,
        )
    }

    /// SHA-256 of the module, hex.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The component's imports and exports, by name (for `inspect`).
    pub fn interface(&self) -> (Vec<String>, Vec<String>) {
        let ty = self.inner.component.component_type();
        let engine = &self.inner.runtime.inner.engine;
        let imports = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports = ty
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        (imports, exports)
    }

    /// Ask the provider about itself. It gets no network for this.
    pub async fn describe(&self) -> Result<ProviderInfo, CallError> {
        let call = Arc::new(CallState::new(
            Redactor::default(),
            None,
            &Policy::default(),
        ));
        let outbound = Outbound::new(
            self.inner.name.clone(),
            Arc::new(Policy::default()),
            &self.inner.runtime.inner.network,
            self.inner.runtime.inner.tls.clone(),
            self.inner.runtime.inner.observer.clone(),
        );
        let info = self
            .run("describe", call, outbound, |instance, store| {
                Box::pin(async move { instance.call_describe(store).await })
            })
            .await?;
        Ok(ProviderInfo {
            name: info.name,
            version: info.version,
            outbound_hosts: info.outbound_hosts,
        })
    }

    /// Run one mount in a fresh instance and check what it returns.
    pub async fn mount(
        &self,
        request: &MountRequest,
        context: &CallContext,
    ) -> Result<MountResponse, CallError> {
        let redactor = Redactor::for_request(request);
        let call = Arc::new(CallState::new(
            redactor,
            context.pod.clone(),
            &self.inner.policy,
        ));
        let wit_request = to_wit(request);
        let result = self
            .run(
                "mount",
                call.clone(),
                self.inner.outbound.clone(),
                move |instance, store| {
                    Box::pin(async move { instance.call_mount(store, &wit_request).await })
                },
            )
            .await?;
        let provider = self.name().to_string();
        match result {
            Ok(response) => self.check_output(from_wit_response(response)),
            Err(error) => {
                let mut error = from_wit_error(error);
                // Redacted first, so that a bound cannot cut a secret into an unrecognised piece.
                error.message =
                    guest_text(&call.redactor.redact(&error.message), MAX_ERROR_MESSAGE);
                if let Some(object) = &error.object {
                    error.object =
                        Some(guest_text(&call.redactor.redact(object), MAX_ERROR_OBJECT));
                }
                Err(CallError::Provider {
                    provider,
                    error,
                    denied: call.denied(),
                })
            }
        }
    }

    fn check_output(&self, response: MountResponse) -> Result<MountResponse, CallError> {
        let policy = &self.inner.policy;
        let provider = self.name().to_string();
        if response.files.len() > policy.max_files {
            return Err(CallError::OutputLimit {
                provider,
                what: "files",
                limit: policy.max_files as u64,
                actual: response.files.len() as u64,
            });
        }
        let total: u64 = response.files.iter().map(|f| f.contents.len() as u64).sum();
        if total > policy.max_total_bytes {
            return Err(CallError::OutputLimit {
                provider,
                what: "bytes",
                limit: policy.max_total_bytes,
                actual: total,
            });
        }
        secrets_store_contract::validate_payload(&response.files).map_err(|e| {
            CallError::InvalidOutput {
                provider,
                reason: e.to_string(),
            }
        })?;
        Ok(response)
    }

    /// The common frame of a call: a slot in the pool, a fresh store with the limits, the deadline
    /// enforced both by epoch interruption (guest code) and by a timer (guest blocked in host I/O).
    async fn run<R, F>(
        &self,
        operation: &'static str,
        call: Arc<CallState>,
        outbound: Arc<Outbound>,
        f: F,
    ) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(
                crate::bindings::Provider,
                &'a mut Store<StoreState>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>,
            > + Send,
    {
        let runtime = &self.inner.runtime.inner;
        let provider = self.name().to_string();
        let started = Instant::now();
        let timeout = self.inner.policy.timeout;
        let _slot = runtime
            .slots
            .acquire()
            .await
            .map_err(|_| CallError::Internal {
                provider: provider.clone(),
                detail: "runtime shut down".into(),
            })?;

        let stdout = CapturedOutput::default();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stdout.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = StoreState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks {
                outbound,
                call: call.clone(),
            },
            limiter: Limiter {
                memory_limit: self.inner.policy.memory_limit,
                memory_used: 0,
                memory_denied: false,
            },
            provider: self.inner.name.clone(),
            call: call.clone(),
            cache: self.inner.cache.clone(),
            host_files: self.inner.policy.host_files.clone(),
            log_lines: 0,
            deadline_hit: false,
        };
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = started + timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().deadline_hit = true;
                return Err(wasmtime::format_err!("deadline exceeded"));
            }
            // Give the executor back every tick so a spinning guest cannot starve other calls.
            Ok(UpdateDeadline::Yield(1))
        });

        let pre = self.inner.pre.clone();
        let outcome = tokio::time::timeout(timeout + EPOCH_TICK, async {
            let instance = pre.instantiate_async(&mut store).await?;
            f(instance, &mut store).await
        })
        .await;

        let (captured, truncated) = stdout.take();
        if !captured.is_empty() {
            tracing::debug!(provider = %provider, pod = call.pod_label(), truncated, output = %call.redactor.redact(&captured),
                "provider wrote to stdout/stderr");
        }
        let result = match outcome {
            Err(_elapsed) => Err(CallError::Deadline {
                provider: provider.clone(),
                timeout,
                denied: call.denied(),
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify_trap(&store, error, &call)),
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind_label(),
        };
        runtime
            .observer
            .call_finished(&provider, operation, started.elapsed(), label);
        if let Err(e) = &result {
            tracing::warn!(provider = %provider, pod = call.pod_label(), operation, error = %e, "provider call failed");
        }
        result
    }

    fn classify_trap(
        &self,
        store: &Store<StoreState>,
        error: wasmtime::Error,
        call: &CallState,
    ) -> CallError {
        let provider = self.name().to_string();
        let state = store.data();
        if state.deadline_hit {
            return CallError::Deadline {
                provider,
                timeout: self.inner.policy.timeout,
                denied: call.denied(),
            };
        }
        if state.limiter.memory_denied {
            return CallError::MemoryLimit {
                provider,
                limit_mib: self.inner.policy.memory_limit >> 20,
            };
        }
        let detail = match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::UnreachableCodeReached) => {
                "the provider aborted (a panic or an explicit abort)".to_string()
            }
            Some(trap) => format!("{trap}"),
            None => format!("{error:#}"),
        };
        CallError::Trap {
            provider,
            detail: call.redactor.redact(&detail),
        }
    }
}

/// The data of one call's store.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    limiter: Limiter,
    provider: Arc<str>,
    call: Arc<CallState>,
    cache: Arc<ProviderCache>,
    host_files: Vec<PathBuf>,
    log_lines: u32,
    deadline_hit: bool,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps the total linear memory of one instance and remembers that it did.
struct Limiter {
    memory_limit: usize,
    memory_used: usize,
    memory_denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.memory_used - current.min(self.memory_used) + desired;
        if after > self.memory_limit {
            self.memory_denied = true;
            // An error (rather than `false`) traps at once instead of letting the guest's allocator
            // abort with a less helpful message.
            wasmtime::bail!("memory limit of {} MiB reached", self.memory_limit >> 20);
        }
        self.memory_used = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl types::Host for StoreState {}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(provider = %self.provider, pod = self.call.pod_label(), "provider log limit reached; dropping further lines");
            }
            return;
        }
        let mut message = self.call.redactor.redact(&message);
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let provider = &*self.provider;
        let pod = self.call.pod_label();
        match level {
            log::Level::Trace => tracing::trace!(target: "provider", provider, pod, "{message}"),
            log::Level::Debug => tracing::debug!(target: "provider", provider, pod, "{message}"),
            log::Level::Info => tracing::info!(target: "provider", provider, pod, "{message}"),
            log::Level::Warn => tracing::warn!(target: "provider", provider, pod, "{message}"),
            log::Level::Error => tracing::error!(target: "provider", provider, pod, "{message}"),
        }
    }
}

impl cache::Host for StoreState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.cache.get(&key)
    }
    fn set(&mut self, key: String, value: Vec<u8>, ttl_seconds: u32) -> bool {
        self.cache
            .set(&key, value, Duration::from_secs(u64::from(ttl_seconds)))
    }
    fn remove(&mut self, key: String) {
        self.cache.remove(&key)
    }
}

impl host_files::Host for StoreState {
    fn read(&mut self, path: String) -> Result<Vec<u8>, String> {
        let requested = PathBuf::from(&path);
        if !self.host_files.contains(&requested) {
            tracing::warn!(provider = %self.provider, pod = self.call.pod_label(), path, "host file refused: not in the provider's hostFiles policy");
            return Err(format!(
                "{path} is not among the host files the operator made available to this provider (policy hostFiles)"
            ));
        }
        let read = || -> std::io::Result<Vec<u8>> {
            use std::io::Read;
            let file = std::fs::File::open(&requested)?;
            let mut contents = Vec::new();
            file.take(MAX_HOST_FILE + 1).read_to_end(&mut contents)?;
            Ok(contents)
        };
        match read() {
            Ok(contents) if contents.len() as u64 > MAX_HOST_FILE => {
                Err(format!("{path} is larger than {MAX_HOST_FILE} bytes"))
            }
            Ok(contents) => Ok(contents),
            Err(e) => Err(format!("reading {path}: {e}")),
        }
    }
}

fn to_wit(request: &MountRequest) -> wit::MountRequest {
    wit::MountRequest {
        attributes: request
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        secrets: request
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        default_file_mode: request.default_file_mode,
        current_object_versions: request
            .current_object_versions
            .iter()
            .map(|v| wit::ObjectVersion {
                id: v.id.clone(),
                version: v.version.clone(),
            })
            .collect(),
    }
}

fn from_wit_response(response: wit::MountResponse) -> MountResponse {
    MountResponse {
        files: response
            .files
            .into_iter()
            .map(|f| File {
                path: f.path,
                mode: f.mode,
                contents: f.contents,
            })
            .collect(),
        object_versions: response
            .object_versions
            .into_iter()
            .map(|v| ObjectVersion {
                id: v.id,
                version: v.version,
            })
            .collect(),
    }
}

/// Text a guest chose, made fit to show: control characters escaped (a NUL or a line break must not
/// reach a gRPC status, an event or a log line raw) and the length bounded.
fn guest_text(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes + 4));
    for c in text.chars() {
        if out.len() >= max_bytes {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn from_wit_error(error: wit::ProviderError) -> ProviderError {
    let kind = match error.kind {
        wit::ErrorKind::InvalidParameters => ErrorKind::InvalidParameters,
        wit::ErrorKind::Unauthenticated => ErrorKind::Unauthenticated,
        wit::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        wit::ErrorKind::NotFound => ErrorKind::NotFound,
        wit::ErrorKind::Throttled(ms) => ErrorKind::Throttled(ms),
        wit::ErrorKind::Upstream(status) => ErrorKind::Upstream(status),
        wit::ErrorKind::Unavailable => ErrorKind::Unavailable,
        wit::ErrorKind::Internal => ErrorKind::Internal,
    };
    ProviderError {
        kind,
        object: error.object,
        message: error.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_is_escaped_and_bounded() {
        assert_eq!(
            guest_text("fi\0ne\nx\u{1b}[2J", 100),
            "fi\\u{0}ne\\nx\\u{1b}[2J"
        );
        assert_eq!(guest_text("plain", 5), "plain");
        assert_eq!(guest_text("plain!", 5), "plain…");
        let long = guest_text(&"é".repeat(5000), MAX_ERROR_MESSAGE);
        assert!(long.ends_with('…') && long.len() <= MAX_ERROR_MESSAGE + '…'.len_utf8());
    }
}
