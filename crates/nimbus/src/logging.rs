//! Log output: human-readable on a terminal, JSON on request.

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging flags shared by every command.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "NIMBUS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `nimbus_gateway=debug,info`); defaults to
    /// `RUST_LOG`, then `info`.
    #[arg(long, global = true, env = "NIMBUS_LOG_LEVEL")]
    log_level: Option<String>,
}

impl LogArgs {
    pub(crate) fn init(&self) {
        let filter = match &self.log_level {
            Some(level) => EnvFilter::try_new(level),
            None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
        }
        .unwrap_or_else(|e| {
            eprintln!("warning: bad log filter ({e}); using `info`");
            EnvFilter::new("info")
        });
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Json => builder.json().flatten_event(true).init(),
            LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        }
    }
}
