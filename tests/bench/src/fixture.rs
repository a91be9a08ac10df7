//! What every scenario shares: the Key Vault emulator with a fixed round trip injected on every
//! request class, one vault with the benchmark's secrets and one service-principal identity, the
//! network settings that point real Azure host names at it, the Azure provider's policy, and the
//! mount requests kubelet's volume context and the SecretProviderClass would produce.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyvault_emulator::{
    Config, Emulator, FaultPlan, FaultRule, FaultScope, RunningEmulator, VaultSpec,
};
use secrets_store_contract::{MountRequest, MountResponse};
use secrets_store_runtime::{NetworkConfig, Observer, Policy, PolicySpec, ResolveOverride};

/// The round trip the emulator adds to every request.
pub const RTT: Duration = Duration::from_millis(20);
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const VAULT: &str = "kv-bench";
pub const CLIENT_ID: &str = "bench-app";
pub const CLIENT_SECRET: &str = "bench-app-client-secret";
/// Objects of one mount.
pub const OBJECTS: usize = 10;
pub const NAMESPACE: &str = "default";
pub const CLASS: &str = "kv-bench";

/// A scenario failed; the message says which and why.
#[derive(Debug, thiserror::Error)]
#[error("scenario `{scenario}`: {message}")]
pub struct BenchError {
    pub scenario: &'static str,
    pub message: String,
}

pub fn fail(scenario: &'static str, message: impl Into<String>) -> BenchError {
    BenchError {
        scenario,
        message: message.into(),
    }
}

/// Attach the scenario and the step to any error.
pub trait OrFail<T> {
    fn or_fail(self, scenario: &'static str, step: &str) -> Result<T, BenchError>;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, scenario: &'static str, step: &str) -> Result<T, BenchError> {
        self.map_err(|e| fail(scenario, format!("{step}: {e}")))
    }
}

/// The emulator's fault plan: the same fixed latency for every class of request, so data-plane
/// GETs, the unauthenticated challenge probe (a data-plane GET answered 401), AAD token requests,
/// AAD discovery, IMDS and NMI all cost one `RTT`. `FaultScope::Any` is every class except the
/// emulator's own `/_emulator/` control requests.
pub fn latency_plan() -> FaultPlan {
    FaultPlan::none().with_rule(FaultRule {
        scope: FaultScope::Any,
        latency: RTT,
        ..FaultRule::default()
    })
}

pub fn secret_name(i: usize) -> String {
    format!("secret-{i}")
}

/// A recognisable value of about the size of a connection string.
pub fn secret_value(i: usize) -> String {
    format!("value-of-secret-{i}-{}", "x".repeat(48))
}

/// Start the emulator on `servers` (so its work does not share the measured runtime's threads) and
/// fill it.
pub async fn start_emulator(
    servers: &tokio::runtime::Handle,
) -> Result<RunningEmulator, BenchError> {
    const S: &str = "setup";
    let config = Config {
        faults: latency_plan(),
        ..Config::default()
    };
    let emulator = servers
        .spawn(Emulator::start(config))
        .await
        .or_fail(S, "starting the Key Vault emulator")?
        .or_fail(S, "starting the Key Vault emulator")?;
    emulator
        .add_vault(VaultSpec::new(VAULT, TENANT))
        .or_fail(S, "adding the vault")?;
    emulator.add_app(TENANT, CLIENT_ID, CLIENT_SECRET);
    for i in 0..OBJECTS {
        emulator
            .set_secret(VAULT, &secret_name(i), &secret_value(i), None)
            .or_fail(S, "adding a secret")?;
    }
    Ok(emulator)
}

/// `--resolve` entries (as the driver takes them) for every host the emulator serves.
pub fn resolve_args(emulator: &RunningEmulator) -> Vec<String> {
    emulator
        .resolve_overrides()
        .into_iter()
        .map(|(host, port, addr)| format!("{host}:{port}={addr}"))
        .collect()
}

/// The host's network settings: system roots plus the emulator's CA, and the resolve overrides.
pub fn network(emulator: &RunningEmulator) -> Result<NetworkConfig, BenchError> {
    const S: &str = "setup";
    let mut network = NetworkConfig::default();
    network
        .add_ca_pem(emulator.ca_pem().as_bytes())
        .or_fail(S, "the emulator's CA")?;
    for entry in resolve_args(emulator) {
        network.resolve.push(
            entry
                .parse::<ResolveOverride>()
                .or_fail(S, "resolve override")?,
        );
    }
    Ok(network)
}

/// The destinations the Azure provider needs, as an operator would list them in providers.yaml.
pub const AZURE_ALLOWED_HOSTS: [&str; 2] = [
    "https://*.vault.azure.net",
    "https://login.microsoftonline.com",
];

/// The Azure provider's policy: the defaults plus the allowed hosts, then `edit`.
pub fn azure_policy(edit: impl FnOnce(&mut PolicySpec)) -> Result<Policy, BenchError> {
    let mut spec = PolicySpec {
        allowed_hosts: AZURE_ALLOWED_HOSTS.iter().map(|h| h.to_string()).collect(),
        ..PolicySpec::default()
    };
    edit(&mut spec);
    Policy::from_spec(&spec).or_fail("setup", "the Azure policy")
}

/// The SecretProviderClass `objects` parameter for the benchmark's secrets.
pub fn objects_parameter() -> String {
    let mut yaml = String::from("array:\n");
    for i in 0..OBJECTS {
        yaml.push_str(&format!(
            "  - |\n    objectName: {}\n    objectType: secret\n",
            secret_name(i)
        ));
    }
    yaml
}

/// The SecretProviderClass parameters.
pub fn class_parameters() -> Vec<(String, String)> {
    vec![
        ("keyvaultName".into(), VAULT.into()),
        ("tenantID".into(), TENANT.into()),
        ("objects".into(), objects_parameter()),
    ]
}

pub fn pod_name(pod: usize) -> String {
    format!("app-{pod}")
}

/// A uid shaped like the API server's.
pub fn pod_uid(pod: usize) -> String {
    format!("00000000-0000-4000-8000-{pod:012}")
}

/// The request the driver sends the provider for pod number `pod`: the class parameters with the
/// volume context on top, and the nodePublishSecretRef data (the service principal).
pub fn azure_request(pod: usize) -> MountRequest {
    let mut attributes: BTreeMap<String, String> = class_parameters().into_iter().collect();
    for (key, value) in [
        ("secretProviderClass", CLASS.to_string()),
        ("csi.storage.k8s.io/pod.name", pod_name(pod)),
        ("csi.storage.k8s.io/pod.namespace", NAMESPACE.to_string()),
        ("csi.storage.k8s.io/pod.uid", pod_uid(pod)),
        ("csi.storage.k8s.io/serviceAccount.name", "default".into()),
        ("csi.storage.k8s.io/ephemeral", "true".into()),
    ] {
        attributes.insert(key.to_string(), value);
    }
    MountRequest {
        attributes,
        secrets: [
            ("clientid".to_string(), CLIENT_ID.to_string()),
            ("clientsecret".to_string(), CLIENT_SECRET.to_string()),
        ]
        .into_iter()
        .collect(),
        default_file_mode: 0o644,
        current_object_versions: Vec::new(),
    }
}

/// A mount is only counted when it returned every secret with the right contents.
pub fn check_azure_response(
    scenario: &'static str,
    response: &MountResponse,
) -> Result<(), BenchError> {
    if response.files.len() != OBJECTS {
        return Err(fail(
            scenario,
            format!(
                "the mount returned {} files, expected {OBJECTS}",
                response.files.len()
            ),
        ));
    }
    for i in 0..OBJECTS {
        let name = secret_name(i);
        let file = response
            .files
            .iter()
            .find(|f| f.path == name)
            .ok_or_else(|| fail(scenario, format!("the mount returned no file {name}")))?;
        if file.contents != secret_value(i).as_bytes() {
            return Err(fail(
                scenario,
                format!("file {name} does not hold the secret's value"),
            ));
        }
    }
    Ok(())
}

/// Counts what the runtime's HTTP layer did (requests that joined one already in flight).
#[derive(Default)]
pub struct Counting {
    joined: AtomicU64,
    upstream: AtomicU64,
    shared: AtomicU64,
}

impl Counting {
    pub fn new() -> Arc<Self> {
        Arc::new(Counting::default())
    }

    /// (joined an in-flight GET, went upstream, answered from a shared exchange or the response cache)
    pub fn take(&self) -> (u64, u64, u64) {
        (
            self.joined.swap(0, Ordering::Relaxed),
            self.upstream.swap(0, Ordering::Relaxed),
            self.shared.swap(0, Ordering::Relaxed),
        )
    }
}

impl Observer for Counting {
    fn outbound(&self, _provider: &str, _host: &str, _status: Option<u16>, shared: bool) {
        if shared {
            self.shared.fetch_add(1, Ordering::Relaxed);
        } else {
            self.upstream.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn joined_in_flight(&self, _provider: &str, _host: &str) {
        self.joined.fetch_add(1, Ordering::Relaxed);
    }
}
