//! The public entry point: [`Runtime`] builds the engine and the host-wide network once, and loads
//! provider modules into [`Provider`]s that share them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::engine::WasmEngine;
use crate::error::LoadError;
use crate::net::{Network, NetworkConfig};
use crate::observer::{NoopObserver, Observer};
use crate::policy::Policy;
use crate::provider::Provider;

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
    engine: Arc<WasmEngine>,
    network: Arc<Network>,
    observer: Arc<dyn Observer>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime, LoadError> {
        let engine = WasmEngine::new(
            config.max_instances,
            config.max_memory_mib,
            config.artifact_cache,
        )?;
        let network =
            Network::new(config.network, config.observer.clone()).map_err(LoadError::Network)?;
        Ok(Runtime {
            engine: Arc::new(engine),
            network: Arc::new(network),
            observer: config.observer,
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
        let max_memory = self.engine.max_memory();
        if policy.memory_limit > max_memory {
            return Err(LoadError::Compile {
                provider: name.to_string(),
                detail: format!(
                    "policy memoryLimitMiB {} exceeds the runtime's maximum of {} MiB",
                    policy.memory_limit >> 20,
                    max_memory >> 20
                ),
            });
        }
        let digest = hex::encode(Sha256::digest(bytes));
        let component = self.engine.compile(name, bytes, &digest)?;
        let pre = self.engine.prepare(name, &component)?;
        Ok(Provider::new(
            self.engine.clone(),
            self.network.clone(),
            self.observer.clone(),
            crate::provider::Module {
                name: Arc::from(name),
                digest,
                component,
                pre,
            },
            policy,
        ))
    }

    /// The engine fingerprint that keys compiled artifacts.
    pub fn fingerprint(&self) -> &str {
        self.engine.fingerprint()
    }

    /// Calls that may run at once.
    pub fn available_slots(&self) -> usize {
        self.engine.available_slots()
    }
}
