//! The one wasmtime engine of a driver process: its configuration (the pooling allocator sized
//! for the instance pool), the epoch ticker that drives deadlines, the linker with exactly the
//! world's imports, the slots that bound concurrent calls, and compilation through the artifact
//! cache. Callers get narrow methods; nothing here knows about providers.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Store,
    UpdateDeadline,
};

use crate::artifacts::ArtifactCache;
use crate::bindings::{self, ProviderPre};
use crate::error::LoadError;
use crate::store::StoreState;

/// How often the epoch advances: the granularity of deadlines and of yielding to other tasks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core instances, memories and tables one provider component may use at most. A Rust guest built
/// for wasm32-wasip2 uses a handful of each.
const CORE_INSTANCES_PER_COMPONENT: u32 = 20;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 8;

fn engine_error(e: wasmtime::Error) -> LoadError {
    LoadError::Engine(format!("{e:#}"))
}

/// The engine, its linker and its instance slots.
pub(crate) struct WasmEngine {
    engine: Engine,
    linker: Linker<StoreState>,
    slots: Semaphore,
    max_memory: usize,
    artifact_cache: Option<ArtifactCache>,
    fingerprint: String,
    _ticker: Ticker,
}

impl WasmEngine {
    /// An engine for `instances` calls at once, each with at most `max_memory_mib` of memory.
    pub(crate) fn new(
        instances: u32,
        max_memory_mib: u64,
        artifact_cache: Option<PathBuf>,
    ) -> Result<Self, LoadError> {
        let max_memory = usize::try_from(max_memory_mib << 20)
            .map_err(|_| LoadError::Engine("max memory too large".into()))?;
        let instances = instances.max(1);
        let engine = Engine::new(&wasm_config(instances, max_memory)).map_err(engine_error)?;
        let linker = linker(&engine)?;
        let artifact_cache = artifact_cache.map(ArtifactCache::open).transpose()?;
        let ticker = Ticker::start(engine.clone())?;
        Ok(WasmEngine {
            fingerprint: fingerprint(&engine),
            engine,
            linker,
            slots: Semaphore::new(instances as usize),
            max_memory,
            artifact_cache,
            _ticker: ticker,
        })
    }

    /// The largest memory limit a policy may ask for, in bytes.
    pub(crate) fn max_memory(&self) -> usize {
        self.max_memory
    }

    /// The engine fingerprint that keys compiled artifacts.
    pub(crate) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub(crate) fn available_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Wait for an instance slot; held for the whole call.
    pub(crate) async fn slot(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.slots.acquire().await
    }

    /// Compile `bytes` (or fetch the artifact compiled earlier), after checking it is a component.
    pub(crate) fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, LoadError> {
        check_component_header(name, bytes)?;
        let cached = self
            .artifact_cache
            .as_ref()
            .map(|cache| cache.path(digest, &self.fingerprint));
        if let Some(path) = cached.as_ref().filter(|p| p.exists()) {
            match ArtifactCache::load(&self.engine, path) {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(provider = name, path = %path.display(), error = %format!("{e:#}"),
                        "discarding an unusable compiled artifact");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            provider: name.to_string(),
            detail: format!("invalid component: {e:#}"),
        })?;
        if let Some(path) = &cached {
            // The cache only saves time; failing to fill it is not an error.
            if let Err(e) = ArtifactCache::store(&component, path) {
                tracing::warn!(provider = name, path = %path.display(), error = %e, "could not cache the compiled component");
            }
        }
        Ok(component)
    }

    /// Type-check `component` against the world and prepare it for instantiation.
    pub(crate) fn prepare(
        &self,
        name: &str,
        component: &Component,
    ) -> Result<ProviderPre<StoreState>, LoadError> {
        let mismatch = |e: wasmtime::Error| LoadError::WorldMismatch {
            provider: name.to_string(),
            detail: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(component).map_err(mismatch)?;
        ProviderPre::new(pre).map_err(mismatch)
    }

    /// A store for one call: its memory limiter, and a deadline enforced at every epoch tick
    /// (which also yields, so that a spinning guest cannot starve other calls).
    pub(crate) fn store(&self, state: StoreState, deadline: Instant) -> Store<StoreState> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s.limiter());
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().mark_deadline_hit();
                return Err(wasmtime::format_err!("deadline exceeded"));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// The component's imports and exports, by name.
    pub(crate) fn interface(&self, component: &Component) -> (Vec<String>, Vec<String>) {
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        (imports, exports)
    }
}

/// The engine's configuration: component model, epoch interruption, and a pooling allocator with
/// room for `instances` components of at most `max_memory` bytes each.
fn wasm_config(instances: u32, max_memory: usize) -> Config {
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
    wasm
}

/// The linker with exactly the world's imports.
fn linker(engine: &Engine) -> Result<Linker<StoreState>, LoadError> {
    use bindings::secrets_store::provider::{cache, host_files, log, types};
    let mut linker: Linker<StoreState> = Linker::new(engine);
    // All of WASI is linked so that any toolchain's imports resolve, but the context grants
    // nothing (see `StoreState::new`).
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_error)?;
    log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(engine_error)?;
    cache::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(engine_error)?;
    host_files::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(engine_error)?;
    types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(engine_error)?;
    Ok(linker)
}

fn fingerprint(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
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

/// The thread that advances the epoch every [`EPOCH_TICK`]; stopped and joined on drop.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Result<Self, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(LoadError::EpochThread)?
        };
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
