//! `nimbus up [DIR]`.

use std::path::PathBuf;

use clap::Args;
use nimbus_manifest::{LoadError, Support};
use nimbus_server::{DataDir, Node};

use super::ListenArgs;

/// The state directory `up` keeps inside the app directory.
const STATE_DIR: &str = ".nimbus";

/// Validates the app in DIR, then serves it, keeping state in DIR/.nimbus.
#[derive(Debug, Args)]
pub struct Up {
    /// The app directory (holding nimbus.toml).
    #[arg(default_value = ".", env = "NIMBUS_APP_DIR")]
    dir: PathBuf,
    #[command(flatten)]
    listen: ListenArgs,
}

impl Up {
    /// Runs the app until SIGINT or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        let app = match nimbus_manifest::load(&self.dir, Support::current()) {
            Ok(app) => app,
            Err(LoadError::Invalid(diagnostics)) => {
                for d in &diagnostics.errors {
                    eprintln!("error: {d}");
                }
                anyhow::bail!(
                    "{} is not valid ({} errors)",
                    self.dir.join(nimbus_manifest::MANIFEST_FILE).display(),
                    diagnostics.errors.len()
                );
            }
            Err(e) => return Err(e.into()),
        };
        let data = DataDir::open(&self.dir.join(STATE_DIR))?;
        super::build::install_dependencies(&app).await?;
        tracing::info!(
            app = %app.name,
            tables = app.tables.len(),
            functions = app.functions.len(),
            routes = app.routes.len(),
            "app loaded"
        );
        let node = Node::bind(self.listen.config(), Some(app), data).await?;
        super::serve_until_signal(node).await
    }
}
