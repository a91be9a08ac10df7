//! The real driver for the CSI and reliability tests: the shared harness
//! (`secrets_store_test_support::driver`) with this crate's binary, an in-process fake API server
//! it owns, JSON logs at `--v=3`, and a module cache shared by every test's driver. Tmpfs mounts
//! need root: [`Driver::start`] says so when the suite is not run as root.

#![allow(dead_code, clippy::unwrap_used)] // Test support: a failed unwrap is a failed test.

pub mod hold;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::csi::v1::identity_client::IdentityClient;
use secrets_store_proto::csi::v1::node_client::NodeClient;
use secrets_store_test_support::driver::{self as harness, DriverProcess};
use tonic::transport::Channel;

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
    process: DriverProcess,
    pub api: FakeApiServer,
}

/// The directories and the metrics address, as fields (`driver.kubelet`, `driver.metrics`, …).
impl std::ops::Deref for Driver {
    type Target = DriverProcess;
    fn deref(&self) -> &DriverProcess {
        &self.process
    }
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

/// How long a driver may take to answer Probe with ready.
const READY_BOUND: Duration = Duration::from_secs(120);

impl Driver {
    pub async fn start(setup: Setup) -> Driver {
        let api = FakeApiServer::start().await.unwrap();
        Self::start_with(setup, api).await
    }

    pub async fn start_with(setup: Setup, api: FakeApiServer) -> Driver {
        secrets_store_test_support::require_root("mounts tmpfs volumes through the driver");
        let mut args = vec!["--log-format=json".to_string()];
        // A test may ask for another verbosity; the flag may be given only once.
        if !setup.args.iter().any(|a| a.starts_with("--v=")) {
            args.push("--v=3".into());
        }
        args.extend(setup.args);
        let setup = harness::Setup {
            binary: BINARY.into(),
            node: NODE.into(),
            providers_yaml: setup.providers_yaml,
            modules: setup.modules,
            module_bytes: setup.module_bytes,
            artifact_cache: Some(artifact_cache()),
            args,
        };
        let process = DriverProcess::prepare(&setup, &api).unwrap();
        let mut driver = Driver { process, api };
        driver.spawn().await;
        driver
    }

    async fn spawn(&mut self) {
        if let Err(e) = self.process.start(READY_BOUND).await {
            panic!("{e}");
        }
    }

    async fn try_channel(&self) -> Result<Channel, tonic::transport::Error> {
        self.process.channel().await
    }

    pub async fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.try_channel().await.unwrap())
    }

    pub async fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.try_channel().await.unwrap())
    }

    /// Stop the driver: SIGKILL (a crash) or SIGTERM (graceful), and wait for it.
    pub fn stop(&mut self, kill: bool) -> std::process::ExitStatus {
        let signal = if kill {
            rustix::process::Signal::KILL
        } else {
            rustix::process::Signal::TERM
        };
        self.process.signal_and_wait(signal).unwrap()
    }

    pub async fn restart(&mut self) {
        if self.process.is_running() {
            self.stop(true);
        }
        self.spawn().await;
    }

    /// The target kubelet would pass for a pod's volume (its parent directories exist, as kubelet
    /// creates them).
    pub fn target(&self, pod_uid: &str, volume: &str) -> PathBuf {
        self.process.target(pod_uid, volume).unwrap()
    }

    /// Create a pod; returns the uid the API server gave it (kubelet passes that uid in the volume
    /// context, and owner references must carry it or garbage collection removes the dependents).
    pub fn create_pod(&self, namespace: &str, name: &str) -> String {
        harness::create_pod(&self.api, namespace, name, NODE).unwrap()
    }

    pub fn create_class(
        &self,
        namespace: &str,
        name: &str,
        provider: &str,
        parameters: &[(&str, &str)],
    ) {
        harness::create_class(
            &self.api,
            namespace,
            name,
            provider,
            parameters.iter().copied(),
        )
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
        harness::publish_request(volume_id, target, class, pod, &[])
    }

    /// The SecretProviderClassPodStatus of a pod's volume of `class`, as the API server holds it.
    pub fn pod_status(&self, namespace: &str, pod: &str, class: &str) -> Option<serde_json::Value> {
        self.api.get_json(
            "secrets-store.csi.x-k8s.io",
            "secretproviderclasspodstatuses",
            namespace,
            &secrets_store_k8s::pod_status_name(pod, namespace, class),
        )
    }

    /// Our tmpfs mounts below this driver's kubelet directory.
    pub fn our_mounts(&self) -> Vec<PathBuf> {
        self.process.our_mounts().unwrap()
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
        let deadline = std::time::Instant::now() + bound;
        while !condition() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; driver log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A gRPC channel to a unix socket, once something serves on it (bounded wait).
pub async fn unix_channel_when_ready(socket: &Path) -> Channel {
    secrets_store_test_support::uds::channel_when_ready(socket, Duration::from_secs(60)).await
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
