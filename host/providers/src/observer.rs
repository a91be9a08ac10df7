//! Hooks through which the driver's metrics see what the registry does, in the shape of the
//! runtime's `Observer`: the registry reports each event as it happens and keeps no counters of its
//! own, so nobody polls it and nobody turns running totals back into increments.

use crate::registry::ReloadReport;

/// Receives registry events; every method has a no-op default. Called on the thread that reloads
/// (the watcher's, or the caller of [`reload`](crate::ProviderRegistry::reload)), so it must not
/// block.
pub trait RegistryObserver: Send + Sync + 'static {
    /// A module was handed to the runtime and accepted (compiled, or taken from its artifact cache).
    fn module_loaded(&self, _provider: &str) {}
    /// A provider was given a new policy without its module being loaded again.
    fn policy_updated(&self, _provider: &str) {}
    /// A reload attempt finished (initial load, watcher, rescan or explicit call). Its failures are
    /// `report.failed`: one per refused provider, and one for an unusable `providers.yaml`.
    /// `loaded` is how many wasm providers are loaded now.
    fn reload_finished(&self, _report: &ReloadReport, _loaded: usize) {}
}

/// Observes nothing.
pub struct NoopRegistryObserver;

impl RegistryObserver for NoopRegistryObserver {}
