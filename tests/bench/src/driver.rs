//! The real driver's resident size: the shipped `secrets-store-host serve` binary (`production`
//! profile) with azure.wasm loaded, an in-process fake API server, the emulator, and 100 volumes
//! published through its CSI socket onto real tmpfs mounts (root only) — the way kubelet drives it.
//! The driver process itself is the shared test harness (`secrets_store_test_support::driver`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use keyvault_emulator::RunningEmulator;
use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::csi::v1::node_client::NodeClient;
use secrets_store_publish::mounts;
use secrets_store_test_support::driver::{self as harness, DriverProcess};
use tokio::task::JoinSet;

use crate::fixture::{
    self, AZURE_ALLOWED_HOSTS, BenchError, CLASS, CLIENT_ID, CLIENT_SECRET, NAMESPACE, OBJECTS,
    OrFail, fail,
};
use crate::report::{Goal, Report};

const S: &str = "driver RSS with 100 volumes";
pub const VOLUMES: usize = 100;
const NODE: &str = "bench-node";
const READY_BOUND: Duration = Duration::from_secs(120);
const STOP_BOUND: Duration = Duration::from_secs(20);

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

/// The shared harness's driver with the benchmark's setup: the shipped binary, azure.wasm, the
/// emulator's CA and resolve overrides, a fresh artifact cache.
fn prepare(
    binary: PathBuf,
    api: &FakeApiServer,
    emulator: &RunningEmulator,
    dir: &Path,
) -> Result<DriverProcess, BenchError> {
    let hosts = AZURE_ALLOWED_HOSTS
        .iter()
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ca = dir.join("emulator-ca.pem");
    std::fs::write(&ca, emulator.ca_pem()).or_fail(S, "CA file")?;
    let mut args = vec![format!("--ca-file={}", ca.display())];
    args.extend(
        fixture::resolve_args(emulator)
            .into_iter()
            .map(|r| format!("--resolve={r}")),
    );
    let setup = harness::Setup {
        binary,
        node: NODE.into(),
        providers_yaml: format!(
            "providers:\n  azure:\n    module: azure.wasm\n    allowedHosts: [{hosts}]\n"
        ),
        modules: vec![("azure.wasm".into(), secrets_store_artifacts::AZURE.into())],
        module_bytes: Vec::new(),
        artifact_cache: None,
        args,
    };
    DriverProcess::prepare(&setup, api).or_fail(S, "preparing the driver")
}

fn publish_request(target: &Path, pod: usize, uid: &str) -> csi::NodePublishVolumeRequest {
    harness::publish_request(
        &format!("csi-bench-{pod}"),
        target,
        CLASS,
        (NAMESPACE, &fixture::pod_name(pod), uid),
        &[("clientid", CLIENT_ID), ("clientsecret", CLIENT_SECRET)],
    )
}

fn pid(driver: &DriverProcess) -> Result<u32, BenchError> {
    match driver.pid() {
        0 => Err(fail(S, "the driver is not running")),
        pid => Ok(pid),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Fail early, before anything is built or started, when tmpfs volumes cannot be mounted.
pub fn require_root() -> Result<(), BenchError> {
    secrets_store_test_support::check_root(
        "mounts a real tmpfs per volume through the driver (run the benchmark as root, e.g. \
         `sudo -E cargo run --release -p secrets-store-bench`)",
    )
    .map_err(|message| fail(S, message))
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
    let dir = tempfile::tempdir().or_fail(S, "temp dir")?;
    let mut driver = prepare(binary, &api, emulator, dir.path())?;

    // First start: the module is compiled (and stored in the artifact cache).
    driver.start(READY_BOUND).await.or_fail(S, "starting")?;
    let (idle_compiled, _) = crate::proc_status_kib(pid(&driver)?).or_fail(S, "/proc status")?;
    driver
        .stop_gracefully(STOP_BOUND)
        .await
        .or_fail(S, "stopping")?;
    // Second start, as after a restart: the module comes from the artifact cache.
    driver.start(READY_BOUND).await.or_fail(S, "restarting")?;
    let (idle, _) = crate::proc_status_kib(pid(&driver)?).or_fail(S, "/proc status")?;

    let parameters = fixture::class_parameters();
    harness::create_class(
        &api,
        NAMESPACE,
        CLASS,
        "azure",
        parameters.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .or_fail(S, "creating the SecretProviderClass")?;
    let mut requests = Vec::with_capacity(VOLUMES);
    for pod in 0..VOLUMES {
        let uid = harness::create_pod(&api, NAMESPACE, &fixture::pod_name(pod), NODE)
            .or_fail(S, "creating a pod")?;
        let target = driver
            .target(&fixture::pod_uid(pod), "secrets")
            .or_fail(S, "volume directory")?;
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
                    driver.logs_tail(30)
                ),
            )
        })?;
    }
    let publish_time = started.elapsed();
    let [rss, hwm, anon, file] =
        crate::proc_status_fields(pid(&driver)?, ["VmRSS:", "VmHWM:", "RssAnon:", "RssFile:"])
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
    driver
        .stop_gracefully(STOP_BOUND)
        .await
        .or_fail(S, "stopping")?;
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
