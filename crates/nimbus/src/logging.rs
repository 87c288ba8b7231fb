//! Log output: human-readable on a terminal, JSON on request.
//!
//! Lines are formatted on the thread that logs them and written to stderr by a thread of
//! their own, so that a request never waits on the terminal or the pipe. Nothing is
//! dropped: when that thread falls behind by [`BUFFERED_LINES`], loggers wait for it.
//! The guard [`LogArgs::init`] returns writes what is left when it is dropped.

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines waiting for the writer thread before loggers wait.
const BUFFERED_LINES: usize = 64 * 1024;

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
    /// Installs the subscriber; keep the guard until the program ends.
    #[must_use = "dropping the guard stops the log writer"]
    pub(crate) fn init(&self) -> WorkerGuard {
        let filter = match &self.log_level {
            Some(level) => EnvFilter::try_new(level),
            None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
        }
        .unwrap_or_else(|e| {
            eprintln!("warning: bad log filter ({e}); using `info`");
            EnvFilter::new("info")
        });
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(false)
            .buffered_lines_limit(BUFFERED_LINES)
            .thread_name("nimbus-log")
            // The writer thread drains every waiting line into the buffer, then flushes:
            // a burst of lines costs one write.
            .finish(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stderr(),
            ));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer);
        match self.log_format {
            LogFormat::Json => builder.json().flatten_event(true).init(),
            LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        }
        guard
    }
}
