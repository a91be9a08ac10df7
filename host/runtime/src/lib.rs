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
//!
//! # Module map
//!
//! One capability per module; each depends only on modules further down this list, so there are
//! no cycles between files:
//!
//! | module | job |
//! | --- | --- |
//! | `runtime` | [`Runtime`]: builds the engine and the network once, loads modules into providers |
//! | `provider` | [`Provider`]: one call's frame (slot, store, deadline), failure classification, output check |
//! | `convert` | contract ⇄ WIT types; cleaning guest-chosen text |
//! | `engine` | the wasmtime engine, pooling allocator, epoch ticker, linker, instance slots, compilation |
//! | `artifacts` | the on-disk cache of compiled components |
//! | `error` | [`LoadError`], [`CallError`] |
//! | `store` | per-instance state; host side of `log`, `cache`, `host-files`; the memory limiter |
//! | `net` | outbound HTTP: `config`, `connect`, `exchange`, `gate`, `coalesce`, `outbound`, `hooks` |
//! | `call` | what one call's parts share: budget, concurrency, denials, redactor |
//! | `cache` | the provider's `cache` interface store |
//! | `stdio` | bounded capture of guest stdout/stderr |
//! | [`policy`] | a provider's policy: allowed hosts, private networks, limits |
//! | [`redact`] | removing credentials from text |
//! | `observer` | [`Observer`]: the hooks the driver's metrics use |
//! | `bindings` | generated host bindings of the world |

mod artifacts;
mod bindings;
mod cache;
mod call;
mod convert;
mod engine;
mod error;
mod net;
mod observer;
pub mod policy;
mod provider;
pub mod redact;
mod runtime;
mod stdio;
mod store;

pub use error::{CallError, LoadError};
pub use net::{NetError, NetworkConfig, ResolveOverride};
pub use observer::{NoopObserver, Observer};
pub use policy::{Policy, PolicyError, PolicySpec};
pub use provider::{CallContext, Provider, ProviderInfo};
pub use runtime::{Runtime, RuntimeConfig};
pub use secrets_store_contract as contract;
