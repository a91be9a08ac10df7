//! `secrets-store-host mount`: run a provider on a SecretProviderClass and write its files into a
//! local directory, with the driver's own runtime and writer — a provider author's loop, no cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use secrets_store_contract::{MountResponse, SERVICE_ACCOUNT_TOKENS};
use secrets_store_publish::request::{self, mount_request};
use secrets_store_runtime::{
    CallContext, NetworkConfig, Policy, PolicySpec, Provider, ResolveOverride, Runtime,
    RuntimeConfig,
};
use secrets_store_writer::{AtomicWriter, WriteOutcome};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::CliError;

#[derive(Clone, Debug, Args)]
pub struct MountOptions {
    /// The provider component (.wasm).
    #[arg(long)]
    pub provider: PathBuf,
    /// The SecretProviderClass manifest (YAML or JSON, as applied to a cluster).
    #[arg(long)]
    pub class: PathBuf,
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub target: PathBuf,
    /// The nodePublishSecretRef data: a YAML/JSON map, or a Secret manifest (data or stringData).
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    #[arg(long, default_value = "local-pod")]
    pub pod_name: String,
    #[arg(long, default_value = "default")]
    pub pod_namespace: String,
    #[arg(long, default_value = "00000000-0000-0000-0000-000000000000")]
    pub pod_uid: String,
    #[arg(long, default_value = "default")]
    pub service_account: String,
    /// A service-account token for an audience: AUDIENCE=TOKEN or AUDIENCE=@FILE (repeatable).
    #[arg(long = "sa-token", value_name = "AUDIENCE=TOKEN")]
    pub sa_tokens: Vec<String>,
    #[command(flatten)]
    pub sandbox: SandboxOptions,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The provider's sandbox and network, shared by the commands that run providers.
#[derive(Clone, Debug, Default, Args)]
pub struct SandboxOptions {
    /// A policy document (YAML/JSON, camelCase keys as in the driver's providers config).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Allow an outbound destination, `scheme://host[:port]`, host may start with `*.` (repeatable).
    #[arg(long = "allow-host", value_name = "PATTERN")]
    pub allow_hosts: Vec<String>,
    /// Allow the destinations the provider's `describe` lists.
    #[arg(long)]
    pub allow_described_hosts: bool,
    /// Make a host file readable by the provider (repeatable).
    #[arg(long = "host-file", value_name = "PATH")]
    pub host_files: Vec<PathBuf>,
    /// Send connections for HOST:PORT to ADDRESS[:PORT] (repeatable).
    #[arg(long = "resolve", value_name = "HOST:PORT=ADDR")]
    pub resolve: Vec<String>,
    /// Trust the CA certificates in this PEM file as well as the system's (repeatable).
    #[arg(long = "ca", value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Override the policy's wall-clock limit per call.
    #[arg(long)]
    pub timeout_seconds: Option<u64>,
    /// Override the policy's memory limit.
    #[arg(long = "memory-limit-mib")]
    pub memory_limit_mib: Option<u64>,
    /// Directory for compiled components, so repeated runs do not recompile.
    #[arg(long)]
    pub artifact_cache: Option<PathBuf>,
}

impl SandboxOptions {
    pub fn network(&self) -> Result<NetworkConfig, CliError> {
        let mut network = NetworkConfig::default();
        for entry in &self.resolve {
            let o: ResolveOverride = entry.parse().map_err(CliError::Resolve)?;
            network.resolve.push(o);
        }
        for path in &self.ca {
            let pem = std::fs::read(path).map_err(CliError::io(path))?;
            network
                .add_ca_pem(&pem)
                .map_err(|source| CliError::CaFile {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(network)
    }

    pub fn policy_spec(&self) -> Result<PolicySpec, CliError> {
        let mut spec = match &self.policy {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(CliError::io(path))?;
                serde_norway::from_str::<PolicySpec>(&text).map_err(CliError::yaml(path))?
            }
            None => PolicySpec::default(),
        };
        spec.allowed_hosts.extend(self.allow_hosts.iter().cloned());
        spec.host_files.extend(self.host_files.iter().cloned());
        if let Some(t) = self.timeout_seconds {
            spec.timeout_seconds = t;
        }
        if let Some(m) = self.memory_limit_mib {
            spec.memory_limit_mib = m;
        }
        Ok(spec)
    }

    pub fn runtime(&self) -> Result<Runtime, CliError> {
        Ok(Runtime::new(RuntimeConfig {
            artifact_cache: self.artifact_cache.clone(),
            network: self.network()?,
            ..Default::default()
        })?)
    }

    /// Load the provider under the policy these options describe.
    pub async fn load(
        &self,
        runtime: &Runtime,
        name: &str,
        module: &Path,
    ) -> Result<Provider, CliError> {
        let mut spec = self.policy_spec()?;
        let policy = |spec: &PolicySpec| Policy::from_spec(spec).map_err(CliError::Policy);
        let provider = runtime.load_file(name, module, policy(&spec)?)?;
        if !self.allow_described_hosts {
            return Ok(provider);
        }
        let described = provider.describe().await?;
        spec.allowed_hosts.extend(described.outbound_hosts);
        Ok(provider.with_policy(policy(&spec)?))
    }
}

/// What a local mount did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountReport {
    pub target: PathBuf,
    pub changed: bool,
    pub files: Vec<FileReport>,
    pub object_versions: Vec<VersionReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    pub mode: String,
    pub bytes: usize,
    /// First 12 hex digits of the SHA-256 of the contents (never the contents).
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct VersionReport {
    pub id: String,
    pub version: String,
}

impl MountReport {
    fn new(target: &Path, outcome: &WriteOutcome, response: &MountResponse) -> Self {
        MountReport {
            target: target.to_path_buf(),
            changed: outcome.changed,
            files: response
                .files
                .iter()
                .map(|f| FileReport {
                    path: f.path.clone(),
                    mode: format!("{:04o}", f.mode),
                    bytes: f.contents.len(),
                    sha256: hex::encode(&Sha256::digest(&f.contents)[..6]),
                })
                .collect(),
            object_versions: response
                .object_versions
                .iter()
                .map(|v| VersionReport {
                    id: v.id.clone(),
                    version: v.version.clone(),
                })
                .collect(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "mounted {} file(s) into {} ({})\n",
            self.files.len(),
            self.target.display(),
            if self.changed {
                "written"
            } else {
                "unchanged, nothing written"
            }
        );
        for f in &self.files {
            out.push_str(&format!(
                "  {}  {:>8} B  sha256:{}  {}\n",
                f.mode, f.bytes, f.sha256, f.path
            ));
        }
        if !self.object_versions.is_empty() {
            out.push_str("object versions:\n");
            for v in &self.object_versions {
                out.push_str(&format!("  {}  {}\n", v.id, v.version));
            }
        }
        out
    }
}

/// A provider and a class, ready to mount again and again (the demo mounts twice).
pub struct LocalMount {
    pub provider: Provider,
    options: MountOptions,
    parameters: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
}

impl LocalMount {
    pub async fn prepare(options: MountOptions, runtime: &Runtime) -> Result<Self, CliError> {
        let (provider_name, parameters) = read_class(&options.class)?;
        let secrets = match &options.secrets {
            Some(path) => read_secrets(path)?,
            None => BTreeMap::new(),
        };
        let provider = options
            .sandbox
            .load(runtime, &provider_name, &options.provider)
            .await?;
        Ok(LocalMount {
            provider,
            options,
            parameters,
            secrets,
        })
    }

    pub async fn mount(&self) -> Result<MountReport, CliError> {
        let o = &self.options;
        let mut context: BTreeMap<String, String> = [
            (request::POD_NAME, o.pod_name.as_str()),
            (request::POD_NAMESPACE, o.pod_namespace.as_str()),
            (request::POD_UID, o.pod_uid.as_str()),
            (request::SERVICE_ACCOUNT_NAME, o.service_account.as_str()),
            (request::EPHEMERAL, "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if !o.sa_tokens.is_empty() {
            context.insert(
                SERVICE_ACCOUNT_TOKENS.to_string(),
                request::tokens_json(&read_tokens(&o.sa_tokens)?),
            );
        }
        let req = mount_request(
            &self.parameters,
            &context,
            &BTreeMap::new(),
            self.secrets.clone(),
            Vec::new(),
        );
        let call = CallContext {
            pod: Some(format!("{}/{}", o.pod_namespace, o.pod_name)),
        };
        let response = self.provider.mount(&req, &call).await?;

        create_target(&o.target)?;
        let writer = AtomicWriter::open(&o.target).map_err(|source| CliError::Write {
            target: o.target.clone(),
            source,
        })?;
        let outcome = writer
            .write(&response.files)
            .map_err(|source| CliError::Write {
                target: o.target.clone(),
                source,
            })?;
        Ok(MountReport::new(&o.target, &outcome, &response))
    }
}

/// The whole `mount` command.
pub async fn run(options: MountOptions) -> Result<MountReport, CliError> {
    let runtime = options.sandbox.runtime()?;
    LocalMount::prepare(options, &runtime).await?.mount().await
}

fn create_target(target: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(target)
        .map_err(CliError::io(target))
}

/// `spec.provider` and `spec.parameters` of the first SecretProviderClass in the file.
pub fn read_class(path: &Path) -> Result<(String, BTreeMap<String, String>), CliError> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(path).map_err(CliError::io(path))?;
    for document in serde_norway::Deserializer::from_str(&text) {
        let value = serde_norway::Value::deserialize(document).map_err(CliError::yaml(path))?;
        if value.get("kind").and_then(|k| k.as_str()) != Some("SecretProviderClass") {
            continue;
        }
        let class: secrets_store_k8s::crd::v1::SecretProviderClass =
            serde_norway::from_value(value).map_err(|source| CliError::InvalidClass {
                path: path.to_path_buf(),
                source,
            })?;
        let name = class.metadata.name.clone().unwrap_or_default();
        if class.spec.provider.is_empty() {
            return Err(CliError::content(
                path,
                format!("SecretProviderClass {name:?} has no spec.provider"),
            ));
        }
        return Ok((class.spec.provider, class.spec.parameters));
    }
    Err(CliError::content(
        path,
        "no SecretProviderClass in the file",
    ))
}

/// A plain string map, or a Secret manifest (`data` is base64, `stringData` plain).
pub fn read_secrets(path: &Path) -> Result<BTreeMap<String, String>, CliError> {
    let text = std::fs::read_to_string(path).map_err(CliError::io(path))?;
    let value: serde_norway::Value = serde_norway::from_str(&text).map_err(CliError::yaml(path))?;
    let as_map = |v: &serde_norway::Value| -> Result<BTreeMap<String, String>, CliError> {
        serde_norway::from_value(v.clone()).map_err(|source| CliError::NotAStringMap {
            path: path.to_path_buf(),
            source,
        })
    };
    if value.get("kind").and_then(|k| k.as_str()) != Some("Secret") {
        return as_map(&value);
    }
    let mut secrets = BTreeMap::new();
    if let Some(data) = value.get("data") {
        for (key, encoded) in as_map(data)? {
            let bytes = match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
                Ok(bytes) => bytes,
                Err(source) => {
                    let path = path.to_path_buf();
                    return Err(CliError::NotBase64 { path, key, source });
                }
            };
            let text = match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(source) => {
                    let path = path.to_path_buf();
                    return Err(CliError::NotUtf8 { path, key, source });
                }
            };
            secrets.insert(key, text);
        }
    }
    if let Some(data) = value.get("stringData") {
        secrets.extend(as_map(data)?);
    }
    Ok(secrets)
}

fn read_tokens(entries: &[String]) -> Result<Vec<(String, String)>, CliError> {
    entries
        .iter()
        .map(|entry| {
            let (audience, token) = entry.split_once('=').ok_or_else(|| CliError::Option {
                option: "--sa-token",
                message: "want AUDIENCE=TOKEN or AUDIENCE=@FILE".into(),
            })?;
            let token = match token.strip_prefix('@') {
                Some(file) => {
                    let path = Path::new(file);
                    std::fs::read_to_string(path)
                        .map_err(CliError::io(path))?
                        .trim()
                        .to_string()
                }
                None => token.to_string(),
            };
            Ok((audience.to_string(), token))
        })
        .collect()
}
