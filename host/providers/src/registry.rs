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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use secrets_store_runtime::{PolicySpec, Provider, Runtime};

use crate::config::{self, Module, PROVIDERS_FILE, ReadError};
use crate::error::RegistryError;
use crate::handle::ProviderHandle;
use crate::legacy::{ChannelPool, LegacyProvider};

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

/// Counters for the metrics crate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Reload attempts (initial load, watcher, rescans, explicit calls).
    pub reloads: u64,
    /// Modules handed to the runtime (compiled, or taken from its artifact cache) successfully.
    pub loads: u64,
    /// Providers given a new policy without reloading their module.
    pub policy_updates: u64,
    /// Failures: one per refused provider per reload, and one per unusable providers.yaml.
    pub reload_failures: u64,
    /// Wasm providers loaded now.
    pub loaded: usize,
}

struct Loaded {
    provider: Provider,
    module: PathBuf,
    spec: PolicySpec,
    loaded_at: SystemTime,
}

/// What was loaded under a name when a reload started.
struct Previous {
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
    reloads: AtomicU64,
    loads: AtomicU64,
    policy_updates: AtomicU64,
    reload_failures: AtomicU64,
}

impl ProviderRegistry {
    /// An empty registry. Nothing is loaded until [`reload`](Self::reload) or
    /// [`watch`](Self::watch) runs; without a providers directory it is ready at once.
    pub fn new(runtime: Runtime, config: RegistryConfig) -> Arc<Self> {
        let ready = config.providers_dir.is_none();
        Arc::new(ProviderRegistry {
            runtime,
            config,
            state: RwLock::new(State::default()),
            reload_lock: Mutex::new(()),
            generation: tokio::sync::watch::Sender::new(0),
            ready: AtomicBool::new(ready),
            pool: Arc::new(ChannelPool::default()),
            reloads: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            policy_updates: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
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

    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            reloads: self.reloads.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            policy_updates: self.policy_updates.load(Ordering::Relaxed),
            reload_failures: self.reload_failures.load(Ordering::Relaxed),
            loaded: self.read_state().loaded.len(),
        }
    }

    pub fn loaded(&self) -> Vec<LoadedInfo> {
        self.read_state()
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

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
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
            let state = self.read_state();
            if let Some(loaded) = state.loaded.get(name) {
                return Ok(ProviderHandle::Wasm(loaded.provider.clone()));
            }
            state
                .not_loaded
                .get(name)
                .map(|n| (n.module.clone(), n.reason.clone()))
        };
        let socket_name = format!("{name}.sock");
        for dir in &self.config.legacy_dirs {
            let socket = dir.join(&socket_name);
            // Following symlinks, as upstream's stat does; only a socket counts, so a stray file of
            // that name does not hide a real socket further down the list.
            if std::fs::metadata(&socket).is_ok_and(|m| m.file_type().is_socket()) {
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
                wasm_available: self.read_state().loaded.keys().cloned().collect(),
            },
        })
    }

    /// Read providers.yaml and the modules now. Blocking (it may compile modules): from async code,
    /// call it through `spawn_blocking`.
    pub fn reload(&self) -> ReloadReport {
        let _serialised = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let report = match &self.config.providers_dir {
            Some(dir) => self.reload_from(dir),
            None => ReloadReport::default(),
        };
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.reload_failures
            .fetch_add(report.failed.len() as u64, Ordering::Relaxed);
        if report.failed.is_empty() {
            if !report.loaded.is_empty() || !report.removed.is_empty() {
                tracing::info!(loaded = ?report.loaded, removed = ?report.removed, unchanged = report.unchanged.len(),
                    "wasm providers reloaded");
            }
        } else {
            tracing::warn!(loaded = ?report.loaded, removed = ?report.removed, failed = report.failed.len(),
                "wasm providers reloaded with failures");
        }
        self.ready.store(true, Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
        report
    }

    fn reload_from(&self, dir: &Path) -> ReloadReport {
        let mut report = ReloadReport::default();
        let snapshot = match read_snapshot(dir) {
            Ok(snapshot) => snapshot,
            Err(cause) => {
                tracing::warn!(error = %cause, "providers configuration refused; keeping every loaded provider");
                report.failed.push((PROVIDERS_FILE.to_string(), cause));
                return report;
            }
        };

        // Decide everything outside the state lock (compiling takes a while); only this thread
        // changes the state, thanks to the reload lock.
        let mut next = State::default();
        let mut current: HashMap<String, Previous> = self
            .read_state()
            .loaded
            .iter()
            .map(|(name, l)| {
                (
                    name.clone(),
                    Previous {
                        provider: l.provider.clone(),
                        module: l.module.clone(),
                        spec: l.spec.clone(),
                        loaded_at: l.loaded_at,
                    },
                )
            })
            .collect();
        for (name, entry) in snapshot {
            let old = current.remove(&name);
            let (entry, module) = match entry {
                Ok(pair) => pair,
                Err(e) => {
                    let module = e.module.unwrap_or_default();
                    self.refuse(&name, &module, &e.reason, old, &mut next, &mut report);
                    continue;
                }
            };
            let module = match module {
                Ok(module) => module,
                Err(ReadError::Missing(reason)) => {
                    // The module is gone: keeping the old one would serve a provider the operator
                    // may have deliberately withdrawn.
                    tracing::warn!(provider = %name, module = %entry.module.display(), error = %reason,
                        "provider module refused; provider unavailable");
                    if old.is_some() {
                        report.removed.push(name.clone());
                    }
                    report.failed.push((name.clone(), reason.clone()));
                    next.not_loaded.insert(
                        name,
                        NotLoaded {
                            module: entry.module,
                            reason,
                        },
                    );
                    continue;
                }
                Err(e) => {
                    let reason = e.message().to_string();
                    self.refuse(&name, &entry.module, &reason, old, &mut next, &mut report);
                    continue;
                }
            };
            let loaded = match old {
                // Same module: no compilation. A new policy is applied to the loaded module, unless
                // it raises the memory limit, which only the runtime can check against its maximum.
                Some(old)
                    if old.provider.digest() == module.digest
                        && entry.spec.memory_limit_mib <= old.spec.memory_limit_mib =>
                {
                    if old.spec == entry.spec {
                        report.unchanged.push(name.clone());
                        Loaded {
                            provider: old.provider,
                            module: entry.module,
                            spec: old.spec,
                            loaded_at: old.loaded_at,
                        }
                    } else {
                        self.policy_updates.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(provider = %name, module = %entry.module.display(), "provider policy changed; module unchanged");
                        report.loaded.push(name.clone());
                        Loaded {
                            provider: old.provider.with_policy(entry.policy),
                            module: entry.module,
                            spec: entry.spec,
                            loaded_at: SystemTime::now(),
                        }
                    }
                }
                old => match self.runtime.load(&name, &module.bytes, entry.policy) {
                    Ok(provider) => {
                        self.loads.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(provider = %name, module = %entry.module.display(), digest = %module.digest,
                            replaced = old.is_some(), "wasm provider loaded");
                        report.loaded.push(name.clone());
                        Loaded {
                            provider,
                            module: entry.module,
                            spec: entry.spec,
                            loaded_at: SystemTime::now(),
                        }
                    }
                    Err(e) => {
                        self.refuse(
                            &name,
                            &entry.module,
                            &e.to_string(),
                            old,
                            &mut next,
                            &mut report,
                        );
                        continue;
                    }
                },
            };
            next.loaded.insert(name, loaded);
        }
        for name in current.into_keys() {
            tracing::info!(provider = %name, "wasm provider removed from {PROVIDERS_FILE}");
            report.removed.push(name);
        }
        report.removed.sort();

        *self.state.write().unwrap_or_else(|e| e.into_inner()) = next;
        report
    }

    /// A provider could not be (re)loaded: keep its previous module if it had one.
    fn refuse(
        &self,
        name: &str,
        module: &Path,
        reason: &str,
        old: Option<Previous>,
        next: &mut State,
        report: &mut ReloadReport,
    ) {
        report.failed.push((name.to_string(), reason.to_string()));
        let kept = old.is_some();
        tracing::warn!(provider = name, module = %module.display(), error = %reason, kept_previous = kept,
            "provider module refused");
        match old {
            Some(old) => {
                next.loaded.insert(
                    name.to_string(),
                    Loaded {
                        provider: old.provider,
                        module: old.module,
                        spec: old.spec,
                        loaded_at: old.loaded_at,
                    },
                );
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

/// Per provider: its entry and module bytes, or why the entry is unusable.
type Snapshot =
    BTreeMap<String, Result<(config::Entry, Result<Module, ReadError>), config::EntryError>>;

/// Read providers.yaml and every module it names from one version of the directory. For a
/// ConfigMap volume everything is read inside the payload directory `..data` points to; if `..data`
/// moved meanwhile (an update landed mid-read), read again, so a reload never mixes a new document
/// with old modules or sees a module of the new version as missing.
fn read_snapshot(dir: &Path) -> Result<Snapshot, String> {
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
