//! The provider runtime: loads secret-store providers compiled to WebAssembly components and runs
//! each mount in a fresh, sandboxed instance.
//!
//! A provider gets exactly what the `secrets-store:provider` world (in `wit/`) grants: outbound HTTP
//! to the destinations its [`Policy`] allows, a small cache of its own, logging, clocks, randomness
//! and the host files the operator listed. No filesystem, sockets, environment or stdin. Each call is
//! bounded in memory, wall-clock time, network requests and output size; breaking a bound ends the
//! call with a [`CallError`] that says which bound, and the host carries on.
//!
//! ```no_run
//! # use std::path::Path;
//! # use secrets_store_runtime::{CallContext, Policy, PolicySpec, Runtime, RuntimeConfig};
//! # async fn example(request: secrets_store_runtime::contract::MountRequest) -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let policy = Policy::from_spec(&PolicySpec::default())?;
//! let provider = runtime.load_file("azure", Path::new("azure.wasm"), policy)?;
//! let response = provider.mount(&request, &CallContext::default()).await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```

mod bindings;
mod cache;
mod engine;
mod error;
mod net;
mod observer;
pub mod policy;
mod provider;
pub mod redact;
mod stdio;

pub use engine::{Runtime, RuntimeConfig};
pub use error::{CallError, LoadError};
pub use net::{NetError, NetworkConfig, ResolveOverride};
pub use observer::{NoopObserver, Observer};
pub use policy::{Policy, PolicyError, PolicySpec};
pub use provider::{CallContext, Provider, ProviderInfo};
pub use secrets_store_contract as contract;
