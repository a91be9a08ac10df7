//! Shared support for the end-to-end tests: an emulator with the standard tenant, vault and
//! identities; a runtime that reaches it over real TLS through resolve overrides (and trusts only
//! its CA); the Azure provider loaded under an explicit policy; mount requests assembled the way
//! the driver assembles them; log capture; and the `openssl` CLI as the independent oracle.

#![allow(dead_code, clippy::unwrap_used)] // Test support: a failed unwrap is a failed test.

pub mod pki;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyvault_emulator::{CloudProfile, Config, Emulator, RunningEmulator, VaultSpec};
use secrets_store_contract::{ErrorKind, File, MountRequest, MountResponse, ProviderError};
use secrets_store_publish::request::{self, mount_request};
use secrets_store_runtime::{
    CallContext, CallError, NetworkConfig, Policy, PolicySpec, Provider, ResolveOverride, Runtime,
    RuntimeConfig,
};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// A tenant AAD does not know.
pub const UNKNOWN_TENANT: &str = "0b1e5a2c-0000-4000-8000-00000000dead";
pub const VAULT: &str = "e2e-kv";

/// The service principal of most tests.
pub const SP_CLIENT_ID: &str = "5c9d1f3e-7a2b-4c6d-8e0f-a1b2c3d4e5f6";
pub const SP_CLIENT_SECRET: &str = "sp-client-secret~Q8x.Zr2";
/// A second service principal, for "another identity gets its own token".
pub const SP2_CLIENT_ID: &str = "6d0e2a4f-8b3c-4d7e-9f10-b2c3d4e5f607";
pub const SP2_CLIENT_SECRET: &str = "sp2-client-secret~W3y.Kp7";

/// Workload identity: the app and the federated credential the service-account token matches.
pub const WI_CLIENT_ID: &str = "7e1f3b50-9c4d-4e8f-a021-c3d4e5f60718";
pub const OIDC_ISSUER: &str = "https://oidc.e2e.example/cluster-1";
pub const POD_NAMESPACE: &str = "shop";
pub const POD_NAME: &str = "web-0";
pub const SERVICE_ACCOUNT: &str = "web";

/// Managed identities: the node's system-assigned one and a user-assigned one.
pub const MI_SYSTEM_CLIENT_ID: &str = "8f204c61-ad5e-4f90-b132-d4e5f6071829";
pub const MI_USER_CLIENT_ID: &str = "90315d72-be6f-40a1-8243-e5f60718293a";
/// The identity aad-pod-identity assigns to the pod.
pub const POD_IDENTITY_CLIENT_ID: &str = "a1426e83-cf70-41b2-9354-f60718293a4b";

/// The custom (Azure Stack) cloud served by every test emulator.
pub const STACK_VAULT_SUFFIX: &str = "vault.local.azurestack.external";
pub const STACK_LOGIN_HOST: &str = "login.local.azurestack.external";

/// Every destination the provider may need, listed one by one (no wildcard shortcuts for IMDS or
/// NMI: the policy must name them).
pub const ALL_HOSTS: &[&str] = secrets_store_test_support::AZURE_HOSTS;

/// An emulator with the standard vault (public cloud), the service principals, the workload
/// identity's federated credential, both managed identities and the pod identity binding.
pub async fn emulator() -> RunningEmulator {
    let emu = Emulator::start(Config {
        custom_clouds: vec![CloudProfile {
            name: "AzureStackCloud".into(),
            vault_suffix: STACK_VAULT_SUFFIX.into(),
            login_host: STACK_LOGIN_HOST.into(),
            resource: format!("https://{STACK_VAULT_SUFFIX}"),
        }],
        ..Config::default()
    })
    .await
    .unwrap();
    emu.add_vault(VaultSpec::new(VAULT, TENANT)).unwrap();
    emu.add_app(TENANT, SP_CLIENT_ID, SP_CLIENT_SECRET);
    emu.add_app(TENANT, SP2_CLIENT_ID, SP2_CLIENT_SECRET);
    emu.add_federated(
        TENANT,
        WI_CLIENT_ID,
        OIDC_ISSUER,
        &sa_subject(POD_NAMESPACE, SERVICE_ACCOUNT),
    );
    emu.add_managed_identity(TENANT, MI_SYSTEM_CLIENT_ID, true);
    emu.add_managed_identity(TENANT, MI_USER_CLIENT_ID, false);
    emu.add_pod_identity(
        POD_NAMESPACE,
        POD_NAME,
        POD_IDENTITY_CLIENT_ID,
        Some(TENANT),
    )
    .unwrap();
    emu
}

/// The emulator's resolve overrides (vault hosts as they exist now) plus those of `more_vault_hosts`.
pub fn network(emu: &RunningEmulator, more_vault_hosts: &[&str]) -> NetworkConfig {
    let mut network = NetworkConfig {
        no_system_roots: true,
        ..NetworkConfig::default()
    };
    network.add_ca_pem(emu.ca_pem().as_bytes()).unwrap();
    network.resolve = overrides(emu, more_vault_hosts);
    network
}

pub fn overrides(emu: &RunningEmulator, more_vault_hosts: &[&str]) -> Vec<ResolveOverride> {
    let mut out: Vec<ResolveOverride> = emu
        .resolve_overrides()
        .into_iter()
        .map(|(host, port, addr)| ResolveOverride { host, port, addr })
        .collect();
    for host in more_vault_hosts {
        out.push(ResolveOverride {
            host: host.to_string(),
            port: 443,
            addr: emu.https_addr(),
        });
    }
    out
}

/// Compiled components are kept across tests and runs (keyed by module digest and engine).
pub fn artifact_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("compiled-providers")
}

pub fn runtime(network: NetworkConfig) -> Runtime {
    Runtime::new(RuntimeConfig {
        artifact_cache: Some(artifact_cache()),
        max_instances: 4,
        network,
        ..Default::default()
    })
    .unwrap()
}

pub fn policy(hosts: &[&str]) -> PolicySpec {
    PolicySpec {
        allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        ..Default::default()
    }
}

pub fn load_azure(runtime: &Runtime, spec: PolicySpec) -> Provider {
    runtime
        .load_file(
            "azure",
            Path::new(secrets_store_artifacts::AZURE),
            Policy::from_spec(&spec).unwrap(),
        )
        .unwrap()
}

/// The usual setup: the standard emulator, a runtime pointed at it and the provider allowed every
/// Azure destination.
pub struct Env {
    pub emu: RunningEmulator,
    pub runtime: Runtime,
    pub azure: Provider,
}

impl Env {
    pub async fn start() -> Env {
        Env::with(|_| {}).await
    }

    /// `prepare` runs before the runtime is built, so vaults it adds are resolved too.
    pub async fn with(prepare: impl FnOnce(&RunningEmulator)) -> Env {
        let emu = emulator().await;
        prepare(&emu);
        let runtime = runtime(network(&emu, &[]));
        let azure = load_azure(&runtime, policy(ALL_HOSTS));
        Env {
            emu,
            runtime,
            azure,
        }
    }

    pub async fn mount(&self, mount: &Mount) -> Result<MountResponse, CallError> {
        self.azure
            .mount(&mount.request(), &mount.call_context())
            .await
    }
}

/// One mount as the driver would ask for it: the class's parameters, the volume context kubelet
/// sets, and the nodePublishSecretRef data.
#[derive(Clone, Debug)]
pub struct Mount {
    pub parameters: BTreeMap<String, String>,
    pub context: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
}

impl Mount {
    /// `keyvaultName`, `tenantID` and `objects`, with the standard pod's volume context and no
    /// credentials.
    pub fn new(objects: &str) -> Mount {
        let parameters = [
            ("keyvaultName", VAULT),
            ("tenantID", TENANT),
            ("objects", objects),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let context = [
            (request::POD_NAME, POD_NAME),
            (request::POD_NAMESPACE, POD_NAMESPACE),
            (request::POD_UID, "3f1c2a9e-1111-4222-8333-944455556666"),
            (request::SERVICE_ACCOUNT_NAME, SERVICE_ACCOUNT),
            (request::EPHEMERAL, "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Mount {
            parameters,
            context,
            secrets: BTreeMap::new(),
        }
    }

    /// The same, authenticated as the standard service principal.
    pub fn sp(objects: &str) -> Mount {
        Mount::new(objects)
            .secret("clientid", SP_CLIENT_ID)
            .secret("clientsecret", SP_CLIENT_SECRET)
    }

    pub fn param(mut self, key: &str, value: &str) -> Mount {
        self.parameters.insert(key.to_string(), value.to_string());
        self
    }

    pub fn without_param(mut self, key: &str) -> Mount {
        self.parameters.remove(key);
        self
    }

    pub fn secret(mut self, key: &str, value: &str) -> Mount {
        self.secrets.insert(key.to_string(), value.to_string());
        self
    }

    pub fn no_secrets(mut self) -> Mount {
        self.secrets.clear();
        self
    }

    /// kubelet's `csi.storage.k8s.io/serviceAccount.tokens` for the workload identity audience.
    pub fn sa_token(mut self, token: &str) -> Mount {
        self.context.insert(
            request::SERVICE_ACCOUNT_TOKENS.to_string(),
            request::tokens_json(&[("api://AzureADTokenExchange".to_string(), token.to_string())]),
        );
        self
    }

    pub fn pod(mut self, namespace: &str, name: &str) -> Mount {
        self.context
            .insert(request::POD_NAMESPACE.to_string(), namespace.to_string());
        self.context
            .insert(request::POD_NAME.to_string(), name.to_string());
        self
    }

    pub fn request(&self) -> MountRequest {
        mount_request(
            &self.parameters,
            &self.context,
            &BTreeMap::new(),
            self.secrets.clone(),
            Vec::new(),
        )
    }

    pub fn call_context(&self) -> CallContext {
        CallContext {
            pod: Some(format!(
                "{}/{}",
                self.context[request::POD_NAMESPACE],
                self.context[request::POD_NAME]
            )),
        }
    }
}

/// One `objects` entry from field/value pairs.
pub fn object(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
}

/// The `objects` parameter: a YAML `array:` of YAML documents, as SecretProviderClasses write it.
pub fn objects(items: &[String]) -> String {
    let mut out = String::from("array:\n");
    for item in items {
        out.push_str("  - |\n");
        for line in item.lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A single secret object named `name`.
pub fn secret_object(name: &str) -> String {
    objects(&[object(&[("objectName", name), ("objectType", "secret")])])
}

pub fn file<'a>(response: &'a MountResponse, path: &str) -> &'a File {
    response
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| {
            panic!(
                "no file {path:?} in {:?}",
                response.files.iter().map(|f| &f.path).collect::<Vec<_>>()
            )
        })
}

pub fn text(response: &MountResponse, path: &str) -> String {
    String::from_utf8(file(response, path).contents.clone()).unwrap()
}

/// The reported version of object `id` (`secret/name`).
pub fn version<'a>(response: &'a MountResponse, id: &str) -> &'a str {
    response
        .object_versions
        .iter()
        .find(|v| v.id == id)
        .map(|v| v.version.as_str())
        .unwrap_or_else(|| panic!("no object version {id:?} in {:?}", response.object_versions))
}

/// The provider's own error, or a panic naming what came instead.
pub fn provider_error(result: Result<MountResponse, CallError>) -> (ProviderError, CallError) {
    match result {
        Ok(response) => panic!("the mount succeeded with {} file(s)", response.files.len()),
        Err(CallError::Provider { ref error, .. }) => (error.clone(), result.unwrap_err()),
        Err(other) => panic!("not a provider error: {other}"),
    }
}

/// Asserts a provider error of `kind` whose text contains every one of `needles`; returns the
/// text the user would see.
pub fn expect_error(
    result: Result<MountResponse, CallError>,
    kind: ErrorKind,
    needles: &[&str],
) -> String {
    let (error, call_error) = provider_error(result);
    let shown = call_error.to_string();
    assert_eq!(error.kind, kind, "{shown}");
    for needle in needles {
        assert!(shown.contains(needle), "{needle:?} missing from: {shown}");
    }
    shown
}

/// The `sub` of a projected service-account token.
pub fn sa_subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// A projected service-account token as kubelet hands it over: a JWT for `api://AzureADTokenExchange`
/// (the emulator trusts the federated credential, not a signing key, so the signature is filler).
pub fn sa_token(issuer: &str, subject: &str, now: i64) -> String {
    let header = serde_json::json!({"alg": "RS256", "kid": "e2e-signing-key"});
    let claims = serde_json::json!({
        "aud": ["api://AzureADTokenExchange"],
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "iss": issuer,
        "sub": subject,
        "kubernetes.io": {"namespace": POD_NAMESPACE, "serviceaccount": {"name": SERVICE_ACCOUNT}},
    });
    let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.{}",
        part(&header),
        part(&claims),
        URL_SAFE_NO_PAD.encode(b"e2e-signature-not-checked-by-the-emulator")
    )
}

/// The standard pod's workload identity token.
pub fn standard_sa_token(emu: &RunningEmulator) -> String {
    sa_token(
        OIDC_ISSUER,
        &sa_subject(POD_NAMESPACE, SERVICE_ACCOUNT),
        emu.now(),
    )
}

/// Formatted log output of the current thread's subscriber.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Collects everything logged on this thread at trace level, with the driver's caps on the
/// libraries that log secrets at high verbosity. Use on a current-thread runtime, where the
/// runtime's and the emulator's tasks all run on the test's thread.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let mut filter = tracing_subscriber::EnvFilter::new("trace");
    for cap in secrets_store_runtime::redact::THIRD_PARTY_LOG_CAPS {
        filter = filter.add_directive(cap.parse().unwrap());
    }
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// The `openssl` CLI, the independent oracle (shared with the other suites).
pub use secrets_store_test_support::openssl::{run as openssl, text as openssl_text};
