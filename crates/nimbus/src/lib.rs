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
    raise_open_files_limit();
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

/// Raises the soft limit on open files to the hard one, as servers do: each listener
/// serves up to 10,000 connections by default (`--max-connections`), and every function
/// instance holds pipes and sockets, where a usual soft limit is 1,024. Function
/// processes inherit the raised limit.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit is left alone: not every system takes it as a soft one.
    let raise = matches!((limit.current, limit.maximum), (Some(current), Some(maximum)) if current < maximum);
    if raise
        && let Err(e) = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )
    {
        // Not fatal: the node runs, with fewer connections and instances at once.
        eprintln!("warning: cannot raise the limit on open files: {e}");
    }
}

#[cfg(test)]
mod tests {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_one() {
        let before = getrlimit(Resource::Nofile);
        let Some(hard) = before.maximum else {
            return; // No finite hard limit: the soft one cannot be below it.
        };
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard.min(256)),
                maximum: Some(hard),
            },
        )
        .unwrap();
        super::raise_open_files_limit();
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
    }
}
