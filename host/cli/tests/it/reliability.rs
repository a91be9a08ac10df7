//! Reliability and security proofs against the real driver binary (`secrets-store-host serve` on a
//! unix socket, real tmpfs mounts, the fake API server, azure.wasm against the Key Vault emulator):
//! a store that fails at random, a SIGKILL in the middle of a republish wave, a burst of 200
//! publishes, hostile input, and a search of everything the driver says for the secrets it handles.
//!
//! Payloads are built so that a mix is visible: every object's value carries the store generation
//! it was set in and its own name, so a target whose files do not all share one generation, or
//! whose file holds another object's value, is caught. Volumes are read the way a container reads
//! them, through the visible names, between two reads of `..data` that agree.
//!
//! Figures (calls, faults survived, wall time, peak RSS) are printed; run with `--nocapture` to see
//! them. Timings are never asserted.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use crate::driver::{Driver, Setup};
use base64::Engine as _;
use keyvault_emulator::{
    Config, Emulator, Fault, FaultPlan, FaultRule, FaultScope, RunningEmulator, VaultSpec,
};
use secrets_store_artifacts as guests;
use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::csi::v1::node_client::NodeClient;
use secrets_store_publish::mounts::{self, MountState};
use tonic::Code;
use tonic::transport::Channel;

const NS: &str = "default";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const APP_ID: &str = "reliability-app";
const APP_SECRET: &str = "Client-Secret-7a1c9e-reliability";
const SPC_GROUP: &str = "secrets-store.csi.x-k8s.io";
const SPC_STATUSES: &str = "secretproviderclasspodstatuses";

// ------------------------------------------------------------------------------------------------
// Shared helpers

/// The Key Vault emulator and the CA file the driver trusts for it.
struct Store {
    emulator: RunningEmulator,
    ca: tempfile::NamedTempFile,
}

impl Store {
    async fn start(config: Config) -> Store {
        let emulator = Emulator::start(config).await.unwrap();
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), emulator.ca_pem()).unwrap();
        emulator.add_app(TENANT, APP_ID, APP_SECRET);
        Store { emulator, ca }
    }

    /// A driver setup with azure.wasm (and echo.wasm) pointed at the emulator. Call after adding
    /// the vaults: the resolve overrides list every vault's host.
    fn setup(&self, extra_args: &[&str]) -> Setup {
        let mut args = vec![format!("--ca-file={}", self.ca.path().display())];
        for (host, port, addr) in self.emulator.resolve_overrides() {
            args.push(format!("--resolve={host}:{port}={addr}"));
        }
        args.extend(extra_args.iter().map(|a| a.to_string()));
        Setup {
            providers_yaml: azure_providers_yaml(""),
            modules: vec![
                ("azure.wasm".into(), guests::AZURE.into()),
                ("echo.wasm".into(), guests::ECHO.into()),
            ],
            module_bytes: vec![],
            args,
        }
    }
}

fn azure_providers_yaml(extra: &str) -> String {
    format!(
        "providers:\n  azure:\n    module: azure.wasm\n    allowedHosts: [\"https://*.vault.azure.net\", \"https://login.microsoftonline.com\"]\n  echo:\n    module: echo.wasm\n{extra}"
    )
}

/// The `objects` parameter: one YAML document per object, fields as given (values verbatim).
fn objects_yaml(objects: &[Vec<(&str, String)>]) -> String {
    let mut yaml = String::from("array:\n");
    for fields in objects {
        yaml.push_str("  - |\n");
        for (key, value) in fields {
            yaml.push_str(&format!("    {key}: {value}\n"));
        }
    }
    yaml
}

/// A secret object written to `path` (an alias when it differs from the name).
fn secret_object(name: &str, path: &str) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("objectName", name.to_string()),
        ("objectType", "secret".to_string()),
    ];
    if path != name {
        fields.push(("objectAlias", path.to_string()));
    }
    fields
}

fn azure_class(driver: &Driver, name: &str, vault: &str, objects: &str) {
    driver.create_class(
        NS,
        name,
        "azure",
        &[
            ("keyvaultName", vault),
            ("tenantID", TENANT),
            ("objects", objects),
        ],
    );
}

/// The service principal's credentials, as kubelet passes a nodePublishSecretRef.
fn with_credentials(
    mut request: csi::NodePublishVolumeRequest,
    client_secret: &str,
) -> csi::NodePublishVolumeRequest {
    request.secrets.insert("clientid".into(), APP_ID.into());
    request
        .secrets
        .insert("clientsecret".into(), client_secret.into());
    request
}

fn unpublish_request(volume_id: &str, target: &Path) -> csi::NodeUnpublishVolumeRequest {
    csi::NodeUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target.display().to_string(),
    }
}

/// A value that names its object and the store generation it was set in.
fn versioned_value(object: &str, generation: u64) -> String {
    format!("gen{generation}:{object}:s3cr3t-{:x}", object.len() * 7919)
}

/// The generation every file of a volume comes from, or why the files are not one consistent
/// payload of the expected objects. `expected`: file path → object name.
fn payload_generation(
    files: &BTreeMap<String, String>,
    expected: &BTreeMap<String, String>,
) -> Result<u64, String> {
    let paths: BTreeSet<&String> = files.keys().collect();
    let want: BTreeSet<&String> = expected.keys().collect();
    if paths != want {
        return Err(format!("files {paths:?}, expected {want:?}"));
    }
    let mut generations = BTreeSet::new();
    for (path, contents) in files {
        let mut parts = contents.splitn(3, ':');
        let generation = parts
            .next()
            .and_then(|g| g.strip_prefix("gen"))
            .and_then(|g| g.parse::<u64>().ok());
        let object = parts.next();
        match (generation, object) {
            (Some(generation), Some(object)) if object == expected[path] => {
                generations.insert(generation);
            }
            _ => return Err(format!("{path} holds a value of another object")),
        }
    }
    match generations.len() {
        1 => Ok(generations.into_iter().next().unwrap()),
        _ => Err(format!(
            "files of generations {generations:?} are mixed in one volume"
        )),
    }
}

/// What a container sees in a volume.
#[derive(Debug)]
enum View {
    /// No payload (nothing mounted, or not written yet).
    Absent,
    /// A swap, mount or unmount happened while reading: read again.
    Torn,
    /// The files, path → contents.
    Files(BTreeMap<String, String>),
    /// `..data` stayed the same but the files could not be read: a broken volume.
    Broken(String),
}

/// Reads a volume through its visible names, as a container does, between two reads of `..data`:
/// when both agree no swap happened in between (payload directory names are never reused), so
/// the files read are one payload.
fn view(target: &Path) -> View {
    let data = target.join("..data");
    let Ok(before) = std::fs::read_link(&data) else {
        return View::Absent;
    };
    let mut files = BTreeMap::new();
    let result = read_visible(target, "", &mut files);
    match std::fs::read_link(&data) {
        Ok(after) if after == before => match result {
            Ok(()) => View::Files(files),
            Err(e) => View::Broken(e),
        },
        _ => View::Torn,
    }
}

fn read_visible(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // The writer's own entries (`..data`, payload directories) are not part of what a
        // container reads.
        if prefix.is_empty() && name.starts_with("..") {
            continue;
        }
        let path = entry.path();
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            read_visible(&path, &relative, files)?;
        } else {
            let contents =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.insert(relative, contents);
        }
    }
    Ok(())
}

/// The files of a volume no one is changing right now (anything but a clean payload fails).
fn settled_files(target: &Path) -> BTreeMap<String, String> {
    match view(target) {
        View::Files(files) => files,
        other => panic!("{}: expected a payload, found {other:?}", target.display()),
    }
}

/// Entries the writer leaves only when interrupted: `..`-prefixed names other than `..data` and
/// the payload directory it points to.
fn leftovers(target: &Path) -> Vec<String> {
    let live = std::fs::read_link(target.join("..data"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::read_dir(target)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("..") && n != "..data" && *n != live)
                .collect()
        })
        .unwrap_or_default()
}

/// Deterministic pseudo-random numbers (splitmix64): the same seed gives the same call sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs every request at once on its own task (one HTTP/2 connection, as kubelet has).
async fn publish_all(
    node: &NodeClient<Channel>,
    requests: &[csi::NodePublishVolumeRequest],
) -> Vec<Result<(), tonic::Status>> {
    let handles: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let mut node = node.clone();
            tokio::spawn(async move { node.node_publish_volume(request).await.map(|_| ()) })
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}

// ------------------------------------------------------------------------------------------------
// 1. Faults from the store

const FAULT_VAULT: &str = "kv-faults";
const FAULT_OBJECTS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
const FAULT_VOLUMES: usize = 20;
const FAULT_WORKERS: usize = 8;
const CALLS_PER_WORKER: usize = 40;
/// The store rotates every object after this many completed calls.
const ROTATE_EVERY: u64 = 25;

/// The fault run's classes: (object, file path) per class. Nested aliases and several objects per
/// class make a torn or mixed payload visible.
fn fault_classes() -> Vec<Vec<(&'static str, &'static str)>> {
    vec![
        vec![("alpha", "alpha"), ("beta", "beta")],
        vec![
            ("alpha", "alpha"),
            ("beta", "beta"),
            ("gamma", "nested/gamma"),
        ],
        vec![
            ("delta", "delta"),
            ("epsilon", "epsilon"),
            ("alpha", "alpha"),
        ],
        vec![
            ("beta", "beta"),
            ("zeta", "zeta"),
            ("delta", "deep/er/delta"),
        ],
    ]
}

struct FaultVolume {
    volume_id: String,
    class: String,
    target: PathBuf,
    /// File path → object name.
    expected: BTreeMap<String, String>,
    request: csi::NodePublishVolumeRequest,
    state: tokio::sync::Mutex<VolumeState>,
}

#[derive(Default)]
struct VolumeState {
    mounted: bool,
    generation: u64,
}

#[derive(Default)]
struct Tally {
    publishes: u64,
    republishes: u64,
    refreshed: u64,
    kept_previous: u64,
    unpublishes: u64,
    failures: BTreeMap<String, u64>,
    samples: BTreeMap<String, String>,
}

#[derive(Default, Debug)]
struct ReaderStats {
    snapshots: u64,
    torn: u64,
    absent: u64,
    violations: Vec<String>,
}

/// A failed first publish says which class failed and why, with a code that says a retry may help.
fn check_fault_failure(status: &tonic::Status, class: &str) {
    let message = status.message();
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
        ),
        "a store fault is retryable, not {:?}: {message}",
        status.code()
    );
    assert!(
        message.contains(&format!("SecretProviderClass {NS}/{class}")),
        "names the class: {message}"
    );
    assert!(message.contains("provider azure"), "{message}");
    assert!(
        message.contains("secret/") || message.contains("token request"),
        "names the object or the token request that failed: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_faults_never_leave_a_mixed_or_stale_volume() {
    let store = Store::start(Config::default()).await;
    store
        .emulator
        .add_vault(VaultSpec::new(FAULT_VAULT, TENANT))
        .unwrap();
    for object in FAULT_OBJECTS {
        store
            .emulator
            .set_secret(FAULT_VAULT, object, &versioned_value(object, 1), None)
            .unwrap();
    }
    let driver =
        Driver::start(store.setup(&["--enable-secret-rotation", "--rotation-poll-interval=0s"]))
            .await;
    let classes = fault_classes();
    for (k, objects) in classes.iter().enumerate() {
        let yaml = objects_yaml(
            &objects
                .iter()
                .map(|(name, path)| {
                    let mut fields = secret_object(name, path);
                    if *name == "epsilon" {
                        fields.push(("filePermission", "\"0440\"".into()));
                    }
                    fields
                })
                .collect::<Vec<_>>(),
        );
        azure_class(&driver, &format!("mix-{k}"), FAULT_VAULT, &yaml);
    }
    let volumes: Arc<Vec<FaultVolume>> = Arc::new(
        (0..FAULT_VOLUMES)
            .map(|i| {
                let pod = format!("fault-{i}");
                let uid = driver.create_pod(NS, &pod);
                let class = format!("mix-{}", i % classes.len());
                let target = driver.target(&uid, "secrets");
                let volume_id = format!("vol-fault-{i}");
                let request = with_credentials(
                    driver.publish_request(&volume_id, &target, &class, (NS, &pod, &uid)),
                    APP_SECRET,
                );
                FaultVolume {
                    volume_id,
                    class,
                    target,
                    expected: classes[i % classes.len()]
                        .iter()
                        .map(|(name, path)| (path.to_string(), name.to_string()))
                        .collect(),
                    request,
                    state: Default::default(),
                }
            })
            .collect(),
    );

    // Faults at random on a fixed seed, on every request to the vault and to AAD: latency, 429 with
    // Retry-After, 503 (retried by the provider), 500 (not retried) and dropped connections.
    store.emulator.reseed_faults(0x5eed_f00d);
    store.emulator.set_faults(
        FaultPlan::none()
            .with_rule(FaultRule {
                scope: FaultScope::Any,
                jitter: Duration::from_millis(25),
                throttle_rate: 0.02,
                retry_after_secs: 1,
                server_error_rate: 0.05,
                server_error_status: 503,
                drop_rate: 0.04,
                ..FaultRule::default()
            })
            .with_rule(FaultRule {
                scope: FaultScope::DataPlaneGet,
                server_error_rate: 0.02,
                server_error_status: 500,
                ..FaultRule::default()
            }),
    );
    store.emulator.reset_counters();

    // The store's generation. Calls hold it shared; a rotation takes it exclusively, so every call
    // sees one generation of the store from start to end and any mix in a volume is the driver's.
    let generation = Arc::new(tokio::sync::RwLock::new(1u64));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (done_tx, mut done_rx) = tokio::sync::watch::channel((0u64, false));
    let done_tx = Arc::new(done_tx);
    let store = Arc::new(store);

    // A reader that keeps looking at every volume while the calls run.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let watched: Vec<(PathBuf, BTreeMap<String, String>)> = volumes
            .iter()
            .map(|v| (v.target.clone(), v.expected.clone()))
            .collect();
        std::thread::spawn(move || {
            let mut stats = ReaderStats::default();
            let mut newest = vec![0u64; watched.len()];
            while !stop.load(Ordering::Relaxed) {
                for (i, (target, expected)) in watched.iter().enumerate() {
                    match view(target) {
                        View::Files(files) => match payload_generation(&files, expected) {
                            Ok(generation) => {
                                stats.snapshots += 1;
                                if generation < newest[i] {
                                    stats.violations.push(format!(
                                        "{}: went back from generation {} to {generation}",
                                        target.display(),
                                        newest[i]
                                    ));
                                }
                                newest[i] = newest[i].max(generation);
                            }
                            Err(e) => stats.violations.push(format!("{}: {e}", target.display())),
                        },
                        View::Torn => stats.torn += 1,
                        View::Absent => stats.absent += 1,
                        View::Broken(e) => stats
                            .violations
                            .push(format!("{}: unreadable payload: {e}", target.display())),
                    }
                }
                // Pacing only: the reader shares two cores with the driver and the workers.
                std::thread::sleep(Duration::from_millis(2));
            }
            stats
        })
    };

    let rotator = {
        let generation = generation.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let mut rotations = 0u64;
            loop {
                let threshold = (rotations + 1) * ROTATE_EVERY;
                let finished = done_rx
                    .wait_for(|(calls, finished)| *finished || *calls >= threshold)
                    .await
                    .unwrap()
                    .1;
                if finished {
                    return rotations;
                }
                let mut current = generation.write().await;
                *current += 1;
                for object in FAULT_OBJECTS {
                    store
                        .emulator
                        .set_secret(
                            FAULT_VAULT,
                            object,
                            &versioned_value(object, *current),
                            None,
                        )
                        .unwrap();
                }
                rotations += 1;
            }
        })
    };

    let started = Instant::now();
    let node = driver.node().await;
    let workers: Vec<_> = (0..FAULT_WORKERS)
        .map(|w| {
            let volumes = volumes.clone();
            let generation = generation.clone();
            let tally = tally.clone();
            let done_tx = done_tx.clone();
            let mut node = node.clone();
            tokio::spawn(async move {
                let mut rng = Rng(0xfa17 + w as u64);
                for _ in 0..CALLS_PER_WORKER {
                    let volume = &volumes[rng.below(volumes.len())];
                    let mut state = volume.state.lock().await;
                    let store_generation = generation.read().await;
                    let now = *store_generation;
                    if !state.mounted || rng.below(10) < 7 {
                        let first = !state.mounted;
                        match node.node_publish_volume(volume.request.clone()).await {
                            Ok(_) => {
                                let files = settled_files(&volume.target);
                                let got = payload_generation(&files, &volume.expected)
                                    .unwrap_or_else(|e| panic!("{}: {e}", volume.target.display()));
                                let mut tally = tally.lock();
                                if first {
                                    assert_eq!(got, now, "a first mount holds the store's values");
                                    tally.publishes += 1;
                                } else {
                                    assert!(
                                        got >= state.generation && got <= now,
                                        "a republish holds the previous or the current values"
                                    );
                                    tally.republishes += 1;
                                    if got == now {
                                        tally.refreshed += 1;
                                    } else {
                                        tally.kept_previous += 1;
                                    }
                                }
                                state.mounted = true;
                                state.generation = got;
                            }
                            Err(status) => {
                                assert!(
                                    first,
                                    "a republish answers OK even when its refresh fails: {status:?}"
                                );
                                check_fault_failure(&status, &volume.class);
                                assert!(
                                    !volume.target.exists(),
                                    "a failed first mount leaves no target"
                                );
                                assert_eq!(
                                    mounts::state(&volume.target).unwrap(),
                                    MountState::None
                                );
                                let code = format!("{:?}", status.code());
                                let mut tally = tally.lock();
                                *tally.failures.entry(code.clone()).or_default() += 1;
                                tally
                                    .samples
                                    .entry(code)
                                    .or_insert_with(|| status.message().to_string());
                            }
                        }
                    } else {
                        node.node_unpublish_volume(unpublish_request(
                            &volume.volume_id,
                            &volume.target,
                        ))
                        .await
                        .unwrap_or_else(|s| panic!("unpublish failed: {s:?}"));
                        assert!(!volume.target.exists(), "unpublish removes the target");
                        state.mounted = false;
                        tally.lock().unpublishes += 1;
                    }
                    drop(store_generation);
                    drop(state);
                    done_tx.send_modify(|(calls, _)| *calls += 1);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    done_tx.send_modify(|(_, finished)| *finished = true);
    let rotations = rotator.await.unwrap();
    let counters = store.emulator.counters();

    // Fault-free: every volume is published (a republish refreshes it) and then holds exactly the
    // store's current values.
    store.emulator.set_faults(FaultPlan::none());
    let current = *generation.read().await;
    let requests: Vec<_> = volumes.iter().map(|v| v.request.clone()).collect();
    for (volume, result) in volumes.iter().zip(publish_all(&node, &requests).await) {
        result.unwrap_or_else(|s| panic!("{}: fault-free publish failed: {s:?}", volume.volume_id));
        let want: BTreeMap<String, String> = volume
            .expected
            .iter()
            .map(|(path, object)| (path.clone(), versioned_value(object, current)))
            .collect();
        assert_eq!(
            settled_files(&volume.target),
            want,
            "{} holds the store's current values",
            volume.volume_id
        );
        assert!(leftovers(&volume.target).is_empty());
    }
    stop.store(true, Ordering::Relaxed);
    let reader = reader.join().unwrap();

    let mut node = node.clone();
    for volume in volumes.iter() {
        node.node_unpublish_volume(unpublish_request(&volume.volume_id, &volume.target))
            .await
            .unwrap();
        assert!(!volume.target.exists());
    }
    assert!(driver.our_mounts().is_empty(), "no tmpfs left");

    let tally = tally.lock();
    let calls = (FAULT_WORKERS * CALLS_PER_WORKER) as u64;
    println!(
        "store faults: {calls} calls by {FAULT_WORKERS} workers over {FAULT_VOLUMES} volumes in {elapsed:.1?}, \
         {rotations} rotations (store generation {current})"
    );
    println!(
        "  ok: {} first publishes, {} republishes ({} refreshed, {} kept the previous content), {} unpublishes",
        tally.publishes, tally.republishes, tally.refreshed, tally.kept_previous, tally.unpublishes
    );
    println!("  failed first publishes by code: {:?}", tally.failures);
    for (code, message) in &tally.samples {
        println!("    e.g. {code}: {message}");
    }
    println!(
        "  faults survived: {} throttled (429), {} server errors, {} dropped connections; {} data-plane GETs, {} token requests",
        counters.throttled,
        counters.server_errors,
        counters.dropped,
        counters.data_plane_gets,
        counters.token_requests_for("aad")
    );
    println!(
        "  concurrent reader: {} consistent snapshots, {} torn reads retried, {} absent",
        reader.snapshots, reader.torn, reader.absent
    );
    assert!(
        reader.violations.is_empty(),
        "the reader saw broken volumes: {:#?}",
        reader.violations
    );
    assert_eq!(
        tally.publishes
            + tally.republishes
            + tally.unpublishes
            + tally.failures.values().sum::<u64>(),
        calls
    );
    assert!(
        counters.throttled + counters.server_errors + counters.dropped > 0,
        "the store did fail"
    );
    assert!(rotations > 0, "the store rotated during the run");
}

// ------------------------------------------------------------------------------------------------
// 2. Crash and restart

const CRASH_VAULT: &str = "kv-crash";
const CRASH_VOLUMES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_in_a_republish_wave_loses_and_leaks_nothing() {
    let store = Store::start(Config::default()).await;
    store
        .emulator
        .add_vault(VaultSpec::new(CRASH_VAULT, TENANT))
        .unwrap();
    // Each volume has its own objects, so no two volumes' GETs are the same request.
    let objects = |i: usize| {
        [
            (format!("v{i}-one"), "one"),
            (format!("v{i}-two"), "two"),
            (format!("v{i}-three"), "sub/three"),
        ]
    };
    let rotate = |generation: u64| -> BTreeMap<String, String> {
        let mut versions = BTreeMap::new();
        for i in 0..CRASH_VOLUMES {
            for (name, _) in objects(i) {
                let version = store
                    .emulator
                    .set_secret(
                        CRASH_VAULT,
                        &name,
                        &versioned_value(&name, generation),
                        None,
                    )
                    .unwrap();
                versions.insert(name, version);
            }
        }
        versions
    };
    rotate(1);
    let mut driver =
        Driver::start(store.setup(&["--enable-secret-rotation", "--rotation-poll-interval=0s"]))
            .await;
    let mut volumes = Vec::new();
    for i in 0..CRASH_VOLUMES {
        let pod = format!("crash-{i}");
        let uid = driver.create_pod(NS, &pod);
        let class = format!("crash-{i}");
        let yaml = objects_yaml(
            &objects(i)
                .iter()
                .map(|(name, path)| secret_object(name, path))
                .collect::<Vec<_>>(),
        );
        azure_class(&driver, &class, CRASH_VAULT, &yaml);
        let target = driver.target(&uid, "secrets");
        let request = with_credentials(
            driver.publish_request(&format!("vol-crash-{i}"), &target, &class, (NS, &pod, &uid)),
            APP_SECRET,
        );
        let expected: BTreeMap<String, String> = objects(i)
            .into_iter()
            .map(|(name, path)| (path.to_string(), name))
            .collect();
        volumes.push((pod, class, target, expected, request));
    }
    let requests: Vec<_> = volumes.iter().map(|v| v.4.clone()).collect();
    let generation_of = |target: &Path, expected: &BTreeMap<String, String>| -> Option<u64> {
        match view(target) {
            View::Files(files) => payload_generation(&files, expected).ok(),
            _ => None,
        }
    };
    let count_at = |generation: u64| {
        volumes
            .iter()
            .filter(|v| generation_of(&v.2, &v.3) == Some(generation))
            .count()
    };

    let node = driver.node().await;
    for result in publish_all(&node, &requests).await {
        result.unwrap();
    }
    assert_eq!(count_at(1), CRASH_VOLUMES);
    let mounts_before = driver.our_mounts().len();
    let leftovers_before: usize = volumes.iter().map(|v| leftovers(&v.2).len()).sum();
    assert_eq!(mounts_before, CRASH_VOLUMES);
    assert_eq!(leftovers_before, 0);

    // Rotate everything, then republish all volumes at once. The store answers with some latency,
    // and the first few GETs hang, so the wave is still under way when the driver is killed.
    let new_versions = rotate(2);
    store
        .emulator
        .set_faults(FaultPlan::none().with_rule(FaultRule {
            scope: FaultScope::DataPlaneGet,
            jitter: Duration::from_millis(300),
            ..FaultRule::default()
        }));
    store.emulator.inject(
        FaultScope::DataPlaneGet,
        6,
        Fault::Delay {
            delay: Duration::from_secs(120),
        },
    );
    let wave: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let mut node = node.clone();
            tokio::spawn(async move { node.node_publish_volume(request).await })
        })
        .collect();
    driver
        .eventually_within("part of the wave to land", Duration::from_secs(60), || {
            count_at(2) >= CRASH_VOLUMES / 3
        })
        .await;
    driver.stop(true);
    let (new_at_kill, old_at_kill) = (count_at(2), count_at(1));
    let mut interrupted = 0;
    for call in wave {
        if call.await.unwrap().is_err() {
            interrupted += 1;
        }
    }
    let leftovers_at_kill: usize = volumes.iter().map(|v| leftovers(&v.2).len()).sum();
    store.emulator.set_faults(FaultPlan::none());
    assert!(
        new_at_kill > 0 && old_at_kill > 0 && interrupted > 0,
        "the kill came in the middle of the wave: {new_at_kill} new, {old_at_kill} old, {interrupted} calls cut off"
    );

    driver.restart().await;
    // Every volume survived with one complete payload, old or new.
    for (pod, _, target, expected, _) in &volumes {
        let files = settled_files(target);
        let generation =
            payload_generation(&files, expected).unwrap_or_else(|e| panic!("{pod}: {e}"));
        assert!(
            generation == 1 || generation == 2,
            "{pod}: generation {generation}"
        );
    }
    assert_eq!(
        driver.our_mounts().len(),
        CRASH_VOLUMES,
        "every tmpfs is still there"
    );

    // Republishes bring every volume to the new values (a restarted driver spreads its first
    // refreshes, so this may take more than one round).
    let node = driver.node().await;
    let mut rounds = 0;
    while count_at(2) < CRASH_VOLUMES {
        rounds += 1;
        assert!(rounds <= 3, "republishing did not refresh every volume");
        for result in publish_all(&node, &requests).await {
            result.expect("republish after the restart");
        }
    }
    for (pod, class, target, expected, _) in &volumes {
        let want: BTreeMap<String, String> = expected
            .iter()
            .map(|(path, name)| (path.clone(), versioned_value(name, 2)))
            .collect();
        assert_eq!(settled_files(target), want, "{pod}");
        assert_eq!(
            leftovers(target),
            Vec::<String>::new(),
            "{pod}: no temp dir leaks"
        );
        let status = driver.pod_status(NS, pod, class).expect("pod status");
        for object in status["status"]["objects"].as_array().unwrap() {
            let id = object["id"].as_str().unwrap();
            let name = id.strip_prefix("secret/").unwrap();
            assert_eq!(
                object["version"].as_str().unwrap(),
                new_versions[name],
                "{pod}: the pod status names the mounted versions"
            );
        }
    }
    let mut node = node.clone();
    for (i, (_, _, target, _, _)) in volumes.iter().enumerate() {
        node.node_unpublish_volume(unpublish_request(&format!("vol-crash-{i}"), target))
            .await
            .expect("unpublish after the restart");
        assert!(!target.exists());
    }
    let mounts_after = driver.our_mounts().len();
    println!(
        "crash: {CRASH_VOLUMES} volumes; SIGKILL with {new_at_kill} new, {old_at_kill} old, {interrupted} calls cut off, \
         {leftovers_at_kill} writer temp entries left at the kill; {rounds} republish round(s) after the restart; \
         tmpfs mounts {mounts_before} before, {mounts_after} after unpublishing"
    );
    assert_eq!(mounts_after, 0, "no tmpfs leaked");
}

// ------------------------------------------------------------------------------------------------
// 3. Load

const LOAD_VOLUMES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_publishes() {
    // The echo provider: the figures are the driver's own (gRPC, provider calls, tmpfs, writer,
    // pod status), not a store's.
    let driver = Driver::start(Setup {
        providers_yaml: "providers:\n  echo:\n    module: echo.wasm\n".into(),
        modules: vec![("echo.wasm".into(), guests::ECHO.into())],
        module_bytes: vec![],
        args: vec![],
    })
    .await;
    let mut volumes = Vec::new();
    for i in 0..LOAD_VOLUMES {
        let pod = format!("load-{i}");
        let uid = driver.create_pod(NS, &pod);
        let class = format!("load-{i}");
        let files = format!(
            r#"[{{"path":"id","contents":"{i}"}},{{"path":"dir/key","contents":"key-{i}","mode":256}},{{"path":"cert","contents":"cert-{i}"}}]"#
        );
        driver.create_class(NS, &class, "echo", &[("files", &files)]);
        let target = driver.target(&uid, "secrets");
        let request =
            driver.publish_request(&format!("vol-load-{i}"), &target, &class, (NS, &pod, &uid));
        volumes.push((target, request));
    }
    let rss_idle = driver.proc_status_kib("VmRSS").unwrap_or(0);
    let node = driver.node().await;
    let requests: Vec<_> = volumes.iter().map(|v| v.1.clone()).collect();
    let started = Instant::now();
    let results = publish_all(&node, &requests).await;
    let wall = started.elapsed();
    let peak = driver.proc_status_kib("VmHWM").unwrap_or(0);
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} publishes failed: {errors:?}",
        errors.len()
    );
    for (i, (target, _)) in volumes.iter().enumerate() {
        let want: BTreeMap<String, String> = [
            ("id".to_string(), i.to_string()),
            ("dir/key".to_string(), format!("key-{i}")),
            ("cert".to_string(), format!("cert-{i}")),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            settled_files(target),
            want,
            "volume {i} holds its own files"
        );
    }
    assert_eq!(driver.our_mounts().len(), LOAD_VOLUMES);

    let started = Instant::now();
    let handles: Vec<_> = volumes
        .iter()
        .map(|(target, request)| {
            let mut node = node.clone();
            let unpublish = unpublish_request(&request.volume_id, target);
            tokio::spawn(async move { node.node_unpublish_volume(unpublish).await })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap().expect("unpublish");
    }
    let unpublish_wall = started.elapsed();
    assert!(driver.our_mounts().is_empty(), "no tmpfs left");
    assert!(volumes.iter().all(|(target, _)| !target.exists()));
    println!(
        "load: {LOAD_VOLUMES} concurrent publishes (echo provider, one connection) in {wall:.2?}, \
         unpublished in {unpublish_wall:.2?}; driver RSS {} MiB idle, peak (VmHWM) {} MiB",
        rss_idle / 1024,
        peak / 1024
    );
}

// ------------------------------------------------------------------------------------------------
// 4. Hostile input

/// A publish that must be refused: the code, what the message must name, and nothing written.
struct Refusal<'a> {
    driver: &'a Driver,
    node: NodeClient<Channel>,
    pod: &'a str,
    uid: &'a str,
}

impl Refusal<'_> {
    async fn check(&mut self, class: &str, code: Code, expect: &[&str]) -> String {
        let target = self.driver.target(self.uid, class);
        let request = with_credentials(
            self.driver.publish_request(
                &format!("vol-{class}"),
                &target,
                class,
                (NS, self.pod, self.uid),
            ),
            APP_SECRET,
        );
        let status = self.node.node_publish_volume(request).await.unwrap_err();
        let message = status.message().to_string();
        assert_eq!(status.code(), code, "{class}: {message}");
        assert!(
            message.contains(&format!("SecretProviderClass {NS}/{class}")),
            "{class}: the message names the class: {message}"
        );
        for expected in expect {
            assert!(
                message.contains(expected),
                "{class}: the message names {expected:?}: {message}"
            );
        }
        assert!(!target.exists(), "{class}: nothing is written");
        assert_eq!(mounts::state(&target).unwrap(), MountState::None);
        assert!(
            self.driver.pod_status(NS, self.pod, class).is_none(),
            "{class}: no pod status"
        );
        assert!(
            !message.chars().any(char::is_control),
            "{class}: no raw control characters: {message:?}"
        );
        println!("  {class}: {:?}: {message}", status.code());
        message
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_with_a_clear_error_and_nothing_written() {
    let store = Store::start(Config::default()).await;
    store
        .emulator
        .add_vault(VaultSpec::new("kv-hostile", TENANT))
        .unwrap();
    store
        .emulator
        .set_secret("kv-hostile", "fine", "fine-value", None)
        .unwrap();
    // Broken modules next to good ones: garbage, half a component, and a component of another
    // world (a WASI command).
    let echo = std::fs::read(guests::ECHO).unwrap();
    let mut setup = store.setup(&[]);
    setup.providers_yaml = azure_providers_yaml(
        "  junk:\n    module: junk.wasm\n  truncated:\n    module: truncated.wasm\n  cliapp:\n    module: cliapp.wasm\n",
    );
    setup
        .modules
        .push(("cliapp.wasm".into(), guests::CLI_APP.into()));
    setup.module_bytes = vec![
        ("junk.wasm".into(), b"this is not WebAssembly".to_vec()),
        ("truncated.wasm".into(), echo[..echo.len() / 2].to_vec()),
    ];
    let driver = Driver::start(setup).await;
    let pod = "hostile";
    let uid = driver.create_pod(NS, pod);
    let mut refusal = Refusal {
        driver: &driver,
        node: driver.node().await,
        pod,
        uid: &uid,
    };

    // Malformed SecretProviderClass parameters for the Azure provider: the provider refuses them
    // before any request leaves the sandbox.
    let long = "x".repeat(300);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "bad-yaml",
            "array: [unclosed\n  - {".into(),
            vec!["yaml", "objects"],
        ),
        (
            "bad-item-yaml",
            "array:\n  - |\n    objectName: [unclosed\n".into(),
            vec!["keyVaultObjects at index 0"],
        ),
        (
            "unknown-type",
            objects_yaml(&[vec![
                ("objectName", "fine".into()),
                ("objectType", "nonsense".into()),
            ]]),
            vec!["\"fine\"", "objectType \"nonsense\""],
        ),
        (
            "bad-octal",
            objects_yaml(&[vec![
                ("objectName", "fine".into()),
                ("objectType", "secret".into()),
                ("filePermission", "\"0999\"".into()),
            ]]),
            vec!["\"fine\"", "filePermission \"0999\"", "octal"],
        ),
        (
            "traversal",
            objects_yaml(&[secret_object("fine", "../../../etc/cron.d/evil")]),
            vec!["\"fine\"", "../../../etc/cron.d/evil", "'..'"],
        ),
        (
            "absolute",
            objects_yaml(&[secret_object("fine", "/etc/shadow")]),
            vec!["\"fine\"", "/etc/shadow", "relative"],
        ),
        (
            "nul-alias",
            objects_yaml(&[secret_object("fine", "\"a\\0b\"")]),
            vec!["\"fine\"", "NUL"],
        ),
        (
            "nul-name",
            objects_yaml(&[secret_object("\"fi\\0ne\"", "fine")]),
            vec!["objectName", "not a Key Vault object name"],
        ),
        (
            "long-alias",
            objects_yaml(&[secret_object("fine", &long)]),
            vec!["\"fine\"", "255 bytes"],
        ),
        (
            "long-name",
            objects_yaml(&[secret_object(&long, "fine")]),
            vec!["objectName", "not a Key Vault object name"],
        ),
    ];
    for (class, objects, expect) in &cases {
        azure_class(&driver, class, "kv-hostile", objects);
        let mut expect = expect.clone();
        expect.push("provider azure");
        expect.push("invalid parameters");
        refusal.check(class, Code::InvalidArgument, &expect).await;
    }
    // A raw NUL in the parameter itself (the API server stores it; YAML cannot carry it).
    driver
        .api
        .create_json(serde_json::json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
            "metadata": {"name": "raw-nul", "namespace": NS},
            "spec": {"provider": "azure", "parameters": {
                "keyvaultName": "kv-hostile", "tenantID": TENANT,
                "objects": "array:\n  - |\n    objectName: fi\u{0}ne\n    objectType: secret\n"
            }}
        }))
        .unwrap();
    refusal
        .check(
            "raw-nul",
            Code::InvalidArgument,
            &["provider azure", "invalid parameters"],
        )
        .await;

    // Broken modules: each provider is unavailable and says why; the driver keeps serving.
    for (provider, expect) in [
        (
            "junk",
            vec!["junk.wasm", "not loaded", "not a WebAssembly component"],
        ),
        ("truncated", vec!["truncated.wasm", "not loaded"]),
        (
            "cliapp",
            vec![
                "cliapp.wasm",
                "not loaded",
                "does not fit the secrets-store:provider@0.1 world",
            ],
        ),
    ] {
        let class = format!("uses-{provider}");
        driver.create_class(NS, &class, provider, &[("a", "b")]);
        refusal
            .check(&class, Code::FailedPrecondition, &expect)
            .await;
    }
    assert!(
        crate::driver::readyz(driver.metrics).await,
        "the driver stays ready"
    );

    // A provider answering with duplicate or clashing paths: refused whole.
    for (class, files, expect) in [
        (
            "duplicate",
            r#"[{"path":"a","contents":"1"},{"path":"a","contents":"2"}]"#,
            vec!["provider echo", "\"a\"", "more than once"],
        ),
        (
            "clash",
            r#"[{"path":"a","contents":"1"},{"path":"a/b","contents":"2"}]"#,
            vec!["provider echo", "\"a\"", "directory"],
        ),
        (
            "reserved",
            r#"[{"path":"..data","contents":"1"}]"#,
            vec!["provider echo", "..data"],
        ),
    ] {
        driver.create_class(NS, class, "echo", &[("files", files)]);
        refusal.check(class, Code::Internal, &expect).await;
    }

    // Other providers keep working.
    driver.create_class(
        NS,
        "echo-ok",
        "echo",
        &[("files", r#"[{"path":"ok","contents":"fine"}]"#)],
    );
    let ok_fields = secret_object("fine", "fine");
    azure_class(
        &driver,
        "azure-ok",
        "kv-hostile",
        &objects_yaml(&[ok_fields]),
    );
    let mut node = driver.node().await;
    for (class, file, contents) in [
        ("echo-ok", "ok", "fine"),
        ("azure-ok", "fine", "fine-value"),
    ] {
        let target = driver.target(&uid, class);
        let request = with_credentials(
            driver.publish_request(&format!("vol-{class}"), &target, class, (NS, pod, &uid)),
            APP_SECRET,
        );
        node.node_publish_volume(request).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join(file)).unwrap(),
            contents
        );
        node.node_unpublish_volume(unpublish_request(&format!("vol-{class}"), &target))
            .await
            .unwrap();
    }

    // Targets that are symlinks, or lead through one, or lie outside the pods directory: refused
    // for publish and for unpublish, and whatever they point to is left alone.
    let elsewhere = driver.root.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("volumes/kubernetes.io~csi/v/mount")).unwrap();
    std::fs::write(elsewhere.join("canary"), "keep me").unwrap();
    std::fs::write(
        elsewhere.join("volumes/kubernetes.io~csi/v/mount/canary"),
        "keep me",
    )
    .unwrap();
    let snapshot = |dir: &Path| {
        let mut names = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let entry = entry.unwrap();
                names.push(entry.path());
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        names.sort();
        names
    };
    let before = snapshot(&elsewhere);
    let link_target = driver.target(&uid, "linked");
    std::os::unix::fs::symlink(&elsewhere, &link_target).unwrap();
    let pods = driver.kubelet.join("pods");
    std::os::unix::fs::symlink(&elsewhere, pods.join("linked-pod")).unwrap();
    let through_link = pods.join("linked-pod/volumes/kubernetes.io~csi/v/mount");
    let outside = elsewhere.clone();
    let dotdot = pods.join(format!("{uid}/../../../elsewhere"));
    let file_target = driver.target(&uid, "file");
    std::fs::write(&file_target, "not a directory").unwrap();
    for (what, target, expect) in [
        ("a symlinked target", &link_target, "symlink"),
        ("a symlink on the way", &through_link, "symlink"),
        ("outside the pods directory", &outside, "outside"),
        ("a path with ..", &dotdot, "normalised"),
        ("a regular file", &file_target, "not a directory"),
    ] {
        let request = driver.publish_request("vol-target", target, "echo-ok", (NS, pod, &uid));
        let status = node.node_publish_volume(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains(expect)
                && status.message().contains(&target.display().to_string()),
            "{what}: {}",
            status.message()
        );
        let status = node
            .node_unpublish_volume(unpublish_request("vol-target", target))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains(expect),
            "{what}: {}",
            status.message()
        );
        println!("  {what}: {:?}: {}", status.code(), status.message());
    }
    assert_eq!(
        snapshot(&elsewhere),
        before,
        "nothing behind a link was touched"
    );
    assert_eq!(
        std::fs::read_to_string(&file_target).unwrap(),
        "not a directory"
    );
    assert!(driver.our_mounts().is_empty());
    assert!(
        mounts::mount_table()
            .unwrap()
            .iter()
            .all(|m| !(m.is_ours() && m.mount_point.starts_with(&elsewhere))),
        "nothing was mounted outside the kubelet directory"
    );
    println!(
        "hostile input: {} malformed parameter sets, 3 broken modules, 3 unsafe payloads, 5 bad targets refused",
        cases.len() + 1
    );
}

// ------------------------------------------------------------------------------------------------
// 5. Secrets never leak

const LEAK_VAULT: &str = "kv-leak";
const LOCKED_VAULT: &str = "kv-locked";
const WI_CLIENT: &str = "6c1a7b40-8b3c-4d7e-9f10-b2c3d4e5f607";
const OIDC_ISSUER: &str = "https://oidc.reliability.example/cluster";

/// A projected service-account token as kubelet hands it over (the emulator trusts the federated
/// credential's issuer and subject; the signature is filler).
fn service_account_token(subject: &str, now: i64, filler: &str) -> String {
    let part = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    format!(
        "{}.{}.{}",
        part(serde_json::json!({"alg": "RS256", "kid": "reliability"})),
        part(serde_json::json!({
            "aud": ["api://AzureADTokenExchange"], "iss": OIDC_ISSUER, "sub": subject,
            "iat": now, "nbf": now, "exp": now + 3600,
        })),
        filler
    )
}

fn tokens_context(token: &str) -> String {
    serde_json::json!({"api://AzureADTokenExchange": {"token": token, "expirationTimestamp": ""}})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_events_statuses_or_errors() {
    let store = Store::start(Config::default()).await;
    let emulator = &store.emulator;
    emulator
        .add_vault(VaultSpec::new(LEAK_VAULT, TENANT))
        .unwrap();
    emulator
        .add_vault(VaultSpec::new(LOCKED_VAULT, TENANT).with_access(&["someone-else"]))
        .unwrap();
    emulator.add_federated(
        TENANT,
        WI_CLIENT,
        OIDC_ISSUER,
        "system:serviceaccount:default:default",
    );
    let key_pem = include_str!("../../../../tests/integration/tests/fixtures/p256-key.pem");
    let tls_bundle = format!("{key_pem}{}", emulator.ca_pem());
    let mut known: Vec<String> = vec![
        APP_SECRET.into(),
        "Wrong-Client-Secret-0b7d4f".into(),
        tls_bundle.clone(),
    ];
    let values = [
        ("db-password", "Leak-Canary-Password-1f2e3d"),
        ("api-key", "Leak-Canary-ApiKey-9a8b7c"),
    ];
    for (name, value) in values {
        emulator.set_secret(LEAK_VAULT, name, value, None).unwrap();
        known.push(value.into());
    }
    emulator
        .set_secret(LOCKED_VAULT, "db-password", "Leak-Canary-Locked-5e6f", None)
        .unwrap();
    known.push("Leak-Canary-Locked-5e6f".into());
    emulator
        .set_secret(
            LEAK_VAULT,
            "tls-bundle",
            &tls_bundle,
            Some("application/x-pem-file"),
        )
        .unwrap();

    let driver = Driver::start(store.setup(&[
        "--enable-secret-rotation",
        "--rotation-poll-interval=0s",
        "--enable-secret-sync",
        "--v=5",
    ]))
    .await;
    let objects = objects_yaml(&[
        secret_object("db-password", "db-password"),
        secret_object("api-key", "api-key"),
        secret_object("tls-bundle", "tls-bundle"),
    ]);
    driver
        .api
        .create_json(serde_json::json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
            "metadata": {"name": "leak", "namespace": NS},
            "spec": {
                "provider": "azure",
                "parameters": {"keyvaultName": LEAK_VAULT, "tenantID": TENANT, "objects": objects},
                "secretObjects": [
                    {"secretName": "app-opaque", "type": "Opaque", "data": [
                        {"objectName": "db-password", "key": "password"},
                        {"objectName": "api-key", "key": "api-key"}]},
                    {"secretName": "app-tls", "type": "kubernetes.io/tls", "data": [
                        {"objectName": "tls-bundle", "key": "tls.key"},
                        {"objectName": "tls-bundle", "key": "tls.crt"}]}
                ]
            }
        }))
        .unwrap();
    azure_class(
        &driver,
        "locked",
        LOCKED_VAULT,
        &objects_yaml(&[secret_object("db-password", "db-password")]),
    );
    azure_class(
        &driver,
        "missing",
        LEAK_VAULT,
        &objects_yaml(&[secret_object("no-such-secret", "x")]),
    );
    driver.create_class(
        NS,
        "wi",
        "azure",
        &[
            ("keyvaultName", LEAK_VAULT),
            ("tenantID", TENANT),
            ("clientID", WI_CLIENT),
            (
                "objects",
                &objects_yaml(&[secret_object("api-key", "api-key")]),
            ),
        ],
    );
    let mut node = driver.node().await;
    let mut errors: Vec<String> = Vec::new();
    let publish = |pod: &str, class: &str, volume: &str| {
        let uid = driver.create_pod(NS, pod);
        let target = driver.target(&uid, volume);
        let request =
            driver.publish_request(&format!("vol-{volume}"), &target, class, (NS, pod, &uid));
        (target, request)
    };

    // Mount with a service principal, with both Secrets synced.
    let (web_target, web) = publish("web", "leak", "web");
    let web = with_credentials(web, APP_SECRET);
    node.node_publish_volume(web.clone()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(web_target.join("db-password")).unwrap(),
        values[0].1
    );
    let opaque = driver
        .api
        .get_json("", "secrets", NS, "app-opaque")
        .expect("Opaque Secret synced");
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(opaque["data"]["password"], b64.encode(values[0].1));
    let tls = driver
        .api
        .get_json("", "secrets", NS, "app-tls")
        .expect("TLS Secret synced");
    let tls_key = String::from_utf8(
        b64.decode(tls["data"]["tls.key"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(tls_key.contains("PRIVATE KEY"));
    // The key as synced (re-encoded) is a secret too: each of its base64 lines.
    known.extend(
        tls_key
            .lines()
            .chain(key_pem.lines())
            .filter(|l| !l.starts_with("-----") && l.len() >= 32)
            .map(str::to_string),
    );

    // Rotation: a new value reaches the file and the Secret.
    let rotated = "Leak-Canary-Password-2c4b6a";
    known.push(rotated.into());
    emulator
        .set_secret(LEAK_VAULT, "db-password", rotated, None)
        .unwrap();
    node.node_publish_volume(web.clone()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(web_target.join("db-password")).unwrap(),
        rotated
    );
    let opaque = driver
        .api
        .get_json("", "secrets", NS, "app-opaque")
        .unwrap();
    assert_eq!(opaque["data"]["password"], b64.encode(rotated));

    // A refresh that fails: the store answers 503 until the provider gives up.
    emulator.inject(
        FaultScope::DataPlaneGet,
        40,
        Fault::ServerError { status: 503 },
    );
    node.node_publish_volume(web.clone()).await.unwrap();
    emulator.clear_injected();

    // Workload identity: kubelet passes the service-account token in the volume context.
    let wi_token = service_account_token(
        "system:serviceaccount:default:default",
        emulator.now(),
        "c2lnbmF0dXJlLWZpbGxlci13aQ",
    );
    known.push(wi_token.clone());
    let (wi_target, mut wi) = publish("wi-pod", "wi", "wi");
    wi.volume_context.insert(
        "csi.storage.k8s.io/serviceAccount.tokens".into(),
        tokens_context(&wi_token),
    );
    node.node_publish_volume(wi.clone()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(wi_target.join("api-key")).unwrap(),
        values[1].1
    );

    // Failures, each through a fresh volume.
    let wrong_subject = service_account_token(
        "system:serviceaccount:default:intruder",
        emulator.now(),
        "c2lnbmF0dXJlLWZpbGxlci1ldmls",
    );
    known.push(wrong_subject.clone());
    let (_, mut bad_wi) = publish("bad-wi", "wi", "bad-wi");
    bad_wi.volume_context.insert(
        "csi.storage.k8s.io/serviceAccount.tokens".into(),
        tokens_context(&wrong_subject),
    );
    bad_wi.volume_context.insert(
        "csi.storage.k8s.io/serviceAccount.name".into(),
        "intruder".into(),
    );
    let (_, bad_secret) = publish("bad-secret", "leak", "bad-secret");
    let (_, locked) = publish("locked-pod", "locked", "locked");
    let (_, missing) = publish("missing-pod", "missing", "missing");
    let (_, broken) = publish("broken-pod", "leak", "broken");
    // Each failure says which class, and what failed where: the token request, or the object
    // in its vault.
    let failing = [
        (
            bad_wi,
            Code::Unauthenticated,
            vec!["default/wi", "workload identity token request", "HTTP 400"],
        ),
        (
            with_credentials(bad_secret, "Wrong-Client-Secret-0b7d4f"),
            Code::Unauthenticated,
            vec![
                "default/leak",
                "service principal token request",
                "HTTP 401",
            ],
        ),
        (
            with_credentials(locked, APP_SECRET),
            Code::PermissionDenied,
            vec![
                "default/locked",
                "secret/db-password",
                "https://kv-locked.vault.azure.net",
                "HTTP 403",
            ],
        ),
        (
            with_credentials(missing, APP_SECRET),
            Code::NotFound,
            vec![
                "default/missing",
                "secret/no-such-secret",
                "https://kv-leak.vault.azure.net",
                "HTTP 404",
            ],
        ),
        (
            with_credentials(broken, APP_SECRET),
            Code::Unavailable,
            vec![
                "default/leak",
                "secret/db-password",
                "https://kv-leak.vault.azure.net",
                "HTTP 500",
            ],
        ),
    ];
    for (request, code, names) in failing {
        if request.volume_id == "vol-broken" {
            emulator.inject(
                FaultScope::DataPlaneGet,
                40,
                Fault::ServerError { status: 500 },
            );
        }
        let status = node.node_publish_volume(request.clone()).await.unwrap_err();
        emulator.clear_injected();
        assert_eq!(
            status.code(),
            code,
            "{}: {}",
            request.volume_id,
            status.message()
        );
        for expected in names {
            assert!(
                status.message().contains(expected),
                "{}: the message names {expected:?}: {}",
                request.volume_id,
                status.message()
            );
        }
        errors.push(status.message().to_string());
    }
    for (target, request) in [(&web_target, &web), (&wi_target, &wi)] {
        node.node_unpublish_volume(unpublish_request(&request.volume_id, target))
            .await
            .unwrap();
    }
    driver
        .eventually("the failed refresh's event", || {
            driver
                .events_for("web")
                .iter()
                .any(|(_, reason, _)| reason == "MountRotationFailed")
        })
        .await;

    // Everything the driver said: its log, every event, every pod status, every error message.
    let logs = driver.logs();
    assert!(
        logs.contains("\"level\":\"TRACE\""),
        "the log is at the highest verbosity"
    );
    assert!(logs.contains("volume mounted"));
    let events = serde_json::to_string(&driver.api.list_json("", "events")).unwrap();
    let statuses = serde_json::to_string(&driver.api.list_json(SPC_GROUP, SPC_STATUSES)).unwrap();
    let others = serde_json::to_string(&(
        driver.api.list_json("", "pods"),
        driver.api.list_json(SPC_GROUP, "secretproviderclasses"),
    ))
    .unwrap();
    let haystacks = [
        ("driver log", logs.as_str()),
        ("events", events.as_str()),
        ("pod statuses", statuses.as_str()),
        ("pods and classes", others.as_str()),
        ("gRPC errors", &errors.join("\n")),
    ];
    let mut needles: Vec<String> = vec!["eyJ".into()];
    for value in &known {
        needles.push(value.clone());
        for engine in [
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let encoded = engine.encode(value);
            // A prefix long enough to be unmistakable also catches a truncated copy.
            needles.push(encoded.chars().take(24).collect());
        }
    }
    let mut hits = Vec::new();
    for (name, haystack) in haystacks {
        for needle in &needles {
            if haystack.contains(needle.as_str()) {
                let shown: String = needle.chars().take(12).collect();
                hits.push(format!("{name} contains {shown:?}…"));
            }
        }
    }
    println!(
        "secrets: {} needles searched in {} bytes of driver log, {} of events, {} of pod statuses, {} gRPC errors: {} hits",
        needles.len(),
        logs.len(),
        events.len(),
        statuses.len(),
        errors.len(),
        hits.len()
    );
    for message in &errors {
        println!("  error: {message}");
    }
    assert!(hits.is_empty(), "secrets leaked: {hits:#?}");
}
