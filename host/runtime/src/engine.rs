//! The one wasmtime engine of a driver process: its configuration, the epoch ticker that drives
//! deadlines, the linker with exactly the world's imports, and the on-disk cache of compiled
//! components (keyed by module digest and engine fingerprint, so a restart does not recompile).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::bindings::{self, ProviderPre};
use crate::error::LoadError;
use crate::net::{NetworkConfig, tls_config};
use crate::observer::{NoopObserver, Observer};
use crate::policy::Policy;
use crate::provider::{Provider, StoreState};

/// How often the epoch advances: the granularity of deadlines and of yielding to other tasks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core instances, memories and tables one provider component may use at most. A Rust guest built
/// for wasm32-wasip2 uses a handful of each.
const CORE_INSTANCES_PER_COMPONENT: u32 = 20;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 8;

pub struct RuntimeConfig {
    /// Directory for compiled components; None compiles at every load.
    pub artifact_cache: Option<PathBuf>,
    /// Provider calls running at once (the instance pool's size); more wait their turn.
    pub max_instances: u32,
    /// The largest `memoryLimitMiB` any policy may ask for (the pool's slot size).
    pub max_memory_mib: u64,
    pub network: NetworkConfig,
    pub observer: Arc<dyn Observer>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            artifact_cache: None,
            max_instances: 16,
            max_memory_mib: 256,
            network: NetworkConfig::default(),
            observer: Arc::new(NoopObserver),
        }
    }
}

/// Compiles, checks and instantiates providers. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreState>,
    pub(crate) slots: Semaphore,
    pub(crate) max_memory: usize,
    pub(crate) network: NetworkConfig,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) observer: Arc<dyn Observer>,
    artifact_cache: Option<PathBuf>,
    fingerprint: String,
    ticker: Ticker,
}

struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime, LoadError> {
        let engine_error = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let max_memory = usize::try_from(config.max_memory_mib << 20)
            .map_err(|_| LoadError::Engine("max memory too large".into()))?;
        let instances = config.max_instances.max(1);

        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .total_memories(instances * MEMORIES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .total_tables(instances * TABLES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .total_stacks(instances)
            .max_memory_size(max_memory)
            // Hand pages back to the kernel between mounts: resident size matters on every node.
            .linear_memory_keep_resident(0)
            .table_keep_resident(0);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            // A slot reserves only what a provider may use; bounds checks are explicit.
            .memory_reservation(max_memory as u64)
            .memory_guard_size(64 << 10)
            .memory_reservation_for_growth(0)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(engine_error)?;

        let mut linker: Linker<StoreState> = Linker::new(&engine);
        // All of WASI is linked so that any toolchain's imports resolve, but the context grants
        // nothing: no preopened directories, no environment, no sockets, closed stdin.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_error)?;
        bindings::secrets_store::provider::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(engine_error)?;
        bindings::secrets_store::provider::cache::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_error)?;
        bindings::secrets_store::provider::host_files::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_error)?;
        bindings::secrets_store::provider::types::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_error)?;

        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let fingerprint = format!("{:016x}", hasher.finish());

        if let Some(dir) = &config.artifact_cache {
            prepare_cache_dir(dir)?;
        }
        let tls = tls_config(&config.network).map_err(|e| LoadError::Engine(e.to_string()))?;

        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| LoadError::Engine(format!("starting the epoch thread: {e}")))?
        };

        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                slots: Semaphore::new(instances as usize),
                max_memory,
                network: config.network,
                tls,
                observer: config.observer,
                artifact_cache: config.artifact_cache,
                fingerprint,
                ticker: Ticker {
                    stop,
                    thread: Some(thread),
                },
            }),
        })
    }

    /// Load a provider from a `.wasm` file.
    pub fn load_file(
        &self,
        name: &str,
        path: &Path,
        policy: Policy,
    ) -> Result<Provider, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load(name, &bytes, policy)
    }

    /// Compile (or fetch from the artifact cache), type-check against the world, and prepare for
    /// instantiation.
    pub fn load(&self, name: &str, bytes: &[u8], policy: Policy) -> Result<Provider, LoadError> {
        if policy.memory_limit > self.inner.max_memory {
            return Err(LoadError::Compile {
                provider: name.to_string(),
                detail: format!(
                    "policy memoryLimitMiB {} exceeds the runtime's maximum of {} MiB",
                    policy.memory_limit >> 20,
                    self.inner.max_memory >> 20
                ),
            });
        }
        let digest = hex::encode(Sha256::digest(bytes));
        let component = self.component(name, bytes, &digest)?;
        let mismatch = |e: wasmtime::Error| LoadError::WorldMismatch {
            provider: name.to_string(),
            detail: format!("{e:#}"),
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(mismatch)?;
        let pre = ProviderPre::new(pre).map_err(mismatch)?;
        Ok(Provider::new(
            self.clone(),
            name,
            digest,
            component,
            pre,
            policy,
        ))
    }

    fn component(&self, name: &str, bytes: &[u8], digest: &str) -> Result<Component, LoadError> {
        check_component_header(name, bytes)?;
        let cached = self
            .inner
            .artifact_cache
            .as_ref()
            .map(|dir| dir.join(format!("{digest}-{}.cwasm", self.inner.fingerprint)));
        if let Some(path) = cached.as_ref().filter(|p| p.exists()) {
            {
                match load_precompiled(&self.inner.engine, path) {
                    Ok(component) => return Ok(component),
                    Err(e) => {
                        tracing::warn!(provider = name, path = %path.display(), error = %format!("{e:#}"),
                            "discarding an unusable compiled artifact");
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
        }
        let component =
            Component::new(&self.inner.engine, bytes).map_err(|e| LoadError::Compile {
                provider: name.to_string(),
                detail: format!("invalid component: {e:#}"),
            })?;
        if let Some(path) = &cached {
            // The cache only saves time; failing to fill it is not an error.
            if let Err(e) = store_precompiled(&component, path) {
                tracing::warn!(provider = name, path = %path.display(), error = %e, "could not cache the compiled component");
            }
        }
        Ok(component)
    }

    /// The engine fingerprint that keys compiled artifacts.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Calls that may run at once.
    pub fn available_slots(&self) -> usize {
        self.inner.slots.available_permits()
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        // The ticker thread holds an engine clone; stop it with the runtime.
        self.ticker.stop.store(true, Ordering::Relaxed);
    }
}

fn check_component_header(name: &str, bytes: &[u8]) -> Result<(), LoadError> {
    let not = |detail: &str| LoadError::NotAComponent {
        provider: name.to_string(),
        detail: detail.to_string(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        if Engine::detect_precompiled(bytes).is_some() {
            return Err(not(
                "precompiled artifacts are not accepted; supply the .wasm component",
            ));
        }
        return Err(not(
            "the file does not start with the WebAssembly magic number (truncated or not wasm)",
        ));
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(not(
            "this is a core WebAssembly module; build the provider for wasm32-wasip2 to get a component",
        )),
        _ => Err(not("unknown WebAssembly version or layer")),
    }
}

fn prepare_cache_dir(dir: &Path) -> Result<(), LoadError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let err = |what: &str, e: std::io::Error| {
        LoadError::Engine(format!("artifact cache {}: {what}: {e}", dir.display()))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err("create", e))?;
    let meta = std::fs::metadata(dir).map_err(|e| err("stat", e))?;
    // Compiled artifacts are machine code the driver will run: nobody else may write them.
    if meta.mode() & 0o022 != 0 || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(LoadError::Engine(format!(
            "artifact cache {} must be owned by the driver's user and not writable by group or others",
            dir.display()
        )));
    }
    Ok(())
}

#[allow(unsafe_code)]
fn load_precompiled(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // Read into memory rather than mapping the file: a mapped artifact truncated under a running
    // driver would crash it with SIGBUS.
    let bytes = std::fs::read(path)?;
    // SAFETY: the file was written by `store_precompiled` of this runtime into a directory that only
    // the driver's user can write (checked by `prepare_cache_dir`), under a name that binds the
    // module digest and this engine's fingerprint; wasmtime checks the engine compatibility header
    // again when deserializing.
    unsafe { Component::deserialize(engine, &bytes) }
}

fn store_precompiled(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(&bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!(".tmp-{}-{:x}", std::process::id(), rand_suffix()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, file))
}

fn rand_suffix() -> u64 {
    let mut hasher = DefaultHasher::new();
    std::time::SystemTime::now().hash(&mut hasher);
    std::thread::current().id().hash(&mut hasher);
    hasher.finish()
}
