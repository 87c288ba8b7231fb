//! The `nimbus` command line.
//!
//! One module per subcommand under [`commands`], each a clap struct with
//! `async fn run(self) -> anyhow::Result<()>`. Every flag can also be set through a
//! `NIMBUS_*` environment variable. Errors print as one `error:` line with their causes
//! and exit with status 1.

pub mod commands;
mod json_lines;
mod log_writer;
mod logging;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// Nimbus: self-hosted serverless microservices in one binary.
#[derive(Debug, Parser)]
#[command(name = "nimbus", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    logging: logging::LogArgs,
    #[command(subcommand)]
    command: commands::Command,
}

/// Parses the command line, runs the command, and turns its outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_writer = match cli.logging.init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli.command.run());
    drop(runtime);
    // Every log line is out before the final word, which is then the last line.
    drop(log_writer);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
