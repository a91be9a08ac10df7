//! The in-process scenarios: the real runtime (`secrets_store_runtime`) running azure.wasm against
//! the emulator, and the echo guest through the runtime and the atomic writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyvault_emulator::RunningEmulator;
use secrets_store_contract::MountRequest;
use secrets_store_runtime::{
    CallContext, NetworkConfig, Policy, PolicySpec, Provider, Runtime, RuntimeConfig,
};
use secrets_store_writer::AtomicWriter;
use tokio::task::JoinSet;

use crate::fixture::{
    self, BenchError, Counting, OBJECTS, OrFail, RTT, azure_policy, azure_request,
    check_azure_response, fail,
};
use crate::report::{Goal, Report};
use crate::stats::{Samples, ms};

pub const WARM_ITERATIONS: usize = 60;
pub const COLD_ITERATIONS: usize = 15;
pub const BASELINE_ITERATIONS: usize = 20;
pub const OVERHEAD_ITERATIONS: usize = 1000;
pub const WAVE_PODS: usize = 100;
const COMPILE_SAMPLES: usize = 3;
const LOAD_SAMPLES: usize = 7;
/// The short response cache of the wave's second figure.
const RESPONSE_CACHE_SECONDS: u64 = 2;

/// What the in-process scenarios share.
pub struct Env<'a> {
    pub emulator: &'a RunningEmulator,
    pub network: NetworkConfig,
    /// Artifact cache filled by the first load of each module; later runtimes load from it.
    pub artifact_cache: PathBuf,
    pub azure: Vec<u8>,
    pub counting: Arc<Counting>,
}

impl Env<'_> {
    pub fn runtime(&self, max_instances: Option<u32>) -> Result<Runtime, BenchError> {
        let defaults = RuntimeConfig::default();
        Runtime::new(RuntimeConfig {
            artifact_cache: Some(self.artifact_cache.clone()),
            max_instances: max_instances.unwrap_or(defaults.max_instances),
            network: self.network.clone(),
            observer: self.counting.clone(),
            ..defaults
        })
        .or_fail("setup", "creating a runtime")
    }

    fn load_azure(
        &self,
        scenario: &'static str,
        runtime: &Runtime,
        policy: Policy,
    ) -> Result<Provider, BenchError> {
        runtime
            .load("azure", &self.azure, policy)
            .or_fail(scenario, "loading azure.wasm")
    }
}

async fn mount_azure(
    scenario: &'static str,
    provider: &Provider,
    pod: usize,
) -> Result<Duration, BenchError> {
    let request = azure_request(pod);
    let started = Instant::now();
    let response = provider
        .mount(&request, &context(pod))
        .await
        .or_fail(scenario, "mount")?;
    let elapsed = started.elapsed();
    check_azure_response(scenario, &response)?;
    Ok(elapsed)
}

fn context(pod: usize) -> CallContext {
    CallContext {
        pod: Some(format!("{}/{}", fixture::NAMESPACE, fixture::pod_name(pod))),
    }
}

/// Key Vault GETs and token requests the emulator saw since the last reset.
fn upstream_counts(emulator: &RunningEmulator) -> (u64, u64) {
    let c = emulator.counters();
    (
        c.data_plane_gets,
        c.token_requests.values().copied().sum::<u64>(),
    )
}

/// Compile azure.wasm with an empty artifact cache vs load it from a filled one (the runtime
/// issue's figure). Also fills `env.artifact_cache` for every later runtime.
pub fn compile_vs_cached_load(env: &Env<'_>, report: &mut Report) -> Result<(), BenchError> {
    const S: &str = "component compile vs cached load";
    let mut compile = Samples::with_capacity(COMPILE_SAMPLES);
    for _ in 0..COMPILE_SAMPLES {
        let empty = tempfile::tempdir().or_fail(S, "temp dir")?;
        let runtime = Runtime::new(RuntimeConfig {
            artifact_cache: Some(empty.path().to_path_buf()),
            ..RuntimeConfig::default()
        })
        .or_fail(S, "runtime")?;
        let started = Instant::now();
        runtime
            .load("azure", &env.azure, Policy::default())
            .or_fail(S, "compiling azure.wasm")?;
        compile.push(started.elapsed());
    }
    let runtime = env.runtime(None)?;
    // Fill the shared cache (not timed), then time loads that find it.
    env.load_azure(S, &runtime, Policy::default())?;
    let mut load = Samples::with_capacity(LOAD_SAMPLES);
    for _ in 0..LOAD_SAMPLES {
        let started = Instant::now();
        env.load_azure(S, &runtime, Policy::default())?;
        load.push(started.elapsed());
    }
    let (compile_ms, load_ms) = (compile.p50_ms(), load.p50_ms());
    report.value(
        "component_compile_ms",
        compile_ms,
        "ms",
        &format!(
            "load azure.wasm into a runtime with an empty artifact cache (compile + type-check + store), median of {COMPILE_SAMPLES}"
        ),
    );
    report.value(
        "component_cached_load_ms",
        load_ms,
        "ms",
        &format!(
            "load azure.wasm from the artifact cache (read + deserialize + type-check), median of {LOAD_SAMPLES}"
        ),
    );
    let ratio = compile_ms / load_ms.max(1e-6);
    report.value(
        "component_compile_over_cached_load_ratio",
        ratio,
        "×",
        "how much faster a restart loads the module than a first start",
    );
    report.goal(
        "component_compile_over_cached_load_ratio",
        Goal::AtLeast(10.0),
        "≥ 10",
    );
    Ok(())
}

/// Warm mounts: token and challenge cached, connections pooled. Returns the warm runtime and
/// provider for the later scenarios.
pub async fn warm(env: &Env<'_>, report: &mut Report) -> Result<(Runtime, Provider), BenchError> {
    const S: &str = "warm mount";
    let runtime = env.runtime(None)?;
    let provider = env.load_azure(S, &runtime, azure_policy(|_| ())?)?;
    for pod in 0..2 {
        mount_azure(S, &provider, pod).await?;
    }
    env.emulator.reset_counters();
    let mut samples = Samples::with_capacity(WARM_ITERATIONS);
    for pod in 0..WARM_ITERATIONS {
        samples.push(mount_azure(S, &provider, pod).await?);
    }
    let (gets, tokens) = upstream_counts(env.emulator);
    let two_rtt = 2.0 * ms(RTT);
    for (key, value, which) in [
        ("warm_mount_10_objects_p50_ms", samples.p50_ms(), "p50"),
        ("warm_mount_10_objects_p99_ms", samples.p99_ms(), "p99"),
    ] {
        report.value(
            key,
            value,
            "ms",
            &format!(
                "{which} of {WARM_ITERATIONS} mounts of {OBJECTS} secrets through azure.wasm, token and challenge cached"
            ),
        );
        report.goal(
            key,
            Goal::AtMost(two_rtt),
            &format!("≤ 2×RTT = {two_rtt} ms"),
        );
    }
    report.value(
        "warm_mount_round_trips",
        (gets + tokens) as f64 / WARM_ITERATIONS as f64,
        "requests",
        "Key Vault + token requests per warm mount (all in one concurrent batch)",
    );
    Ok((runtime, provider))
}

/// First mount of a fresh host: a new runtime and provider each time (module from the artifact
/// cache), so challenge, token and objects all go upstream on new connections.
pub async fn cold(env: &Env<'_>, report: &mut Report) -> Result<(), BenchError> {
    const S: &str = "cold mount";
    let mut mounts = Samples::with_capacity(COLD_ITERATIONS);
    let mut starts = Samples::with_capacity(COLD_ITERATIONS);
    env.emulator.reset_counters();
    for pod in 0..COLD_ITERATIONS {
        let started = Instant::now();
        let runtime = env.runtime(None)?;
        let provider = env.load_azure(S, &runtime, azure_policy(|_| ())?)?;
        starts.push(started.elapsed());
        mounts.push(mount_azure(S, &provider, pod).await?);
    }
    let (gets, tokens) = upstream_counts(env.emulator);
    let four_rtt = 4.0 * ms(RTT);
    report.value(
        "cold_mount_10_objects_p50_ms",
        mounts.p50_ms(),
        "ms",
        &format!(
            "p50 of {COLD_ITERATIONS} first mounts of a fresh runtime + provider: challenge, token, then the objects"
        ),
    );
    report.goal(
        "cold_mount_10_objects_p50_ms",
        Goal::AtMost(four_rtt),
        &format!("≤ 4×RTT = {four_rtt} ms"),
    );
    report.value(
        "cold_mount_round_trips",
        (gets + tokens) as f64 / COLD_ITERATIONS as f64,
        "requests",
        "requests per cold mount (challenge + token + objects; three sequential steps)",
    );
    report.value(
        "cold_host_start_p50_ms",
        starts.p50_ms(),
        "ms",
        "new Runtime (engine, pool, TLS roots) + azure.wasm from the artifact cache, before that first mount",
    );
    Ok(())
}

/// Upstream's pattern on the same runtime, in the same run: one request at a time and no token or
/// challenge cache (`maxConcurrentRequests: 1`, `cacheMaxEntries: 0`).
pub async fn sequential_baseline(
    env: &Env<'_>,
    runtime: &Runtime,
    report: &mut Report,
) -> Result<(), BenchError> {
    const S: &str = "sequential baseline";
    let policy = azure_policy(|spec: &mut PolicySpec| {
        spec.max_concurrent_requests = 1;
        spec.cache_max_entries = 0;
    })?;
    let provider = env.load_azure(S, runtime, policy)?;
    // One mount to open the connection pool, as the warm provider had.
    mount_azure(S, &provider, 0).await?;
    env.emulator.reset_counters();
    let mut samples = Samples::with_capacity(BASELINE_ITERATIONS);
    for pod in 0..BASELINE_ITERATIONS {
        samples.push(mount_azure(S, &provider, pod).await?);
    }
    let (gets, tokens) = upstream_counts(env.emulator);
    report.value(
        "sequential_baseline_10_objects_p50_ms",
        samples.p50_ms(),
        "ms",
        &format!(
            "p50 of {BASELINE_ITERATIONS} mounts with maxConcurrentRequests 1 and the provider cache off (upstream's pattern)"
        ),
    );
    report.value(
        "sequential_baseline_round_trips",
        (gets + tokens) as f64 / BASELINE_ITERATIONS as f64,
        "requests",
        "sequential requests per baseline mount (challenge + token + one GET per object)",
    );
    Ok(())
}

/// One republish wave: `WAVE_PODS` pods sharing one identity and the same objects mount at once
/// against a warm provider.
async fn wave(
    env: &Env<'_>,
    scenario: &'static str,
    provider: &Provider,
) -> Result<(u64, u64, u64, Duration), BenchError> {
    env.emulator.reset_counters();
    env.counting.take();
    let started = Instant::now();
    let mut set = JoinSet::new();
    for pod in 0..WAVE_PODS {
        let provider = provider.clone();
        set.spawn(async move { mount_azure(scenario, &provider, 1000 + pod).await });
    }
    while let Some(joined) = set.join_next().await {
        joined.or_fail(scenario, "mount task")??;
    }
    let elapsed = started.elapsed();
    let (gets, tokens) = upstream_counts(env.emulator);
    let (joined, _, _) = env.counting.take();
    Ok((gets, tokens, joined, elapsed))
}

pub async fn republish_wave(
    env: &Env<'_>,
    warm: &Provider,
    report: &mut Report,
) -> Result<(), BenchError> {
    const S: &str = "republish wave";
    // The runtime's default pool and the default policy (coalescing of identical GETs in flight).
    let (gets, tokens, joined, elapsed) = wave(env, S, warm).await?;
    let what =
        format!("{WAVE_PODS} concurrent mounts of the same {OBJECTS} secrets with one identity");
    report.count(
        "republish_wave_keyvault_gets",
        gets,
        "GETs",
        &format!("{what}: default pool (16 calls) and policy (response cache off)"),
    );
    report.goal("republish_wave_keyvault_gets", Goal::AtMost(10.0), "≤ 10");
    report.count(
        "republish_wave_token_requests",
        tokens,
        "requests",
        &format!("{what}: token requests (token cached before the wave)"),
    );
    report.goal("republish_wave_token_requests", Goal::AtMost(1.0), "≤ 1");
    report.count(
        "republish_wave_joined_in_flight",
        joined,
        "GETs",
        "GETs of the default-policy wave that joined an identical GET in flight instead of going upstream",
    );
    report.value(
        "republish_wave_duration_ms",
        ms(elapsed),
        "ms",
        "wall time of the default-policy wave",
    );

    // The same wave with a short response cache. Its warm-up mount fills the response cache too,
    // so the wave starts after that entry lapsed, as a real republish (minutes later) would.
    let cached = warm.with_policy(azure_policy(|spec: &mut PolicySpec| {
        spec.response_cache_seconds = RESPONSE_CACHE_SECONDS;
    })?);
    mount_azure(S, &cached, 0).await?;
    tokio::time::sleep(Duration::from_secs(RESPONSE_CACHE_SECONDS) + Duration::from_millis(200))
        .await;
    let (gets, tokens, _, _) = wave(env, S, &cached).await?;
    report.count(
        "republish_wave_keyvault_gets_response_cache",
        gets,
        "GETs",
        &format!("the same wave with responseCacheSeconds: {RESPONSE_CACHE_SECONDS}"),
    );
    report.goal(
        "republish_wave_keyvault_gets_response_cache",
        Goal::AtMost(10.0),
        "≤ 10",
    );
    report.count(
        "republish_wave_token_requests_response_cache",
        tokens,
        "requests",
        "token requests of that wave",
    );

    // What bounds the default figure: the same wave with one pool slot per pod.
    let runtime = env.runtime(Some(WAVE_PODS as u32))?;
    let wide = env.load_azure(S, &runtime, azure_policy(|_| ())?)?;
    mount_azure(S, &wide, 0).await?;
    let (gets, _, _, _) = wave(env, S, &wide).await?;
    report.count(
        "republish_wave_keyvault_gets_pool_100",
        gets,
        "GETs",
        &format!(
            "the default-policy wave on a runtime with {WAVE_PODS} instance slots (diagnostic)"
        ),
    );
    Ok(())
}

/// Unmounts the overhead scenario's tmpfs however the scenario ends.
struct TmpfsGuard(PathBuf);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = secrets_store_publish::mounts::unmount(&self.0);
    }
}

fn echo_request(iteration: usize) -> MountRequest {
    let files = serde_json::json!([
        {"path": "config.txt", "contents": format!("iteration {iteration}\n")},
        {"path": "token", "contents": format!("t-{iteration:08}")},
    ]);
    MountRequest {
        attributes: [("files".to_string(), files.to_string())]
            .into_iter()
            .collect(),
        secrets: Default::default(),
        default_file_mode: 0o644,
        current_object_versions: Vec::new(),
    }
}

/// One echo mount and the atomic write of its (always new) payload; returns (call, write).
async fn echo_mount(
    scenario: &'static str,
    provider: &Provider,
    writer: &AtomicWriter,
    iteration: usize,
) -> Result<(Duration, Duration), BenchError> {
    let request = echo_request(iteration);
    let started = Instant::now();
    let response = provider
        .mount(&request, &CallContext::default())
        .await
        .or_fail(scenario, "echo mount")?;
    let called = started.elapsed();
    let outcome = writer
        .write(&response.files)
        .or_fail(scenario, "atomic write")?;
    let total = started.elapsed();
    if !outcome.changed || outcome.files_written != 2 {
        return Err(fail(
            scenario,
            format!("the writer did not write the new payload ({outcome:?})"),
        ));
    }
    Ok((called, total - called))
}

pub fn load_echo(
    scenario: &'static str,
    runtime: &Runtime,
    echo: &Path,
) -> Result<Provider, BenchError> {
    runtime
        .load_file("echo", echo, Policy::default())
        .or_fail(scenario, "loading echo.wasm")
}

/// Host overhead per mount with the trivial provider and no network: instantiate + call + atomic
/// write, into a tmpfs when one can be mounted (root), else a temp dir on disk.
pub async fn host_overhead(env: &Env<'_>, report: &mut Report) -> Result<(), BenchError> {
    const S: &str = "host overhead";
    let runtime = env.runtime(None)?;
    let provider = load_echo(S, &runtime, Path::new(secrets_store_artifacts::ECHO))?;
    let dir = tempfile::tempdir().or_fail(S, "temp dir")?;
    let target = dir.path().join("volume");
    std::fs::create_dir(&target).or_fail(S, "target dir")?;
    let on_tmpfs = secrets_store_publish::mounts::mount_tmpfs(&target, 16 << 20).is_ok();
    let _guard = on_tmpfs.then(|| TmpfsGuard(target.clone()));
    let writer = AtomicWriter::open(&target).or_fail(S, "opening the target")?;
    for i in 0..50 {
        echo_mount(S, &provider, &writer, i).await?;
    }
    let mut total = Samples::with_capacity(OVERHEAD_ITERATIONS);
    let mut calls = Samples::with_capacity(OVERHEAD_ITERATIONS);
    let mut writes = Samples::with_capacity(OVERHEAD_ITERATIONS);
    for i in 0..OVERHEAD_ITERATIONS {
        let (call, write) = echo_mount(S, &provider, &writer, 1000 + i).await?;
        total.push(call + write);
        calls.push(call);
        writes.push(write);
    }
    let place = if on_tmpfs {
        "a tmpfs"
    } else {
        "a temp dir on disk (no tmpfs: not root)"
    };
    report.value(
        "host_overhead_per_mount_p50_us",
        total.p50_us(),
        "µs",
        &format!(
            "echo guest, no network: fresh instance + mount call + atomic write of a new 2-file payload into {place}; p50 of {}",
            total.len()
        ),
    );
    report.goal(
        "host_overhead_per_mount_p50_us",
        Goal::AtMost(1000.0),
        "≤ 1 ms",
    );
    report.value(
        "host_overhead_per_mount_p99_us",
        total.p99_us(),
        "µs",
        "p99 of the same",
    );
    report.value(
        "host_overhead_call_p50_us",
        calls.p50_us(),
        "µs",
        "of which the provider call (instantiate + mount + output checks), p50",
    );
    report.value(
        "host_overhead_write_p50_us",
        writes.p50_us(),
        "µs",
        "of which the atomic write, p50",
    );
    report.count(
        "host_overhead_on_tmpfs",
        u64::from(on_tmpfs),
        "bool",
        "1 when the overhead scenario wrote into a tmpfs, 0 for a temp dir on disk",
    );
    Ok(())
}

/// The child process of `host_rss_mib_after_1000_mounts`: a runtime, echo from the artifact cache,
/// `count` mounts with atomic writes into `target`; prints VmRSS and VmHWM (KiB) before and after.
pub fn child_echo_mounts(count: usize, cache: &Path, target: &Path) -> Result<String, BenchError> {
    const S: &str = "host RSS after 1000 mounts (child)";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .or_fail(S, "tokio runtime")?;
    rt.block_on(async {
        let runtime = Runtime::new(RuntimeConfig {
            artifact_cache: Some(cache.to_path_buf()),
            ..RuntimeConfig::default()
        })
        .or_fail(S, "runtime")?;
        let provider = load_echo(S, &runtime, Path::new(secrets_store_artifacts::ECHO))?;
        let writer = AtomicWriter::open(target).or_fail(S, "opening the target")?;
        let before = crate::proc_status_kib(std::process::id()).or_fail(S, "/proc status")?;
        for i in 0..count {
            echo_mount(S, &provider, &writer, i).await?;
        }
        let after = crate::proc_status_kib(std::process::id()).or_fail(S, "/proc status")?;
        Ok(format!("{} {} {} {}", before.0, before.1, after.0, after.1))
    })
}
