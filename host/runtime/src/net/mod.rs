//! Outbound HTTP for providers: the only network a guest has.
//!
//! Split by concern, each file depending only on those above it in this list:
//!
//! - [`config`]: host-wide settings, resolve overrides, TLS roots (system + the operator's CA).
//! - `connect`: the connector: resolve overrides, DNS filtered by the policy, TCP, TLS.
//! - `exchange`: one upstream exchange read whole within size and time bounds.
//! - `gate`: per-destination rate limit and `Retry-After` back-off.
//! - `coalesce`: identical GETs share one exchange; recent answers and the response cache.
//! - `outbound`: one provider's pool, coalescer and gates, routing an admitted request.
//! - `hooks`: the `wasi:http` `send_request` hook, which admits a guest's request against the
//!   provider's policy (destination, request budget, concurrency, body sizes).

mod coalesce;
pub(crate) mod config;
mod connect;
mod exchange;
mod gate;
mod hooks;
mod outbound;

pub use config::{NetError, NetworkConfig, ResolveOverride};
pub(crate) use hooks::Hooks;
pub(crate) use outbound::{Network, Outbound};
