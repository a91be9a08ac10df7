//! A loaded provider and the execution of one call: a slot in the instance pool, a fresh store and
//! instance per call, the deadline, the classification of a failure, and the check of what the
//! provider returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use secrets_store_contract::{MountRequest, MountResponse};
use wasmtime::Store;
use wasmtime::component::Component;

use crate::bindings::ProviderPre;
use crate::cache::ProviderCache;
use crate::call::CallState;
use crate::convert::{from_wit_error, from_wit_response, guest_text, to_wit};
use crate::engine::{EPOCH_TICK, WasmEngine};
use crate::error::CallError;
use crate::net::{Network, Outbound};
use crate::observer::Observer;
use crate::policy::Policy;
use crate::redact::Redactor;
use crate::stdio::CapturedOutput;
use crate::store::StoreState;

/// Longest error message, and object label, kept from a provider's error: the guest chooses this
/// text, and it travels into gRPC statuses, Kubernetes events and log lines.
const MAX_ERROR_MESSAGE: usize = 4096;
const MAX_ERROR_OBJECT: usize = 512;

/// Who a call is for, for log lines.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// `namespace/name` of the pod.
    pub pod: Option<String>,
}

/// What a provider says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderInfo {
    pub name: String,
    pub version: String,
    pub outbound_hosts: Vec<String>,
}

/// A compiled, type-checked module, under the name it was loaded as.
#[derive(Clone)]
pub(crate) struct Module {
    pub(crate) name: Arc<str>,
    pub(crate) digest: String,
    pub(crate) component: Component,
    pub(crate) pre: ProviderPre<StoreState>,
}

/// A provider module ready to run. Cheap to clone; calls in flight keep the module they started on.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<ProviderInner>,
}

struct ProviderInner {
    engine: Arc<WasmEngine>,
    network: Arc<Network>,
    observer: Arc<dyn Observer>,
    module: Module,
    policy: Arc<Policy>,
    outbound: Arc<Outbound>,
    cache: Arc<ProviderCache>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.inner.module.name)
            .field("digest", &self.inner.module.digest)
            .finish()
    }
}

/// The guest function a call runs, given the fresh instance and its store.
type GuestCall<R> = Box<
    dyn for<'a> FnOnce(
            crate::bindings::Provider,
            &'a mut Store<StoreState>,
        ) -> Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>
        + Send,
>;

impl Provider {
    pub(crate) fn new(
        engine: Arc<WasmEngine>,
        network: Arc<Network>,
        observer: Arc<dyn Observer>,
        module: Module,
        policy: Policy,
    ) -> Self {
        let policy = Arc::new(policy);
        let outbound = network.outbound(module.name.clone(), policy.clone());
        let cache = Arc::new(ProviderCache::new(&policy));
        Provider {
            inner: Arc::new(ProviderInner {
                engine,
                network,
                observer,
                module,
                policy,
                outbound,
                cache,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.module.name
    }

    /// The same module under another policy (no recompilation). It gets its own connection pool and
    /// an empty cache.
    pub fn with_policy(&self, policy: Policy) -> Provider {
        let inner = &self.inner;
        Provider::new(
            inner.engine.clone(),
            inner.network.clone(),
            inner.observer.clone(),
            inner.module.clone(),
            policy,
        )
    }

    /// SHA-256 of the module, hex.
    pub fn digest(&self) -> &str {
        &self.inner.module.digest
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The component's imports and exports, by name (for `inspect`).
    pub fn interface(&self) -> (Vec<String>, Vec<String>) {
        self.inner.engine.interface(&self.inner.module.component)
    }

    /// Ask the provider about itself. It gets no network for this.
    pub async fn describe(&self) -> Result<ProviderInfo, CallError> {
        let no_network = Arc::new(Policy::default());
        let call = Arc::new(CallState::new(Redactor::default(), None, &no_network));
        let outbound = self
            .inner
            .network
            .outbound(self.inner.module.name.clone(), no_network);
        let info = self
            .run(
                "describe",
                call,
                outbound,
                Box::new(|instance, store| {
                    Box::pin(async move { instance.call_describe(store).await })
                }),
            )
            .await?;
        Ok(ProviderInfo {
            name: info.name,
            version: info.version,
            outbound_hosts: info.outbound_hosts,
        })
    }

    /// Run one mount in a fresh instance and check what it returns.
    pub async fn mount(
        &self,
        request: &MountRequest,
        context: &CallContext,
    ) -> Result<MountResponse, CallError> {
        let redactor = Redactor::for_request(request);
        let call = Arc::new(CallState::new(
            redactor,
            context.pod.clone(),
            &self.inner.policy,
        ));
        let wit_request = to_wit(request);
        let result = self
            .run(
                "mount",
                call.clone(),
                self.inner.outbound.clone(),
                Box::new(move |instance, store| {
                    Box::pin(async move { instance.call_mount(store, &wit_request).await })
                }),
            )
            .await?;
        match result {
            Ok(response) => self.check_output(from_wit_response(response)),
            Err(error) => Err(self.provider_error(error, &call)),
        }
    }

    /// The provider's own error, cleaned: its text is the guest's choice.
    fn provider_error(
        &self,
        error: crate::bindings::wit::ProviderError,
        call: &CallState,
    ) -> CallError {
        let mut error = from_wit_error(error);
        // Redacted first, so that a bound cannot cut a secret into an unrecognised piece.
        error.message = guest_text(&call.redactor.redact(&error.message), MAX_ERROR_MESSAGE);
        if let Some(object) = &error.object {
            error.object = Some(guest_text(&call.redactor.redact(object), MAX_ERROR_OBJECT));
        }
        CallError::Provider {
            provider: self.name().to_string(),
            error,
            denied: call.denied(),
        }
    }

    fn check_output(&self, response: MountResponse) -> Result<MountResponse, CallError> {
        let policy = &self.inner.policy;
        let provider = self.name().to_string();
        if response.files.len() > policy.max_files {
            return Err(CallError::OutputLimit {
                provider,
                what: "files",
                limit: policy.max_files as u64,
                actual: response.files.len() as u64,
            });
        }
        let total: u64 = response.files.iter().map(|f| f.contents.len() as u64).sum();
        if total > policy.max_total_bytes {
            return Err(CallError::OutputLimit {
                provider,
                what: "bytes",
                limit: policy.max_total_bytes,
                actual: total,
            });
        }
        secrets_store_contract::validate_payload(&response.files).map_err(|e| {
            CallError::InvalidOutput {
                provider,
                reason: e.to_string(),
            }
        })?;
        Ok(response)
    }

    /// The common frame of a call: a slot in the pool, a fresh store with the limits, the deadline
    /// enforced both by epoch interruption (guest code) and by a timer (guest blocked in host I/O).
    async fn run<R: Send + 'static>(
        &self,
        operation: &'static str,
        call: Arc<CallState>,
        outbound: Arc<Outbound>,
        f: GuestCall<R>,
    ) -> Result<R, CallError> {
        let inner = &self.inner;
        let provider = self.name().to_string();
        let started = Instant::now();
        let timeout = inner.policy.timeout;
        let _slot = inner.engine.slot().await.map_err(|_| CallError::Internal {
            provider: provider.clone(),
            detail: "runtime shut down".into(),
        })?;

        let stdout = CapturedOutput::default();
        let state = StoreState::new(
            inner.module.name.clone(),
            &inner.policy,
            call.clone(),
            outbound,
            inner.cache.clone(),
            &stdout,
        );
        let mut store = inner.engine.store(state, started + timeout);
        let pre = inner.module.pre.clone();
        let outcome = tokio::time::timeout(timeout + EPOCH_TICK, async {
            let instance = pre.instantiate_async(&mut store).await?;
            f(instance, &mut store).await
        })
        .await;

        let (captured, truncated) = stdout.take();
        if !captured.is_empty() {
            tracing::debug!(provider = %provider, pod = call.pod_label(), truncated, output = %call.redactor.redact(&captured),
                "provider wrote to stdout/stderr");
        }
        let result = match outcome {
            Err(_elapsed) => Err(CallError::Deadline {
                provider: provider.clone(),
                timeout,
                denied: call.denied(),
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify_trap(&store, error, &call)),
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind_label(),
        };
        inner
            .observer
            .call_finished(&provider, operation, started.elapsed(), label);
        if let Err(e) = &result {
            tracing::warn!(provider = %provider, pod = call.pod_label(), operation, error = %e, "provider call failed");
        }
        result
    }

    fn classify_trap(
        &self,
        store: &Store<StoreState>,
        error: wasmtime::Error,
        call: &CallState,
    ) -> CallError {
        let provider = self.name().to_string();
        let state = store.data();
        if state.deadline_hit() {
            return CallError::Deadline {
                provider,
                timeout: self.inner.policy.timeout,
                denied: call.denied(),
            };
        }
        if state.memory_denied() {
            return CallError::MemoryLimit {
                provider,
                limit_mib: self.inner.policy.memory_limit >> 20,
            };
        }
        let detail = match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::UnreachableCodeReached) => {
                "the provider aborted (a panic or an explicit abort)".to_string()
            }
            Some(trap) => format!("{trap}"),
            None => format!("{error:#}"),
        };
        CallError::Trap {
            provider,
            detail: call.redactor.redact(&detail),
        }
    }
}
