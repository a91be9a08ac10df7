//! A real driver for end-to-end tests: the `secrets-store-host serve` binary on a unix socket in a
//! temporary kubelet directory, talking to an in-process fake API server, mounting real tmpfs
//! volumes (the tests run as root, as CI does), reached through a real gRPC client.

#![allow(dead_code, clippy::unwrap_used)] // Test support: a failed unwrap is a failed test.

pub mod hold;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::csi::v1::identity_client::IdentityClient;
use secrets_store_proto::csi::v1::node_client::NodeClient;
use serde_json::json;
use tonic::transport::{Channel, Endpoint, Uri};

pub const NODE: &str = "node-1";
pub const BINARY: &str = env!("CARGO_BIN_EXE_secrets-store-host");

/// What the driver is started with.
#[derive(Clone, Default)]
pub struct Setup {
    /// providers.yaml
    pub providers_yaml: String,
    /// Module files to copy into the providers dir: (file name, source path).
    pub modules: Vec<(String, PathBuf)>,
    /// Module files given as bytes (e.g. deliberately broken ones): (file name, contents).
    pub module_bytes: Vec<(String, Vec<u8>)>,
    /// Extra `serve` arguments.
    pub args: Vec<String>,
}

pub struct Driver {
    pub root: tempfile::TempDir,
    pub kubelet: PathBuf,
    pub socket: PathBuf,
    pub providers_dir: PathBuf,
    pub legacy_dir: PathBuf,
    pub log: PathBuf,
    pub metrics: SocketAddr,
    pub api: FakeApiServer,
    child: Option<Child>,
    args: Vec<String>,
}

/// Compiled modules are shared by every test's driver, so each test does not compile azure.wasm again.
fn artifact_cache() -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("driver-artifact-cache");
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    dir
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Driver {
    pub async fn start(setup: Setup) -> Driver {
        let api = FakeApiServer::start().await.unwrap();
        Self::start_with(setup, api).await
    }

    pub async fn start_with(setup: Setup, api: FakeApiServer) -> Driver {
        let root = tempfile::tempdir().unwrap();
        let kubelet = root.path().join("kubelet");
        let providers_dir = root.path().join("providers");
        let legacy_dir = root.path().join("legacy-providers");
        for dir in [&kubelet.join("pods"), &providers_dir, &legacy_dir] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(providers_dir.join("providers.yaml"), &setup.providers_yaml).unwrap();
        for (name, source) in &setup.modules {
            std::fs::copy(source, providers_dir.join(name)).unwrap();
        }
        for (name, bytes) in &setup.module_bytes {
            std::fs::write(providers_dir.join(name), bytes).unwrap();
        }
        let kubeconfig = root.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig).unwrap();
        let socket = root.path().join("plugin/csi.sock");
        let metrics = free_port();
        let mut args: Vec<String> = vec![
            "serve".into(),
            format!("--endpoint=unix://{}", socket.display()),
            format!("--nodeid={NODE}"),
            format!("--providers-dir={}", providers_dir.display()),
            format!("--provider-volume={}", legacy_dir.display()),
            format!(
                "--additional-provider-volume-paths={}",
                root.path().join("no-such-dir").display()
            ),
            format!("--kubelet-dir={}", kubelet.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--metrics-addr={metrics}"),
            format!("--artifact-cache={}", artifact_cache().display()),
            "--log-format=json".into(),
        ];
        // A test may ask for another verbosity; the flag may be given only once.
        if !setup.args.iter().any(|a| a.starts_with("--v=")) {
            args.push("--v=3".into());
        }
        args.extend(setup.args.iter().cloned());
        let log = root.path().join("driver.log");
        let mut driver = Driver {
            root,
            kubelet,
            socket,
            providers_dir,
            legacy_dir,
            log,
            metrics,
            api,
            child: None,
            args,
        };
        driver.spawn().await;
        driver
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BINARY)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Wait (bounded) until the driver answers Probe with ready.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("the driver exited early ({status}); log:\n{}", self.logs());
            }
            if self.socket.exists()
                && let Ok(channel) = self.try_channel().await
                && let Ok(reply) = IdentityClient::new(channel)
                    .probe(csi::ProbeRequest {})
                    .await
                && reply.into_inner().ready == Some(true)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the driver did not become ready; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_channel(&self) -> Result<Channel, tonic::transport::Error> {
        let socket = self.socket.clone();
        Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    tokio::net::UnixStream::connect(socket)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            }))
            .await
    }

    pub async fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.try_channel().await.unwrap())
    }

    pub async fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.try_channel().await.unwrap())
    }

    /// Stop the driver: SIGKILL (a crash) or SIGTERM (graceful), and wait for it.
    pub fn stop(&mut self, kill: bool) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("driver running");
        let signal = if kill {
            rustix::process::Signal::KILL
        } else {
            rustix::process::Signal::TERM
        };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, signal);
        child.wait().unwrap()
    }

    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop(true);
        }
        self.spawn().await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// A line of the driver's /proc/<pid>/status in KiB (e.g. `VmHWM`, the peak resident set).
    pub fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The target kubelet would pass for a pod's volume (its parent directories exist, as kubelet
    /// creates them).
    pub fn target(&self, pod_uid: &str, volume: &str) -> PathBuf {
        let dir = self
            .kubelet
            .join("pods")
            .join(pod_uid)
            .join("volumes/kubernetes.io~csi")
            .join(volume);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("mount")
    }

    /// Create a pod; returns the uid the API server gave it (kubelet passes that uid in the volume
    /// context, and owner references must carry it or garbage collection removes the dependents).
    pub fn create_pod(&self, namespace: &str, name: &str) -> String {
        let pod = self
            .api
            .create_json(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"nodeName": NODE, "serviceAccountName": "default", "containers": [{"name": "app", "image": "app"}]}
            }))
            .unwrap();
        pod["metadata"]["uid"].as_str().unwrap().to_string()
    }

    pub fn create_class(
        &self,
        namespace: &str,
        name: &str,
        provider: &str,
        parameters: &[(&str, &str)],
    ) {
        let parameters: HashMap<&str, &str> = parameters.iter().copied().collect();
        self.api
            .create_json(json!({
                "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"provider": provider, "parameters": parameters}
            }))
            .unwrap();
    }

    /// A NodePublishVolume as kubelet sends it for an inline volume.
    pub fn publish_request(
        &self,
        volume_id: &str,
        target: &Path,
        class: &str,
        pod: (&str, &str, &str),
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
            volume_context: context,
            ..Default::default()
        }
    }

    /// Our tmpfs mounts below this driver's kubelet directory.
    /// The SecretProviderClassPodStatus of a pod's volume of `class`, as the API server holds it.
    pub fn pod_status(&self, namespace: &str, pod: &str, class: &str) -> Option<serde_json::Value> {
        self.api.get_json(
            "secrets-store.csi.x-k8s.io",
            "secretproviderclasspodstatuses",
            namespace,
            &secrets_store_k8s::pod_status_name(pod, namespace, class),
        )
    }

    pub fn our_mounts(&self) -> Vec<PathBuf> {
        secrets_store_publish::mounts::ours_under(&self.kubelet).unwrap()
    }

    /// Events recorded on a pod: (type, reason, message).
    pub fn events_for(&self, pod: &str) -> Vec<(String, String, String)> {
        self.api
            .list_json("", "events")
            .into_iter()
            .filter(|e| e["involvedObject"]["name"] == pod)
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (text("type"), text("reason"), text("message"))
            })
            .collect()
    }

    /// Wait (bounded) for a condition that another process makes true.
    pub async fn eventually(&self, what: &str, condition: impl FnMut() -> bool) {
        self.eventually_within(what, Duration::from_secs(20), condition)
            .await
    }

    /// [`Driver::eventually`] with another bound.
    pub async fn eventually_within(
        &self,
        what: &str,
        bound: Duration,
        mut condition: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + bound;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; driver log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(true);
        }
        // Never leave a tmpfs behind, whatever the test did.
        for mount in secrets_store_publish::mounts::ours_under(&self.kubelet).unwrap_or_default() {
            let _ = secrets_store_publish::mounts::unmount(&mount);
        }
    }
}

/// A gRPC channel to a unix socket, once something serves on it (bounded wait).
pub async fn unix_channel_when_ready(socket: &Path) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if socket.exists() {
            let path = socket.to_path_buf();
            let connected = Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        tokio::net::UnixStream::connect(path)
                            .await
                            .map(hyper_util::rt::TokioIo::new)
                    }
                }))
                .await;
            if let Ok(channel) = connected {
                return channel;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing served on {}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the driver's /readyz answers 200.
pub async fn readyz(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply).await;
    reply.starts_with("HTTP/1.1 200")
}
