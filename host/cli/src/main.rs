//! `secrets-store-host`: the secrets-store-wasm driver and its provider tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrets_store_host::local::{self, MountOptions, SandboxOptions};
use secrets_store_host::logging::LogOptions;
use secrets_store_host::serve::{self, ProviderOptions, ServeOptions};
use secrets_store_host::{CliError, inspect};

#[derive(Parser)]
#[command(
    name = "secrets-store-host",
    version,
    about = "Kubernetes Secrets Store CSI driver with sandboxed WebAssembly providers"
)]
struct Cli {
    #[command(flatten)]
    log: LogOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the CSI node plugin (Identity and Node services for kubelet).
    Serve(Box<ServeOptions>),
    /// Serve a wasm provider over the upstream provider API (v1alpha1), for the upstream driver.
    Provider(ProviderOptions),
    /// Run a provider on a SecretProviderClass and write its files into a local directory.
    Mount(MountOptions),
    /// Check a provider module against the world and show what it needs.
    Inspect {
        /// The provider component.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        sandbox: SandboxOptions,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<String, CliError> {
    match command {
        Command::Serve(options) => serve::serve(*options).await.map(|()| String::new()),
        Command::Provider(options) => serve::provider(options).await.map(|()| String::new()),
        Command::Mount(options) => {
            let json = options.json;
            let report = local::run(options).await?;
            Ok(if json {
                to_json(&report)
            } else {
                report.render()
            })
        }
        Command::Inspect {
            file,
            json,
            sandbox,
        } => {
            let runtime = sandbox.runtime()?;
            let report = inspect::run(&runtime, &file).await?;
            Ok(if json {
                to_json(&report)
            } else {
                report.render()
            })
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"))
}
