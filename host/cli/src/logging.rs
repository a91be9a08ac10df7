//! Log setup shared by every command: text or JSON, a verbosity, and caps on the libraries that log
//! secrets at high verbosity (those caps hold whatever the operator asks for).

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct LogOptions {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// JSON logs (upstream's flag; the same as --log-format=json).
    #[arg(long, global = true)]
    pub log_format_json: bool,
    /// Verbosity: 0 errors and warnings, 1 info, 2 debug, 3 or more trace (klog-style `-v`).
    #[arg(short = 'v', long = "v", default_value_t = 1, global = true)]
    pub verbosity: u8,
}

impl LogOptions {
    pub fn filter(&self) -> EnvFilter {
        let level = match self.verbosity {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        };
        let mut filter = EnvFilter::new(level);
        for cap in secrets_store_runtime::redact::THIRD_PARTY_LOG_CAPS {
            if let Ok(directive) = cap.parse() {
                filter = filter.add_directive(directive);
            }
        }
        filter
    }

    /// Install the global subscriber (logs go to stderr; stdout is for command output).
    pub fn init(&self) {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(self.filter())
            .with_writer(std::io::stderr);
        let json = self.log_format == LogFormat::Json || self.log_format_json;
        let result = if json {
            builder.json().flatten_event(true).try_init()
        } else {
            builder.try_init()
        };
        // A second initialisation (tests) keeps the first subscriber.
        let _ = result;
    }
}
