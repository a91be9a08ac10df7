//! The data of one call's store: the WASI and `wasi:http` contexts (granting nothing but the
//! hooked HTTP), the memory limiter, and the host side of the world's own interfaces — `log`,
//! `cache` and `host-files`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::secrets_store::provider::{cache, host_files, log, types};
use crate::cache::ProviderCache;
use crate::call::CallState;
use crate::net::{Hooks, Outbound};
use crate::policy::Policy;
use crate::stdio::CapturedOutput;

/// Log lines one call may write; the rest are counted and dropped.
const MAX_LOG_LINES: u32 = 200;
const MAX_LOG_LINE: usize = 4096;
/// Host files are configuration documents, not payloads.
const MAX_HOST_FILE: u64 = 1 << 20;

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

impl StoreState {
    /// A store for one call of `provider`: stdout and stderr go to `output`, HTTP to `outbound`.
    pub(crate) fn new(
        provider: Arc<str>,
        policy: &Policy,
        call: Arc<CallState>,
        outbound: Arc<Outbound>,
        cache: Arc<ProviderCache>,
        output: &CapturedOutput,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        // All of WASI is linked, but this context grants nothing: no preopened directories, no
        // environment, no sockets, closed stdin.
        wasi.stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        StoreState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks::new(outbound, call.clone()),
            limiter: Limiter {
                memory_limit: policy.memory_limit,
                memory_used: 0,
                memory_denied: false,
            },
            provider,
            call,
            cache,
            host_files: policy.host_files.clone(),
            log_lines: 0,
            deadline_hit: false,
        }
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }

    /// The call ran out of time (set by the engine's epoch callback).
    pub(crate) fn mark_deadline_hit(&mut self) {
        self.deadline_hit = true;
    }

    pub(crate) fn deadline_hit(&self) -> bool {
        self.deadline_hit
    }

    /// The guest asked for more memory than its policy allows.
    pub(crate) fn memory_denied(&self) -> bool {
        self.limiter.memory_denied
    }
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

/// Why a host file was not handed to the guest. The guest sees the text (the world's
/// `result<list<u8>, string>`).
#[derive(Debug, thiserror::Error)]
enum HostFileError {
    #[error(
        "{path} is not among the host files the operator made available to this provider (policy hostFiles)"
    )]
    NotAllowed { path: String },
    #[error("{path} is larger than {MAX_HOST_FILE} bytes")]
    TooLarge { path: String },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreState {
    fn read_host_file(&self, path: String) -> Result<Vec<u8>, HostFileError> {
        use std::io::Read;
        let requested = PathBuf::from(&path);
        if !self.host_files.contains(&requested) {
            tracing::warn!(provider = %self.provider, pod = self.call.pod_label(), path, "host file refused: not in the provider's hostFiles policy");
            return Err(HostFileError::NotAllowed { path });
        }
        let read = || -> std::io::Result<Vec<u8>> {
            let file = std::fs::File::open(&requested)?;
            let mut contents = Vec::new();
            file.take(MAX_HOST_FILE + 1).read_to_end(&mut contents)?;
            Ok(contents)
        };
        match read() {
            Ok(contents) if contents.len() as u64 > MAX_HOST_FILE => {
                Err(HostFileError::TooLarge { path })
            }
            Ok(contents) => Ok(contents),
            Err(source) => Err(HostFileError::Read { path, source }),
        }
    }
}

impl host_files::Host for StoreState {
    fn read(&mut self, path: String) -> Result<Vec<u8>, String> {
        self.read_host_file(path).map_err(|e| e.to_string())
    }
}
