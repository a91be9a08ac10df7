//! Start-up, configuration and the library API of a running emulator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cloud::{CloudProfile, Clouds};
use crate::faults::{Fault, FaultEngine, FaultPlan, FaultScope};
use crate::keys::{self, Curve, PublicKey};
use crate::observe::{Counters, LogEntry, Observer};
use crate::seed::{GenerateSeed, Seed, read_seed_file};
use crate::server::{self, Listener};
use crate::store::{
    CertificateImport, IdentityKind, ImportedCertificate, KeyOptions, ObjectKind, PodBinding,
    SecretSpec, State, Vault,
};
use crate::token::{TokenAuthority, TokenClaims, TokenKind};
use crate::{Error, tls};

/// How to run the emulator. `Config::default()` listens on 127.0.0.1 with OS-chosen ports.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTPS listener (vaults and AAD). Default `127.0.0.1:0`.
    pub https_listen: SocketAddr,
    /// Plain-HTTP listener (IMDS, NMI, `/_emulator/` control). Default `127.0.0.1:0`.
    pub http_listen: SocketAddr,
    /// Initial contents.
    pub seed: Option<Seed>,
    /// Lifetime of issued tokens (AAD answers `expires_in: 3599` by default).
    pub token_lifetime: Duration,
    /// More DNS names for the server certificate (e.g. an Azure Stack vault suffix as `*.vault.x`).
    pub extra_dns_names: Vec<String>,
    /// Custom clouds besides the four built-in ones (their hosts join the certificate).
    pub custom_clouds: Vec<CloudProfile>,
    /// Probabilistic faults in force from the start.
    pub faults: FaultPlan,
    /// Seed of the fault RNG: the same seed and request sequence give the same faults.
    pub rng_seed: u64,
    /// Write the CA certificate (PEM) here after start.
    pub ca_out: Option<PathBuf>,
    /// Request log entries kept (oldest dropped first).
    pub log_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            https_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: None,
            token_lifetime: Duration::from_secs(3599),
            extra_dns_names: Vec::new(),
            custom_clouds: Vec::new(),
            faults: FaultPlan::none(),
            rng_seed: 0,
            ca_out: None,
            log_capacity: 10_000,
        }
    }
}

/// A vault to create.
#[derive(Debug, Clone)]
pub struct VaultSpec {
    pub name: String,
    /// Cloud name; empty means `AzurePublicCloud`.
    pub cloud: String,
    pub tenant: String,
    pub location: Option<String>,
    pub access: Option<Vec<String>>,
}

impl VaultSpec {
    pub fn new(name: &str, tenant: &str) -> Self {
        Self {
            name: name.to_string(),
            cloud: String::new(),
            tenant: tenant.to_string(),
            location: None,
            access: None,
        }
    }

    pub fn in_cloud(mut self, cloud: &str) -> Self {
        self.cloud = cloud.to_string();
        self
    }

    pub fn with_access(mut self, ids: &[&str]) -> Self {
        self.access = Some(ids.iter().map(|s| s.to_string()).collect());
        self
    }
}

/// How to make a key version.
#[derive(Debug, Clone)]
pub enum KeySource {
    GenerateRsa {
        bits: usize,
    },
    GenerateEc {
        curve: Curve,
    },
    /// PEM text of a private key (PKCS#8, PKCS#1 or SEC1).
    Pem(String),
}

/// A token to mint directly (tests of expired, foreign-audience or other-tenant tokens).
#[derive(Debug, Clone)]
pub struct MintToken {
    pub tenant: String,
    pub client_id: String,
    pub audience: String,
    /// Unix seconds; may lie in the past.
    pub expires_at: i64,
}

/// State shared by the listeners and the API.
pub(crate) struct Inner {
    pub state: Mutex<State>,
    pub clouds: Clouds,
    pub tokens: TokenAuthority,
    pub faults: FaultEngine,
    pub observer: Observer,
    pub token_lifetime_secs: AtomicI64,
    pub clock_offset: AtomicI64,
    pub ca_pem: std::sync::OnceLock<String>,
}

impl Inner {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The emulator's clock in unix seconds (wall clock plus `advance_clock` offsets).
    pub fn now(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        wall + self.clock_offset.load(Ordering::Relaxed)
    }

    pub fn token_lifetime(&self) -> i64 {
        self.token_lifetime_secs.load(Ordering::Relaxed)
    }

    /// Issues a token; returns it with its expiry.
    pub fn mint(
        &self,
        kind: TokenKind,
        tenant: &str,
        client_id: &str,
        object_id: &str,
        audience: &str,
        expires_at: Option<i64>,
    ) -> (String, i64) {
        let now = self.now();
        let exp = expires_at.unwrap_or(now + self.token_lifetime());
        let claims = TokenClaims {
            aud: audience.to_string(),
            iss: TokenClaims::issuer_for(tenant),
            iat: now,
            nbf: now.min(exp),
            exp,
            appid: client_id.to_string(),
            appidacr: if kind == TokenKind::ClientAssertion {
                "2".into()
            } else {
                "1".into()
            },
            idtyp: "app".into(),
            oid: object_id.to_string(),
            sub: object_id.to_string(),
            tid: tenant.to_string(),
            ver: "1.0".into(),
            xms_emu_kind: kind,
        };
        (self.tokens.issue(&claims), exp)
    }
}

/// Entry point: `Emulator::start(config).await`.
pub struct Emulator;

impl Emulator {
    pub async fn start(config: Config) -> Result<RunningEmulator, Error> {
        let mut custom = config.custom_clouds.clone();
        if let Some(seed) = &config.seed {
            custom.extend(seed.clouds.iter().cloned());
        }
        let clouds = Clouds::new(&custom);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            clouds,
            tokens: TokenAuthority::new(),
            faults: FaultEngine::new(config.faults.clone(), config.rng_seed),
            observer: Observer::new(config.log_capacity),
            token_lifetime_secs: AtomicI64::new(config.token_lifetime.as_secs() as i64),
            clock_offset: AtomicI64::new(0),
            ca_pem: std::sync::OnceLock::new(),
        });
        let api = Api {
            inner: inner.clone(),
        };
        if let Some(seed) = &config.seed {
            let seed = seed.clone();
            let api2 = Api {
                inner: inner.clone(),
            };
            // RSA generation is slow in debug builds; keep it off the async workers.
            tokio::task::spawn_blocking(move || api2.apply_seed(&seed))
                .await
                .map_err(|e| Error::Seed(format!("seeding panicked: {e}")))??;
        }

        let mut names = inner.clouds.dns_names();
        names.extend(config.extra_dns_names.iter().cloned());
        names.push("localhost".into());
        names.push("127.0.0.1".into());
        names.dedup();
        let tls = tls::build(&names)?;
        let _ = inner.ca_pem.set(tls.ca_pem.clone());
        if let Some(path) = &config.ca_out {
            std::fs::write(path, &tls.ca_pem).map_err(|source| Error::WriteFile {
                path: path.clone(),
                source,
            })?;
        }

        let https = TcpListener::bind(config.https_listen)
            .await
            .map_err(|source| Error::Bind {
                what: "HTTPS",
                addr: config.https_listen,
                source,
            })?;
        let http = TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| Error::Bind {
                what: "HTTP",
                addr: config.http_listen,
                source,
            })?;
        let https_addr = https.local_addr().map_err(|source| Error::Bind {
            what: "HTTPS",
            addr: config.https_listen,
            source,
        })?;
        let http_addr = http.local_addr().map_err(|source| Error::Bind {
            what: "HTTP",
            addr: config.http_listen,
            source,
        })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let tasks = vec![
            tokio::spawn(server::serve(
                https,
                Listener::Https,
                Some(acceptor),
                inner.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(server::serve(
                http,
                Listener::Http,
                None,
                inner.clone(),
                shutdown_rx,
            )),
        ];
        Ok(RunningEmulator {
            api,
            https_addr,
            http_addr,
            ca_pem: tls.ca_pem,
            ca_der: tls.ca_der,
            shutdown_tx,
            tasks,
        })
    }
}

/// The content-changing API, shared by the seed loader, [`RunningEmulator`] and the control endpoint.
#[derive(Clone)]
pub(crate) struct Api {
    pub inner: Arc<Inner>,
}

impl Api {
    pub fn add_vault(&self, spec: VaultSpec) -> Result<(), Error> {
        let cloud = self
            .inner
            .clouds
            .by_name(&spec.cloud)
            .ok_or_else(|| Error::UnknownCloud(spec.cloud.clone()))?
            .clone();
        if !crate::util::valid_object_name(&spec.name) || spec.name.len() > 24 {
            return Err(Error::InvalidName(spec.name));
        }
        self.inner.lock().add_vault(Vault {
            name: spec.name,
            cloud,
            tenant: spec.tenant,
            location: spec.location.unwrap_or_else(|| "eastus".into()),
            access: spec.access,
            secrets: Default::default(),
            keys: Default::default(),
            certificates: Default::default(),
            policies: Default::default(),
        })
    }

    pub fn set_secret(&self, vault: &str, name: &str, spec: SecretSpec) -> Result<String, Error> {
        let now = self.inner.now();
        self.inner.lock().add_secret(vault, name, spec, now)
    }

    pub fn set_enabled(
        &self,
        vault: &str,
        kind: ObjectKind,
        name: &str,
        version: &str,
        enabled: bool,
    ) -> Result<(), Error> {
        let now = self.inner.now();
        self.inner
            .lock()
            .set_enabled(vault, kind, name, version, enabled, now)
    }

    pub fn add_key(
        &self,
        vault: &str,
        name: &str,
        source: KeySource,
        opts: KeyOptions,
    ) -> Result<String, Error> {
        self.inner.lock().vault(vault)?;
        let public: PublicKey = match source {
            KeySource::GenerateRsa { bits } => keys::generate_rsa(bits)?.public,
            KeySource::GenerateEc { curve } => keys::generate_ec(curve)?.public,
            KeySource::Pem(text) => keys::parse_private_pem(&text)?.public,
        };
        let now = self.inner.now();
        self.inner.lock().add_key(vault, name, public, opts, now)
    }

    pub fn import_certificate(
        &self,
        vault: &str,
        name: &str,
        import: CertificateImport,
    ) -> Result<ImportedCertificate, Error> {
        let parsed = match std::str::from_utf8(&import.data) {
            Ok(text) if text.trim_start().starts_with("-----BEGIN") => {
                crate::certs::parse_pem_bundle(text)
            }
            _ => crate::certs::parse_pfx(&import.data, import.password.as_deref().unwrap_or("")),
        }
        .map_err(Error::Certificate)?;
        let now = self.inner.now();
        let opts = crate::store::ImportOptions {
            content_type: import.content_type.as_deref(),
            enabled: import.enabled,
            tags: import.tags,
        };
        self.inner
            .lock()
            .import_certificate(vault, name, &parsed, opts, now)
    }

    pub fn add_app(&self, tenant: &str, client_id: &str, secret: &str) {
        self.inner.lock().upsert_identity(
            IdentityKind::App,
            tenant,
            client_id,
            Some(secret.to_string()),
            false,
        );
    }

    pub fn add_federated(
        &self,
        tenant: &str,
        client_id: &str,
        issuer: &str,
        subject: &str,
        audiences: Option<Vec<String>>,
    ) {
        let mut st = self.inner.lock();
        if st.find_identity(Some(tenant), client_id).is_none() {
            st.upsert_identity(IdentityKind::App, tenant, client_id, None, false);
        }
        st.federated.push(crate::store::FederatedCredential {
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            issuer: issuer.to_string(),
            subject: subject.to_string(),
            audiences: audiences.unwrap_or_else(|| vec!["api://AzureADTokenExchange".into()]),
        });
    }

    pub fn add_managed_identity(&self, tenant: &str, client_id: &str, system_assigned: bool) {
        self.inner.lock().upsert_identity(
            IdentityKind::ManagedIdentity,
            tenant,
            client_id,
            None,
            system_assigned,
        );
    }

    pub fn add_pod_identity(
        &self,
        namespace: &str,
        pod: &str,
        client_id: &str,
        tenant: Option<&str>,
    ) -> Result<(), Error> {
        let mut st = self.inner.lock();
        let known = st.identities.iter().any(|i| {
            i.kind == IdentityKind::ManagedIdentity && i.client_id.eq_ignore_ascii_case(client_id)
        });
        if !known {
            let tenant = tenant.ok_or_else(|| {
                Error::Identity(format!(
                    "pod {namespace}/{pod} is bound to managed identity {client_id}, which is not seeded; add it or give the tenant"
                ))
            })?;
            st.upsert_identity(
                IdentityKind::ManagedIdentity,
                tenant,
                client_id,
                None,
                false,
            );
        }
        st.pods
            .retain(|p| !(p.namespace == namespace && p.pod == pod));
        st.pods.push(PodBinding {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            client_id: client_id.to_string(),
        });
        Ok(())
    }

    fn apply_seed(&self, seed: &Seed) -> Result<(), Error> {
        for app in &seed.identities.apps {
            self.add_app(&app.tenant, &app.client_id, &app.client_secret);
        }
        for m in &seed.identities.managed {
            self.add_managed_identity(&m.tenant, &m.client_id, m.system_assigned);
        }
        for f in &seed.identities.federated {
            self.add_federated(
                &f.tenant,
                &f.client_id,
                &f.issuer,
                &f.subject,
                f.audiences.clone(),
            );
        }
        for p in &seed.identities.pods {
            self.add_pod_identity(&p.namespace, &p.pod, &p.client_id, p.tenant.as_deref())?;
        }
        for v in &seed.vaults {
            self.add_vault(VaultSpec {
                name: v.name.clone(),
                cloud: v.cloud.clone().unwrap_or_default(),
                tenant: v.tenant.clone(),
                location: v.location.clone(),
                access: v.access.clone(),
            })?;
            for s in &v.secrets {
                for sv in &s.versions {
                    self.set_secret(
                        &v.name,
                        &s.name,
                        SecretSpec {
                            value: sv.value.clone(),
                            content_type: sv.content_type.clone(),
                            enabled: sv.enabled,
                            tags: sv.tags.clone(),
                            not_before: None,
                            expires: None,
                        },
                    )?;
                }
            }
            for k in &v.keys {
                for kv in &k.versions {
                    let source = match (&kv.pem, &kv.generate) {
                        (Some(path), None) => {
                            let bytes = read_seed_file(&seed.resolve(path))?;
                            KeySource::Pem(String::from_utf8_lossy(&bytes).into_owned())
                        }
                        (None, Some(GenerateSeed::Rsa { size })) => {
                            KeySource::GenerateRsa { bits: *size }
                        }
                        (None, Some(GenerateSeed::Ec { crv })) => {
                            KeySource::GenerateEc { curve: *crv }
                        }
                        _ => {
                            return Err(Error::Seed(format!(
                                "key '{}' in vault '{}': each version needs exactly one of pem or generate",
                                k.name, v.name
                            )));
                        }
                    };
                    self.add_key(
                        &v.name,
                        &k.name,
                        source,
                        KeyOptions {
                            hsm: kv.hsm,
                            enabled: kv.enabled,
                            key_ops: kv.key_ops.clone(),
                            tags: kv.tags.clone(),
                            not_before: None,
                            expires: None,
                        },
                    )?;
                }
            }
            for c in &v.certificates {
                for cv in &c.versions {
                    let path = cv.file.as_ref().ok_or_else(|| {
                        Error::Seed(format!(
                            "certificate '{}' in vault '{}': a version needs a file",
                            c.name, v.name
                        ))
                    })?;
                    let data = read_seed_file(&seed.resolve(path))?;
                    self.import_certificate(
                        &v.name,
                        &c.name,
                        CertificateImport {
                            data,
                            password: cv.password.clone(),
                            content_type: cv.content_type.clone(),
                            enabled: cv.enabled,
                            tags: cv.tags.clone(),
                        },
                    )
                    .map_err(|e| {
                        Error::Seed(format!(
                            "certificate '{}' in vault '{}' from {}: {e}",
                            c.name,
                            v.name,
                            path.display()
                        ))
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// A started emulator. Dropping it stops the listeners; [`RunningEmulator::shutdown`] waits for them.
pub struct RunningEmulator {
    api: Api,
    https_addr: SocketAddr,
    http_addr: SocketAddr,
    ca_pem: String,
    ca_der: Vec<u8>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningEmulator {
    fn inner(&self) -> &Inner {
        &self.api.inner
    }

    /// Address of the HTTPS listener (vaults, AAD).
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// Address of the plain-HTTP listener (IMDS, NMI, control).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The test CA (PEM) that signed the HTTPS certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// `https://{vault}.{suffix}` of a vault.
    pub fn vault_url(&self, vault: &str) -> Result<String, Error> {
        Ok(self.inner().lock().vault(vault)?.base_url())
    }

    /// `host:port → address` overrides a client needs (curl `--resolve` style): every vault host,
    /// every AAD host, IMDS and NMI.
    pub fn resolve_overrides(&self) -> Vec<(String, u16, SocketAddr)> {
        let mut out = Vec::new();
        for v in self.inner().lock().vaults.values() {
            out.push((
                format!("{}.{}", v.name, v.cloud.vault_suffix),
                443,
                self.https_addr,
            ));
        }
        for c in self.inner().clouds.all() {
            out.push((c.login_host.clone(), 443, self.https_addr));
        }
        out.push(("169.254.169.254".into(), 80, self.http_addr));
        out.push(("localhost".into(), 2579, self.http_addr));
        out.push(("127.0.0.1".into(), 2579, self.http_addr));
        out
    }

    pub fn add_vault(&self, spec: VaultSpec) -> Result<(), Error> {
        self.api.add_vault(spec)
    }

    /// Adds a secret version (the new current version); returns the version id.
    pub fn set_secret(
        &self,
        vault: &str,
        name: &str,
        value: &str,
        content_type: Option<&str>,
    ) -> Result<String, Error> {
        self.api.set_secret(
            vault,
            name,
            SecretSpec {
                value: value.to_string(),
                content_type: content_type.map(str::to_string),
                ..SecretSpec::default()
            },
        )
    }

    /// Adds a secret version with every attribute under control.
    pub fn set_secret_with(
        &self,
        vault: &str,
        name: &str,
        spec: SecretSpec,
    ) -> Result<String, Error> {
        self.api.set_secret(vault, name, spec)
    }

    pub fn disable_version(
        &self,
        vault: &str,
        kind: ObjectKind,
        name: &str,
        version: &str,
    ) -> Result<(), Error> {
        self.api.set_enabled(vault, kind, name, version, false)
    }

    pub fn set_enabled(
        &self,
        vault: &str,
        kind: ObjectKind,
        name: &str,
        version: &str,
        enabled: bool,
    ) -> Result<(), Error> {
        self.api.set_enabled(vault, kind, name, version, enabled)
    }

    /// Imports a private key from PEM as a new key version.
    pub fn import_key_pem(
        &self,
        vault: &str,
        name: &str,
        pem: &str,
        opts: KeyOptions,
    ) -> Result<String, Error> {
        self.api
            .add_key(vault, name, KeySource::Pem(pem.to_string()), opts)
    }

    /// Generates a key version (RSA generation takes seconds in debug builds; prefer PEM seeds).
    pub async fn create_key(
        &self,
        vault: &str,
        name: &str,
        source: KeySource,
        opts: KeyOptions,
    ) -> Result<String, Error> {
        let api = self.api.clone();
        let (vault, name) = (vault.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || api.add_key(&vault, &name, source, opts))
            .await
            .map_err(|e| Error::Key(format!("key generation task failed: {e}")))?
    }

    /// Imports a certificate (PFX bytes or PEM text), creating the backing key and secret.
    pub fn import_certificate(
        &self,
        vault: &str,
        name: &str,
        import: CertificateImport,
    ) -> Result<ImportedCertificate, Error> {
        self.api.import_certificate(vault, name, import)
    }

    pub fn add_app(&self, tenant: &str, client_id: &str, secret: &str) {
        self.api.add_app(tenant, client_id, secret);
    }

    /// A federated credential: assertions with this issuer and subject (and an audience of
    /// `api://AzureADTokenExchange`) may get tokens for `client_id` in `tenant`.
    pub fn add_federated(&self, tenant: &str, client_id: &str, issuer: &str, subject: &str) {
        self.api
            .add_federated(tenant, client_id, issuer, subject, None);
    }

    pub fn add_managed_identity(&self, tenant: &str, client_id: &str, system_assigned: bool) {
        self.api
            .add_managed_identity(tenant, client_id, system_assigned);
    }

    /// Binds a pod to a managed identity for NMI (creating the identity in `tenant` if needed).
    pub fn add_pod_identity(
        &self,
        namespace: &str,
        pod: &str,
        client_id: &str,
        tenant: Option<&str>,
    ) -> Result<(), Error> {
        self.api.add_pod_identity(namespace, pod, client_id, tenant)
    }

    /// Mints a token outside any flow (e.g. already expired, other audience or tenant).
    pub fn mint_token(&self, spec: &MintToken) -> String {
        let oid = crate::util::stable_uuid(&format!("{}/{}", spec.tenant, spec.client_id));
        self.inner()
            .mint(
                TokenKind::Minted,
                &spec.tenant,
                &spec.client_id,
                &oid,
                &spec.audience,
                Some(spec.expires_at),
            )
            .0
    }

    /// The emulator's clock (unix seconds).
    pub fn now(&self) -> i64 {
        self.inner().now()
    }

    /// Moves the emulator's clock forward (token expiry, timestamps) without waiting.
    pub fn advance_clock(&self, by: Duration) {
        self.inner()
            .clock_offset
            .fetch_add(by.as_secs() as i64, Ordering::Relaxed);
    }

    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.inner()
            .token_lifetime_secs
            .store(lifetime.as_secs() as i64, Ordering::Relaxed);
    }

    /// Replaces the probabilistic fault rules.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.inner().faults.set_plan(plan);
    }

    /// Restarts the fault RNG sequence from `seed`.
    pub fn reseed_faults(&self, seed: u64) {
        self.inner().faults.reseed(seed);
    }

    /// The next `count` requests in `scope` get `fault` (before any probabilistic rule).
    pub fn inject(&self, scope: FaultScope, count: u32, fault: Fault) {
        self.inner().faults.inject(scope, count, fault);
    }

    /// Drops the queued one-shot faults.
    pub fn clear_injected(&self) {
        self.inner().faults.clear_one_shots();
    }

    pub fn counters(&self) -> Counters {
        self.inner().observer.counters()
    }

    pub fn request_log(&self) -> Vec<LogEntry> {
        self.inner().observer.log()
    }

    /// Clears counters and the request log.
    pub fn reset_counters(&self) {
        self.inner().observer.reset();
    }

    /// Stops the listeners and waits for them and their connections to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
