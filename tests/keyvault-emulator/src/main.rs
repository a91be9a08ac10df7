//! `keyvault-emulator` CLI: starts the emulator from flags and an optional seed file, prints the
//! addresses, the host mappings a client needs (`connect-to:` lines in curl syntax) and "ready",
//! and runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use keyvault_emulator::{Config, Emulator, FaultPlan, FaultRule, FaultScope, Seed};

#[derive(Debug, Parser)]
#[command(
    name = "keyvault-emulator",
    about = "A local Azure Key Vault + AAD + IMDS + NMI emulator (see the crate docs for the seed format)"
)]
struct Cli {
    /// HTTPS listener for vaults and AAD.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Plain-HTTP listener for IMDS, NMI and /_emulator/ control.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Write the test CA certificate (PEM) here.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Seed file (YAML).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Extra DNS names for the server certificate (repeatable).
    #[arg(long = "dns-name")]
    dns_names: Vec<String>,
    /// Fixed latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Uniform random extra latency up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Probability of answering 429 (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    fault_429_rate: f64,
    /// Retry-After seconds on injected 429s.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Probability of answering 503.
    #[arg(long = "fault-5xx-rate", default_value_t = 0.0)]
    fault_5xx_rate: f64,
    /// Probability of dropping the connection without an answer.
    #[arg(long, default_value_t = 0.0)]
    fault_drop_rate: f64,
    /// Which requests the faults above apply to.
    #[arg(long, value_enum, default_value_t = ScopeArg::Any)]
    fault_scope: ScopeArg,
    /// Seed of the fault RNG (fixed seed → reproducible faults).
    #[arg(long, default_value_t = 0)]
    rng_seed: u64,
    /// Lifetime of issued tokens in seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime_secs: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ScopeArg {
    DataPlaneGet,
    DataPlane,
    Token,
    Imds,
    Nmi,
    Any,
}

impl From<ScopeArg> for FaultScope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::DataPlaneGet => FaultScope::DataPlaneGet,
            ScopeArg::DataPlane => FaultScope::DataPlane,
            ScopeArg::Token => FaultScope::Token,
            ScopeArg::Imds => FaultScope::Imds,
            ScopeArg::Nmi => FaultScope::Nmi,
            ScopeArg::Any => FaultScope::Any,
        }
    }
}

fn fault_plan(cli: &Cli) -> FaultPlan {
    let rule = FaultRule {
        scope: cli.fault_scope.into(),
        latency: Duration::from_millis(cli.latency_ms),
        jitter: Duration::from_millis(cli.jitter_ms),
        throttle_rate: cli.fault_429_rate,
        retry_after_secs: cli.retry_after,
        server_error_rate: cli.fault_5xx_rate,
        server_error_status: 503,
        drop_rate: cli.fault_drop_rate,
    };
    if rule
        == (FaultRule {
            scope: rule.scope,
            ..FaultRule::default()
        })
    {
        FaultPlan::none()
    } else {
        FaultPlan::none().with_rule(rule)
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    for (name, rate) in [
        ("--fault-429-rate", cli.fault_429_rate),
        ("--fault-5xx-rate", cli.fault_5xx_rate),
        ("--fault-drop-rate", cli.fault_drop_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("{name} must be between 0 and 1, got {rate}"));
        }
    }
    let seed = match &cli.seed {
        Some(path) => Some(Seed::from_yaml_file(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let config = Config {
        https_listen: cli.listen,
        http_listen: cli.http_listen,
        seed,
        token_lifetime: Duration::from_secs(cli.token_lifetime_secs),
        extra_dns_names: cli.dns_names.clone(),
        custom_clouds: Vec::new(),
        faults: fault_plan(&cli),
        rng_seed: cli.rng_seed,
        ca_out: cli.ca_out.clone(),
        log_capacity: 10_000,
    };
    let emu = Emulator::start(config).await.map_err(|e| e.to_string())?;
    println!("https: {}", emu.https_addr());
    println!("http: {}", emu.http_addr());
    if let Some(p) = &cli.ca_out {
        println!("ca: {}", p.display());
    }
    for (host, port, addr) in emu.resolve_overrides() {
        // curl --connect-to syntax: HOST:PORT:ADDR:PORT.
        println!("connect-to: {host}:{port}:{}:{}", addr.ip(), addr.port());
    }
    println!("ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot install SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    emu.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyvault-emulator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyvault-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
