//! `nimbus validate [DIR]`.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use nimbus_manifest::{LoadError, Support};

/// Checks DIR/nimbus.toml and reports every problem at once.
#[derive(Debug, Args)]
pub struct Validate {
    /// The app directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Print the resolved app (defaults filled in) as JSON.
    #[arg(long)]
    json: bool,
}

impl Validate {
    /// Runs the check: exit 0 when valid, 1 with every problem on stderr otherwise.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match nimbus_manifest::load(&self.dir, Support::current()) {
            Ok(app) => {
                if self.json {
                    outln!("{}", serde_json::to_string_pretty(&app)?)?;
                } else {
                    let count = |n: usize, what: &str| {
                        format!("{n} {what}{}", if n == 1 { "" } else { "s" })
                    };
                    outln!(
                        "{}: valid ({}, {}, {}, {})",
                        app.name,
                        count(app.tables.len(), "table"),
                        count(app.functions.len(), "function"),
                        count(app.routes.len(), "route"),
                        count(app.events.len(), "event")
                    )?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(LoadError::Invalid(diagnostics)) => {
                for d in &diagnostics.errors {
                    eprintln!("error: {d}");
                }
                let n = diagnostics.errors.len();
                eprintln!("{n} error{} in the manifest", if n == 1 { "" } else { "s" });
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e.into()),
        }
    }
}
