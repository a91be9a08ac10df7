//! The registry: which provider answers a name, and the reload that keeps the wasm providers in
//! step with the providers directory.
//!
//! Reloads are serialised; each one reads `providers.yaml` and every module it names, compares
//! digests and policies with what is loaded, compiles only what changed, and swaps the new set in
//! under a short write lock. A handle returned by [`ProviderRegistry::resolve`] keeps the module it
//! was resolved to, so calls in flight finish on the old module after a swap.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use secrets_store_runtime::{PolicySpec, Provider, Runtime};

use crate::config::{self, ConfigError, Module, ModuleError, PROVIDERS_FILE};
use crate::error::RegistryError;
use crate::handle::ProviderHandle;
use crate::legacy::{ChannelPool, LegacyProvider};
use crate::observer::{NoopRegistryObserver, RegistryObserver};

/// Upstream's default `--additional-provider-volume-paths`, searched first.
pub const UPSTREAM_ADDITIONAL_PROVIDER_DIR: &str = "/etc/kubernetes/secrets-store-csi-providers";
/// Upstream's default `--provider-volume`, searched after the additional paths.
pub const UPSTREAM_PROVIDER_VOLUME: &str = "/var/run/secrets-store-csi-providers";
/// Upstream's default `--max-call-recv-msg-size`.
pub const DEFAULT_MAX_RECV_MSG_SIZE: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Holds `providers.yaml` and (usually) the modules; watched. None: no wasm providers.
    pub providers_dir: Option<PathBuf>,
    /// Searched in this order for `<name>.sock`; the first socket found wins.
    pub legacy_dirs: Vec<PathBuf>,
    /// The largest response accepted from a gRPC provider.
    pub max_recv_msg_size: usize,
}

impl RegistryConfig {
    /// The socket search order upstream derives from its flags: every
    /// `--additional-provider-volume-paths` entry first, in the order given, then
    /// `--provider-volume`.
    pub fn upstream_legacy_dirs(provider_volume: &Path, additional: &[PathBuf]) -> Vec<PathBuf> {
        additional
            .iter()
            .cloned()
            .chain(std::iter::once(provider_volume.to_path_buf()))
            .collect()
    }
}

impl Default for RegistryConfig {
    /// No providers directory; upstream's default socket directories in upstream's effective
    /// order (`/etc/kubernetes/…` then `/var/run/…`); 4 MiB responses.
    fn default() -> Self {
        RegistryConfig {
            providers_dir: None,
            legacy_dirs: RegistryConfig::upstream_legacy_dirs(
                Path::new(UPSTREAM_PROVIDER_VOLUME),
                &[PathBuf::from(UPSTREAM_ADDITIONAL_PROVIDER_DIR)],
            ),
            max_recv_msg_size: DEFAULT_MAX_RECV_MSG_SIZE,
        }
    }
}

/// What one reload did, by provider name. A failure of `providers.yaml` as a whole is reported
/// under the name `providers.yaml` (which no provider can have).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Newly loaded, or reloaded with a new module or a new policy.
    pub loaded: Vec<String>,
    pub unchanged: Vec<String>,
    /// No longer available: dropped from providers.yaml, or its module file is gone.
    pub removed: Vec<String>,
    /// (name, cause). A provider that was loaded before keeps its old module, unless its module file
    /// disappeared (then it is also in `removed`).
    pub failed: Vec<(String, String)>,
}

impl ReloadReport {
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A loaded wasm provider, for logs, metrics and readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedInfo {
    pub name: String,
    pub module: PathBuf,
    /// SHA-256 of the (decompressed) component, hex.
    pub digest: String,
    pub loaded_at: SystemTime,
}

/// A wasm provider as loaded (also what a reload starts from).
#[derive(Clone)]
struct Loaded {
    provider: Provider,
    module: PathBuf,
    spec: PolicySpec,
    loaded_at: SystemTime,
}

/// A provider listed in providers.yaml that has no usable module.
struct NotLoaded {
    module: PathBuf,
    reason: String,
}

#[derive(Default)]
struct State {
    loaded: BTreeMap<String, Loaded>,
    not_loaded: BTreeMap<String, NotLoaded>,
}

/// Send + Sync; share it as `Arc<ProviderRegistry>`.
pub struct ProviderRegistry {
    runtime: Runtime,
    config: RegistryConfig,
    state: RwLock<State>,
    /// Serialises reloads (the watcher, rescans and explicit calls).
    reload_lock: Mutex<()>,
    generation: tokio::sync::watch::Sender<u64>,
    ready: AtomicBool,
    pool: Arc<ChannelPool>,
    observer: Arc<dyn RegistryObserver>,
}

impl ProviderRegistry {
    /// An empty registry that reports to no observer. Nothing is loaded until
    /// [`reload`](Self::reload) or [`watch`](Self::watch) runs; without a providers directory it is
    /// ready at once.
    pub fn new(runtime: Runtime, config: RegistryConfig) -> Arc<Self> {
        Self::with_observer(runtime, config, Arc::new(NoopRegistryObserver))
    }

    /// An empty registry that reports its loads and reloads to `observer` (the driver's metrics).
    pub fn with_observer(
        runtime: Runtime,
        config: RegistryConfig,
        observer: Arc<dyn RegistryObserver>,
    ) -> Arc<Self> {
        let ready = config.providers_dir.is_none();
        Arc::new(ProviderRegistry {
            runtime,
            config,
            state: RwLock::new(State::default()),
            reload_lock: Mutex::new(()),
            generation: tokio::sync::watch::Sender::new(0),
            ready: AtomicBool::new(ready),
            pool: Arc::new(ChannelPool::default()),
            observer,
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Bumped after every reload attempt, successful or not.
    pub fn generation(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether the first load attempt has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn loaded(&self) -> Vec<LoadedInfo> {
        self.state
            .read()
            .loaded
            .iter()
            .map(|(name, l)| LoadedInfo {
                name: name.clone(),
                module: l.module.clone(),
                digest: l.provider.digest().to_string(),
                loaded_at: l.loaded_at,
            })
            .collect()
    }

    /// The provider that answers `name`: a loaded wasm provider first, else the first
    /// `<dir>/<name>.sock` socket in `legacy_dirs` order.
    pub fn resolve(&self, name: &str) -> Result<ProviderHandle, RegistryError> {
        if !config::valid_name(name) {
            return Err(RegistryError::InvalidName {
                name: name.chars().take(64).collect(),
            });
        }
        let not_loaded = {
            let state = self.state.read();
            if let Some(loaded) = state.loaded.get(name) {
                return Ok(ProviderHandle::Wasm(loaded.provider.clone()));
            }
            state
                .not_loaded
                .get(name)
                .map(|n| (n.module.clone(), n.reason.clone()))
        };
        if let Some(socket) = self.legacy_socket(name) {
            if let Some((module, reason)) = &not_loaded {
                // The reload that failed has warned already; this is per mount.
                tracing::debug!(provider = name, module = %module.display(), reason, socket = %socket.display(),
                    "wasm provider is not loaded; using the gRPC provider socket of the same name");
            }
            return Ok(ProviderHandle::Legacy(LegacyProvider::new(
                name,
                socket,
                self.pool.clone(),
                self.config.max_recv_msg_size,
            )));
        }
        let searched = self.config.legacy_dirs.clone();
        Err(match not_loaded {
            Some((module, reason)) => RegistryError::NotLoaded {
                name: name.to_string(),
                module,
                reason,
                searched,
            },
            None => RegistryError::NotFound {
                name: name.to_string(),
                searched,
                wasm_available: self.state.read().loaded.keys().cloned().collect(),
            },
        })
    }

    /// The first `<dir>/<name>.sock` that is a socket, in `legacy_dirs` order.
    fn legacy_socket(&self, name: &str) -> Option<PathBuf> {
        let socket_name = format!("{name}.sock");
        self.config
            .legacy_dirs
            .iter()
            .map(|dir| dir.join(&socket_name))
            // Following symlinks, as upstream's stat does; only a socket counts, so a stray file of
            // that name does not hide a real socket further down the list.
            .find(|socket| std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket()))
    }

    /// Read providers.yaml and the modules now. Blocking (it may compile modules): from async code,
    /// call it through `spawn_blocking`.
    pub fn reload(&self) -> ReloadReport {
        let _serialised = self.reload_lock.lock();
        let report = match &self.config.providers_dir {
            Some(dir) => self.reload_from(dir),
            None => ReloadReport::default(),
        };
        if report.failed.is_empty() {
            if !report.loaded.is_empty() || !report.removed.is_empty() {
                tracing::info!(loaded = ?report.loaded, removed = ?report.removed, unchanged = report.unchanged.len(),
                    "wasm providers reloaded");
            }
        } else {
            tracing::warn!(loaded = ?report.loaded, removed = ?report.removed, failed = report.failed.len(),
                "wasm providers reloaded with failures");
        }
        let loaded = self.state.read().loaded.len();
        self.observer.reload_finished(&report, loaded);
        self.ready.store(true, Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
        report
    }

    /// One reload: judge every entry of the directory's current version against what is loaded,
    /// then swap the new state in.
    fn reload_from(&self, dir: &Path) -> ReloadReport {
        let mut report = ReloadReport::default();
        let snapshot = match read_snapshot(dir) {
            Ok(snapshot) => snapshot,
            Err(cause) => {
                tracing::warn!(error = %cause, "providers configuration refused; keeping every loaded provider");
                report
                    .failed
                    .push((PROVIDERS_FILE.to_string(), cause.to_string()));
                return report;
            }
        };

        // Decide everything outside the state lock (compiling takes a while); only this thread
        // changes the state, thanks to the reload lock.
        let mut next = State::default();
        let mut current: HashMap<String, Loaded> = self
            .state
            .read()
            .loaded
            .iter()
            .map(|(name, l)| (name.clone(), l.clone()))
            .collect();
        for (name, entry) in snapshot {
            let old = current.remove(&name);
            self.reload_entry(name, entry, old, &mut next, &mut report);
        }
        for name in current.into_keys() {
            tracing::info!(provider = %name, "wasm provider removed from {PROVIDERS_FILE}");
            report.removed.push(name);
        }
        report.removed.sort();

        *self.state.write() = next;
        report
    }

    /// Decide one provider of the new configuration: load it, keep it, or refuse it.
    fn reload_entry(
        &self,
        name: String,
        entry: SnapshotEntry,
        old: Option<Loaded>,
        next: &mut State,
        report: &mut ReloadReport,
    ) {
        let (entry, module) = match entry {
            Ok(pair) => pair,
            Err(e) => {
                let module = e.module().map(Path::to_path_buf).unwrap_or_default();
                self.refuse(&name, &module, &e.to_string(), old, next, report);
                return;
            }
        };
        let module = match module {
            Ok(module) => module,
            Err(e @ ModuleError::Missing { .. }) => {
                withdraw(name, entry.module, e.to_string(), old, next, report);
                return;
            }
            Err(e) => {
                self.refuse(&name, &entry.module, &e.to_string(), old, next, report);
                return;
            }
        };
        match old {
            // Same module: no compilation. A new policy is applied to the loaded module, unless it
            // raises the memory limit, which only the runtime can check against its maximum.
            Some(old)
                if old.provider.digest() == module.digest
                    && entry.spec.memory_limit_mib <= old.spec.memory_limit_mib =>
            {
                let loaded = self.reuse(&name, entry, old, report);
                next.loaded.insert(name, loaded);
            }
            old => match self.runtime.load(&name, &module.bytes, entry.policy) {
                Ok(provider) => {
                    self.observer.module_loaded(&name);
                    tracing::info!(provider = %name, module = %entry.module.display(), digest = %module.digest,
                        replaced = old.is_some(), "wasm provider loaded");
                    report.loaded.push(name.clone());
                    let loaded = Loaded {
                        provider,
                        module: entry.module,
                        spec: entry.spec,
                        loaded_at: SystemTime::now(),
                    };
                    next.loaded.insert(name, loaded);
                }
                Err(e) => self.refuse(&name, &entry.module, &e.to_string(), old, next, report),
            },
        }
    }

    /// The loaded module stays; its policy is replaced if the entry's differs.
    fn reuse(
        &self,
        name: &str,
        entry: config::Entry,
        old: Loaded,
        report: &mut ReloadReport,
    ) -> Loaded {
        if old.spec == entry.spec {
            report.unchanged.push(name.to_string());
            return Loaded {
                module: entry.module,
                ..old
            };
        }
        self.observer.policy_updated(name);
        tracing::info!(provider = %name, module = %entry.module.display(), "provider policy changed; module unchanged");
        report.loaded.push(name.to_string());
        Loaded {
            provider: old.provider.with_policy(entry.policy),
            module: entry.module,
            spec: entry.spec,
            loaded_at: SystemTime::now(),
        }
    }

    /// A provider could not be (re)loaded: keep its previous module if it had one.
    fn refuse(
        &self,
        name: &str,
        module: &Path,
        reason: &str,
        old: Option<Loaded>,
        next: &mut State,
        report: &mut ReloadReport,
    ) {
        report.failed.push((name.to_string(), reason.to_string()));
        let kept = old.is_some();
        tracing::warn!(provider = name, module = %module.display(), error = %reason, kept_previous = kept,
            "provider module refused");
        match old {
            Some(old) => {
                next.loaded.insert(name.to_string(), old);
            }
            None => {
                next.not_loaded.insert(
                    name.to_string(),
                    NotLoaded {
                        module: module.to_path_buf(),
                        reason: reason.to_string(),
                    },
                );
            }
        }
    }
}

/// A provider's module file is gone: it becomes unavailable. Keeping the old module would serve a
/// provider the operator may have deliberately withdrawn.
fn withdraw(
    name: String,
    module: PathBuf,
    reason: String,
    old: Option<Loaded>,
    next: &mut State,
    report: &mut ReloadReport,
) {
    tracing::warn!(provider = %name, module = %module.display(), error = %reason,
        "provider module refused; provider unavailable");
    if old.is_some() {
        report.removed.push(name.clone());
    }
    report.failed.push((name.clone(), reason.clone()));
    next.not_loaded.insert(name, NotLoaded { module, reason });
}

/// One provider's entry and module bytes, or why the entry is unusable.
type SnapshotEntry = Result<(config::Entry, Result<Module, ModuleError>), config::EntryError>;

/// Per provider, by name.
type Snapshot = BTreeMap<String, SnapshotEntry>;

/// Read providers.yaml and every module it names from one version of the directory. For a
/// ConfigMap volume everything is read inside the payload directory `..data` points to; if `..data`
/// moved meanwhile (an update landed mid-read), read again, so a reload never mixes a new document
/// with old modules or sees a module of the new version as missing.
fn read_snapshot(dir: &Path) -> Result<Snapshot, ConfigError> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let payload = config::configmap_payload(dir);
        let base = payload.clone().unwrap_or_else(|| dir.to_path_buf());
        let snapshot: Snapshot = config::read_config(dir, &base)?
            .unwrap_or_default()
            .into_iter()
            .map(|(name, entry)| {
                let entry = entry.map(|entry| {
                    let module = config::read_module(&entry.source, &entry.module);
                    (entry, module)
                });
                (name, entry)
            })
            .collect();
        if payload.is_none() || config::configmap_payload(dir) == payload || attempt == ATTEMPTS {
            return Ok(snapshot);
        }
        tracing::debug!(dir = %dir.display(), "the ConfigMap volume changed while it was read; reading again");
        attempt += 1;
    }
}
