//! The real driver's resident size: the shipped `secrets-store-host serve` binary (`production`
//! profile) with azure.wasm loaded, an in-process fake API server, the emulator, and 100 volumes
//! published through its CSI socket onto real tmpfs mounts (root only) — the way kubelet drives it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use keyvault_emulator::RunningEmulator;
use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::csi::v1::identity_client::IdentityClient;
use secrets_store_proto::csi::v1::node_client::NodeClient;
use secrets_store_publish::mounts;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::fixture::{
    self, AZURE_ALLOWED_HOSTS, BenchError, CLASS, CLIENT_ID, CLIENT_SECRET, NAMESPACE, OBJECTS,
    OrFail, fail,
};
use crate::report::{Goal, Report};

const S: &str = "driver RSS with 100 volumes";
pub const VOLUMES: usize = 100;
const NODE: &str = "bench-node";

/// Build the driver binary as it ships (the `production` profile) with the cargo that runs this
/// benchmark (same target directory); returns the executable's path.
pub fn build_driver() -> Result<PathBuf, BenchError> {
    const B: &str = "build secrets-store-host";
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "bench: building the driver (cargo build --profile production -p secrets-store-host) …"
    );
    let output = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            "production",
            "-p",
            "secrets-store-host",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .or_fail(B, &format!("running {}", cargo.to_string_lossy()))?;
    if !output.status.success() {
        return Err(fail(B, format!("cargo build failed ({})", output.status)));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == "secrets-store-host"
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| fail(B, "cargo did not report the secrets-store-host executable"))
}

pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// The driver process and its directories; dropping it kills the driver and unmounts whatever
/// tmpfs it left below its kubelet directory.
struct Driver {
    binary: PathBuf,
    /// Holds the directories until the driver is gone.
    _root: tempfile::TempDir,
    kubelet: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for mount in mounts::ours_under(&self.kubelet).unwrap_or_default() {
            let _ = mounts::unmount(&mount);
        }
    }
}

impl Driver {
    fn new(
        binary: PathBuf,
        api: &FakeApiServer,
        emulator: &RunningEmulator,
    ) -> Result<Driver, BenchError> {
        let root = tempfile::tempdir().or_fail(S, "temp dir")?;
        let kubelet = root.path().join("kubelet");
        let providers = root.path().join("providers");
        let legacy = root.path().join("legacy-providers");
        for dir in [&kubelet.join("pods"), &providers, &legacy] {
            std::fs::create_dir_all(dir).or_fail(S, "creating directories")?;
        }
        let hosts = AZURE_ALLOWED_HOSTS
            .iter()
            .map(|h| format!("{h:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            providers.join("providers.yaml"),
            format!("providers:\n  azure:\n    module: azure.wasm\n    allowedHosts: [{hosts}]\n"),
        )
        .or_fail(S, "providers.yaml")?;
        std::fs::copy(secrets_store_artifacts::AZURE, providers.join("azure.wasm"))
            .or_fail(S, "copying azure.wasm")?;
        let kubeconfig = root.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig).or_fail(S, "kubeconfig")?;
        let ca = root.path().join("emulator-ca.pem");
        std::fs::write(&ca, emulator.ca_pem()).or_fail(S, "CA file")?;
        // Created by the driver with its required mode (0700).
        let cache = root.path().join("artifact-cache");
        let socket = root.path().join("plugin/csi.sock");
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .or_fail(S, "a free port for metrics")?;
        let mut args = vec![
            "serve".to_string(),
            format!("--endpoint=unix://{}", socket.display()),
            format!("--nodeid={NODE}"),
            format!("--providers-dir={}", providers.display()),
            format!("--provider-volume={}", legacy.display()),
            format!(
                "--additional-provider-volume-paths={}",
                root.path().join("none").display()
            ),
            format!("--kubelet-dir={}", kubelet.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--metrics-addr={metrics}"),
            format!("--artifact-cache={}", cache.display()),
            format!("--ca-file={}", ca.display()),
        ];
        args.extend(
            fixture::resolve_args(emulator)
                .into_iter()
                .map(|r| format!("--resolve={r}")),
        );
        let log = root.path().join("driver.log");
        Ok(Driver {
            binary,
            _root: root,
            kubelet,
            socket,
            log,
            args,
            child: None,
        })
    }

    fn logs_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn start(&mut self) -> Result<(), BenchError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .or_fail(S, "driver log")?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .or_fail(S, &format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(fail(
                    S,
                    format!(
                        "the driver exited early ({status}); log:\n{}",
                        self.logs_tail()
                    ),
                ));
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
                return Err(fail(
                    S,
                    format!(
                        "the driver did not become ready in 120 s; log:\n{}",
                        self.logs_tail()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
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

    fn pid(&self) -> Result<u32, BenchError> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| fail(S, "the driver is not running"))
    }

    /// SIGTERM and a bounded wait for a graceful exit.
    async fn stop(&mut self) -> Result<(), BenchError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(fail(
                        S,
                        format!(
                            "the driver exited with {status} on SIGTERM; log:\n{}",
                            self.logs_tail()
                        ),
                    ));
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(S, "the driver did not stop within 20 s of SIGTERM"));
                }
            }
        }
    }

    /// The target kubelet passes for a pod's volume; kubelet creates its parent directories.
    fn target(&self, pod: usize) -> Result<PathBuf, BenchError> {
        let dir = self
            .kubelet
            .join("pods")
            .join(fixture::pod_uid(pod))
            .join("volumes/kubernetes.io~csi/secrets");
        std::fs::create_dir_all(&dir).or_fail(S, "volume directory")?;
        Ok(dir.join("mount"))
    }
}

fn publish_request(target: &Path, pod: usize, uid: &str) -> csi::NodePublishVolumeRequest {
    let context: HashMap<String, String> = [
        ("secretProviderClass", CLASS.to_string()),
        ("csi.storage.k8s.io/pod.name", fixture::pod_name(pod)),
        ("csi.storage.k8s.io/pod.namespace", NAMESPACE.to_string()),
        ("csi.storage.k8s.io/pod.uid", uid.to_string()),
        ("csi.storage.k8s.io/serviceAccount.name", "default".into()),
        ("csi.storage.k8s.io/ephemeral", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    csi::NodePublishVolumeRequest {
        volume_id: format!("csi-bench-{pod}"),
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
        secrets: [
            ("clientid".to_string(), CLIENT_ID.to_string()),
            ("clientsecret".to_string(), CLIENT_SECRET.to_string()),
        ]
        .into_iter()
        .collect(),
        volume_context: context,
        ..Default::default()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Fail early, before anything is built or started, when tmpfs volumes cannot be mounted.
pub fn require_root() -> Result<(), BenchError> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(fail(
            S,
            "the driver mounts a real tmpfs per volume, which needs root; run the benchmark as root \
             (for example `sudo -E cargo run --release -p secrets-store-bench`)",
        ))
    }
}

pub async fn rss_100_volumes(
    binary: PathBuf,
    servers: &tokio::runtime::Handle,
    emulator: &RunningEmulator,
    report: &mut Report,
) -> Result<(), BenchError> {
    require_root()?;
    let api = servers
        .spawn(FakeApiServer::start())
        .await
        .or_fail(S, "starting the fake API server")?
        .or_fail(S, "starting the fake API server")?;
    let mut driver = Driver::new(binary, &api, emulator)?;

    // First start: the module is compiled (and stored in the artifact cache).
    driver.start().await?;
    let (idle_compiled, _) = crate::proc_status_kib(driver.pid()?).or_fail(S, "/proc status")?;
    driver.stop().await?;
    // Second start, as after a restart: the module comes from the artifact cache.
    driver.start().await?;
    let (idle, _) = crate::proc_status_kib(driver.pid()?).or_fail(S, "/proc status")?;

    let parameters: serde_json::Map<String, serde_json::Value> = fixture::class_parameters()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    api.create_json(serde_json::json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
        "metadata": {"name": CLASS, "namespace": NAMESPACE},
        "spec": {"provider": "azure", "parameters": parameters}
    }))
    .or_fail(S, "creating the SecretProviderClass")?;
    let mut requests = Vec::with_capacity(VOLUMES);
    for pod in 0..VOLUMES {
        let created = api
            .create_json(serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": fixture::pod_name(pod), "namespace": NAMESPACE},
                "spec": {"nodeName": NODE, "serviceAccountName": "default",
                         "containers": [{"name": "app", "image": "app"}]}
            }))
            .or_fail(S, "creating a pod")?;
        let uid = created["metadata"]["uid"]
            .as_str()
            .ok_or_else(|| fail(S, "the fake API server gave the pod no uid"))?
            .to_string();
        let target = driver.target(pod)?;
        requests.push((target.clone(), publish_request(&target, pod, &uid)));
    }

    let channel = driver
        .channel()
        .await
        .or_fail(S, "connecting to the CSI socket")?;
    let node = NodeClient::new(channel);
    // Kubelet publishes the volumes of pods scheduled together at the same time.
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (_, request) in &requests {
        let mut node = node.clone();
        let request = request.clone();
        set.spawn(async move { node.node_publish_volume(request).await });
    }
    while let Some(result) = set.join_next().await {
        result.or_fail(S, "publish task")?.map_err(|status| {
            fail(
                S,
                format!(
                    "NodePublishVolume failed: {status}; driver log:\n{}",
                    driver.logs_tail()
                ),
            )
        })?;
    }
    let publish_time = started.elapsed();
    let [rss, hwm, anon, file] =
        crate::proc_status_fields(driver.pid()?, ["VmRSS:", "VmHWM:", "RssAnon:", "RssFile:"])
            .or_fail(S, "/proc status")?;

    let mounted = mounts::ours_under(&driver.kubelet).or_fail(S, "mount table")?;
    if mounted.len() != VOLUMES {
        return Err(fail(
            S,
            format!(
                "{} tmpfs volumes mounted, expected {VOLUMES}",
                mounted.len()
            ),
        ));
    }
    for (target, _) in &requests {
        let files = std::fs::read_dir(target)
            .or_fail(S, "reading a volume")?
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
            .count();
        if files != OBJECTS {
            return Err(fail(
                S,
                format!(
                    "{} holds {files} files, expected {OBJECTS}",
                    target.display()
                ),
            ));
        }
    }

    let mut node = node;
    for (target, request) in &requests {
        node.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: request.volume_id.clone(),
            target_path: target.display().to_string(),
        })
        .await
        .map_err(|status| fail(S, format!("NodeUnpublishVolume failed: {status}")))?;
    }
    let left = mounts::ours_under(&driver.kubelet).or_fail(S, "mount table")?;
    if !left.is_empty() {
        return Err(fail(
            S,
            format!(
                "{} tmpfs mounts left after unpublishing everything",
                left.len()
            ),
        ));
    }
    driver.stop().await?;
    drop(driver);

    report.value(
        "rss_anon_mib_100_volumes",
        mib(anon),
        "MiB",
        "of which private memory (RssAnon: heap, stacks, the loaded module's machine code, instances)",
    );
    report.value(
        "rss_file_mib_100_volumes",
        mib(file),
        "MiB",
        "of which pages of the executable and shared libraries (RssFile: clean, shared, reclaimable)",
    );
    report.value(
        "rss_mib_100_volumes",
        mib(rss),
        "MiB",
        &format!(
            "VmRSS of the shipped (production profile) `secrets-store-host serve` with azure.wasm loaded (from its artifact cache) and {VOLUMES} volumes published through its CSI socket"
        ),
    );
    report.goal("rss_mib_100_volumes", Goal::AtMost(24.0), "≤ 24 MiB");
    report.value(
        "rss_hwm_mib_100_volumes",
        mib(hwm),
        "MiB",
        "VmHWM (peak resident size) of that driver process",
    );
    report.value(
        "driver_rss_mib_idle",
        mib(idle),
        "MiB",
        "VmRSS of that driver when ready, before any volume",
    );
    report.value(
        "driver_rss_mib_idle_after_compile",
        mib(idle_compiled),
        "MiB",
        "VmRSS of the driver's first start (empty artifact cache: azure.wasm compiled at start), when ready",
    );
    report.value(
        "driver_publish_100_volumes_ms",
        crate::stats::ms(publish_time),
        "ms",
        "wall time of the 100 concurrent NodePublishVolume calls (tmpfs + mount + write + pod status)",
    );
    Ok(())
}
