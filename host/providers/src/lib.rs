//! The driver's provider registry: which provider answers a SecretProviderClass's `spec.provider`.
//!
//! Two kinds of provider answer a name, looked up in this order:
//!
//! 1. **Wasm providers**, sandboxed components run by [`secrets_store_runtime`], configured in
//!    `<providers_dir>/providers.yaml` (module path plus the runtime's policy keys, see [`config`]
//!    for the format) and hot-reloaded when that directory changes: a ConfigMap volume's `..data`
//!    swap, an in-place edit, or the periodic rescan. Unchanged modules are not recompiled; a module
//!    that fails to load is refused and the previous one keeps serving.
//! 2. **Legacy gRPC providers**: upstream provider daemons listening on `<dir>/<name>.sock` in the
//!    configured socket directories, searched in order (upstream's effective order is
//!    `--additional-provider-volume-paths` first, then `--provider-volume`; see
//!    [`RegistryConfig::upstream_legacy_dirs`]).
//!
//! | module | job |
//! |---|---|
//! | `registry` | [`ProviderRegistry`]: resolve a name; reload the wasm providers |
//! | [`config`] | `providers.yaml` and the module files it names |
//! | `watch` | the background watcher of the providers directory |
//! | `observer` | [`RegistryObserver`]: loads and reloads as events, for the metrics |
//! | `handle` | [`ProviderHandle`]: one resolved provider, wasm or gRPC, behind one `mount` |
//! | `legacy` | the client of upstream's v1alpha1 provider daemons |
//! | `error` | [`RegistryError`], [`ProviderCallError`], and [`GrpcCode`] |
//!
//! ```no_run
//! # async fn example(runtime: secrets_store_runtime::Runtime) -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use std::time::Duration;
//! use secrets_store_providers::{ProviderRegistry, RegistryConfig};
//!
//! let registry = ProviderRegistry::new(runtime, RegistryConfig {
//!     providers_dir: Some("/etc/secrets-store/providers".into()),
//!     ..Default::default()
//! });
//! let _watch = registry.watch()?; // loads now, then follows the directory
//! let provider = registry.resolve("azure")?;
//! let request = secrets_store_contract::MountRequest::default();
//! let target = Path::new("/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/v/mount");
//! let response = provider
//!     .mount(&request, &Default::default(), target, Duration::from_secs(60))
//!     .await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
mod error;
mod handle;
mod legacy;
mod observer;
mod registry;
mod watch;

pub use error::{GrpcCode, ProviderCallError, RegistryError};
pub use handle::ProviderHandle;
pub use legacy::{LegacyProvider, VersionInfo};
pub use observer::{NoopRegistryObserver, RegistryObserver};
pub use registry::{
    DEFAULT_MAX_RECV_MSG_SIZE, LoadedInfo, ProviderRegistry, RegistryConfig, ReloadReport,
    UPSTREAM_ADDITIONAL_PROVIDER_DIR, UPSTREAM_PROVIDER_VOLUME,
};
pub use watch::{WatchHandle, WatchOptions};
