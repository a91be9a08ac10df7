//! The real driver for end-to-end tests and the benchmark: a `secrets-store-host serve` binary on a
//! unix socket in a temporary kubelet directory, talking to a fake API server through a
//! kubeconfig, mounting real tmpfs volumes (root only), reached through a real gRPC client.
//!
//! [`DriverProcess`] owns the directories and the child process; dropping it kills the driver and
//! unmounts whatever tmpfs it left. Errors are values ([`DriverError`]) so the benchmark can report
//! them; the test suites unwrap.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::csi::v1::identity_client::IdentityClient;
use secrets_store_publish::mounts;
use serde_json::json;
use tonic::transport::Channel;

/// What a driver could not do.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the driver exited early ({status}); log:\n{log}")]
    ExitedEarly { status: ExitStatus, log: String },
    #[error("the driver did not become ready within {bound:?}; log:\n{log}")]
    NotReady { bound: Duration, log: String },
    #[error("the driver exited with {status} on SIGTERM; log:\n{log}")]
    StoppedBadly { status: ExitStatus, log: String },
    #[error("the driver did not stop within {bound:?} of SIGTERM")]
    DidNotStop { bound: Duration },
    #[error("the driver is not running")]
    NotRunning,
    #[error("the fake API server refused {what}")]
    Api {
        what: &'static str,
        #[source]
        source: fake_apiserver::StoreError,
    },
    #[error("the fake API server gave the pod no uid")]
    NoUid,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriverError {
    let what = what.into();
    move |source| DriverError::Io { what, source }
}

/// How the driver is started.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The `secrets-store-host` executable.
    pub binary: PathBuf,
    /// `--nodeid`.
    pub node: String,
    /// providers.yaml
    pub providers_yaml: String,
    /// Module files to copy into the providers dir: (file name, source path).
    pub modules: Vec<(String, PathBuf)>,
    /// Module files given as bytes (e.g. deliberately broken ones): (file name, contents).
    pub module_bytes: Vec<(String, Vec<u8>)>,
    /// `--artifact-cache`; `None`: a fresh one inside the driver's directory.
    pub artifact_cache: Option<PathBuf>,
    /// Extra `serve` arguments, after the ones every driver gets.
    pub args: Vec<String>,
}

/// The driver's directories, its arguments and (while it runs) its process.
pub struct DriverProcess {
    pub root: tempfile::TempDir,
    pub kubelet: PathBuf,
    pub socket: PathBuf,
    pub providers_dir: PathBuf,
    pub legacy_dir: PathBuf,
    pub log: PathBuf,
    pub metrics: SocketAddr,
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

fn free_port() -> Result<SocketAddr, DriverError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("a free port for metrics"))
}

impl DriverProcess {
    /// Lays out the directories (kubelet, providers, legacy providers), writes providers.yaml,
    /// the modules and a kubeconfig for `api`. Does not start the driver.
    pub fn prepare(setup: &Setup, api: &FakeApiServer) -> Result<DriverProcess, DriverError> {
        let root = tempfile::tempdir().map_err(io("a temporary directory"))?;
        let kubelet = root.path().join("kubelet");
        let providers_dir = root.path().join("providers");
        let legacy_dir = root.path().join("legacy-providers");
        for dir in [&kubelet.join("pods"), &providers_dir, &legacy_dir] {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        std::fs::write(providers_dir.join("providers.yaml"), &setup.providers_yaml)
            .map_err(io("writing providers.yaml"))?;
        for (name, source) in &setup.modules {
            std::fs::copy(source, providers_dir.join(name))
                .map_err(io(format!("copying {}", source.display())))?;
        }
        for (name, bytes) in &setup.module_bytes {
            std::fs::write(providers_dir.join(name), bytes)
                .map_err(io(format!("writing {name}")))?;
        }
        let kubeconfig = root.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)
            .map_err(io("writing the kubeconfig"))?;
        // Created by the driver with its required mode (0700) when it does not exist.
        let cache = setup
            .artifact_cache
            .clone()
            .unwrap_or_else(|| root.path().join("artifact-cache"));
        let socket = root.path().join("plugin/csi.sock");
        let metrics = free_port()?;
        let mut args: Vec<String> = vec![
            "serve".into(),
            format!("--endpoint=unix://{}", socket.display()),
            format!("--nodeid={}", setup.node),
            format!("--providers-dir={}", providers_dir.display()),
            format!("--provider-volume={}", legacy_dir.display()),
            format!(
                "--additional-provider-volume-paths={}",
                root.path().join("no-such-dir").display()
            ),
            format!("--kubelet-dir={}", kubelet.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--metrics-addr={metrics}"),
            format!("--artifact-cache={}", cache.display()),
        ];
        args.extend(setup.args.iter().cloned());
        let log = root.path().join("driver.log");
        Ok(DriverProcess {
            root,
            kubelet,
            socket,
            providers_dir,
            legacy_dir,
            log,
            metrics,
            binary: setup.binary.clone(),
            args,
            child: None,
        })
    }

    /// Starts the driver (stderr appended to [`DriverProcess::log`]) and waits, at most `bound`,
    /// until it answers Probe with ready.
    pub async fn start(&mut self, bound: Duration) -> Result<(), DriverError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io("opening the driver log"))?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(io(format!("starting {}", self.binary.display())))?;
        self.child = Some(child);
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(DriverError::ExitedEarly {
                    status,
                    log: self.logs(),
                });
            }
            if self.socket.exists()
                && let Ok(channel) = self.channel().await
                && let Ok(reply) = IdentityClient::new(channel)
                    .probe(csi::ProbeRequest {})
                    .await
                && reply.into_inner().ready == Some(true)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DriverError::NotReady {
                    bound,
                    log: self.logs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new gRPC channel to the driver's CSI socket.
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        crate::uds::channel(&self.socket).await
    }

    /// Sends `signal` to the driver and waits for it to exit.
    pub fn signal_and_wait(
        &mut self,
        signal: rustix::process::Signal,
    ) -> Result<ExitStatus, DriverError> {
        let mut child = self.child.take().ok_or(DriverError::NotRunning)?;
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, signal);
        child.wait().map_err(io("waiting for the driver"))
    }

    /// SIGTERM, and a wait of at most `bound` for a successful exit (SIGKILL after that).
    pub async fn stop_gracefully(&mut self, bound: Duration) -> Result<(), DriverError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + bound;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(DriverError::StoppedBadly {
                        status,
                        log: self.logs_tail(30),
                    });
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(DriverError::DidNotStop { bound });
                }
            }
        }
    }

    /// Whether the driver process is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The driver's pid, 0 when it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// A line of the driver's /proc/<pid>/status in KiB (e.g. `VmHWM`, the peak resident set).
    pub fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Everything the driver logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines the driver logged.
    pub fn logs_tail(&self, lines: usize) -> String {
        let text = self.logs();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The target kubelet would pass for a pod's volume (its parent directories exist, as kubelet
    /// creates them).
    pub fn target(&self, pod_uid: &str, volume: &str) -> Result<PathBuf, DriverError> {
        let dir = self
            .kubelet
            .join("pods")
            .join(pod_uid)
            .join("volumes/kubernetes.io~csi")
            .join(volume);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(dir.join("mount"))
    }

    /// Our tmpfs mounts below this driver's kubelet directory.
    pub fn our_mounts(&self) -> Result<Vec<PathBuf>, DriverError> {
        mounts::ours_under(&self.kubelet).map_err(io("reading the mount table"))
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Never leave a tmpfs behind, whatever the test did.
        for mount in mounts::ours_under(&self.kubelet).unwrap_or_default() {
            let _ = mounts::unmount(&mount);
        }
    }
}

/// Creates a pod scheduled on `node`; returns the uid the API server gave it (kubelet passes that
/// uid in the volume context, and owner references must carry it or garbage collection removes
/// the dependents).
pub fn create_pod(
    api: &FakeApiServer,
    namespace: &str,
    name: &str,
    node: &str,
) -> Result<String, DriverError> {
    let pod = api
        .create_json(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "serviceAccountName": "default", "containers": [{"name": "app", "image": "app"}]}
        }))
        .map_err(|source| DriverError::Api {
            what: "a pod",
            source,
        })?;
    pod["metadata"]["uid"]
        .as_str()
        .map(str::to_string)
        .ok_or(DriverError::NoUid)
}

/// Creates a v1 SecretProviderClass for `provider` with `parameters`.
pub fn create_class<'a>(
    api: &FakeApiServer,
    namespace: &str,
    name: &str,
    provider: &str,
    parameters: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), DriverError> {
    let parameters: HashMap<&str, &str> = parameters.into_iter().collect();
    api.create_json(json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": provider, "parameters": parameters}
    }))
    .map(drop)
    .map_err(|source| DriverError::Api {
        what: "a SecretProviderClass",
        source,
    })
}

/// A NodePublishVolume as kubelet sends it for an inline volume of `class` in the pod
/// (namespace, name, uid), with the node-publish `secrets`.
pub fn publish_request(
    volume_id: &str,
    target: &Path,
    class: &str,
    pod: (&str, &str, &str),
    secrets: &[(&str, &str)],
) -> csi::NodePublishVolumeRequest {
    let (namespace, name, uid) = pod;
    let context: HashMap<String, String> = [
        ("secretProviderClass", class),
        ("csi.storage.k8s.io/pod.name", name),
        ("csi.storage.k8s.io/pod.namespace", namespace),
        ("csi.storage.k8s.io/pod.uid", uid),
        ("csi.storage.k8s.io/serviceAccount.name", "default"),
        ("csi.storage.k8s.io/ephemeral", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    csi::NodePublishVolumeRequest {
        volume_id: volume_id.to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(csi::VolumeCapability {
            access_mode: Some(csi::volume_capability::AccessMode {
                mode: csi::volume_capability::access_mode::Mode::SingleNodeReaderOnly as i32,
            }),
            access_type: Some(csi::volume_capability::AccessType::Mount(
                csi::volume_capability::MountVolume::default(),
            )),
        }),
        readonly: true,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        volume_context: context,
        ..Default::default()
    }
}
