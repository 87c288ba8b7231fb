//! `nimbus up [DIR]`.

use std::path::PathBuf;

use clap::Args;
use nimbus_manifest::{LoadError, Support};
use nimbus_server::{DataDir, Node};

use super::ListenArgs;
use crate::progress::say;

/// The state directory `up` keeps inside the app directory.
const STATE_DIR: &str = ".nimbus";

/// Validates the app in DIR, then serves it, keeping state in DIR/.nimbus.
#[derive(Debug, Args)]
pub struct Up {
    /// The app directory (holding nimbus.toml).
    #[arg(default_value = ".", env = "NIMBUS_APP_DIR")]
    dir: PathBuf,
    /// Do not watch function code (by default a change reloads the function).
    /// `NIMBUS_NO_WATCH` takes 1, true, yes or on; 0, false, no or off.
    #[arg(long, env = "NIMBUS_NO_WATCH", value_parser = clap::builder::BoolishValueParser::new())]
    no_watch: bool,
    #[command(flatten)]
    listen: ListenArgs,
}

/// What a developer wants to see once the app is up: where each route answers, what
/// runs each function, and the tables (on stdout; logs go to stderr; a stdout that cannot
/// take it loses the summary, not the node).
fn print_summary(app: &nimbus_core::AppSpec, node: &Node) {
    let gateway = node.gateway_addr();
    let scheme = node.gateway_scheme();
    say(format_args!("{} is up", app.name));
    if !app.routes.is_empty() {
        say(format_args!("  routes:"));
        for route in &app.routes {
            let url = match &route.key {
                nimbus_core::RouteKey::Route { method, path } => {
                    format!("{} {scheme}://{gateway}{path}", method.as_str())
                }
                nimbus_core::RouteKey::Default => format!("* {scheme}://{gateway}/..."),
            };
            say(format_args!("    {url} -> {}", route.function));
        }
    }
    if !app.functions.is_empty() {
        say(format_args!("  functions:"));
        for f in app.functions.values() {
            say(format_args!(
                "    {} ({}, {})",
                f.name,
                f.runtime.identifier,
                f.handler.as_deref().unwrap_or("bootstrap")
            ));
        }
    }
    if !app.tables.is_empty() {
        say(format_args!(
            "  tables: {}",
            app.tables.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    say(format_args!(
        "  services: http://{} (DynamoDB, Lambda)",
        node.services_addr()
    ));
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
        // The listener settings (the services token file among them) are read before the
        // builds and installs, which may take minutes: a bad one is said at once.
        let mut config = self.listen.config()?;
        let data = DataDir::open(&self.dir.join(STATE_DIR))?;
        let deps_root = data.path().join("deps");
        let progress = crate::progress::Progress::stdout();
        // A stop asked for while preparing drops the builds and installs under way, which
        // kills the tools themselves (`kill_on_drop`): cargo, npm or pip stop there (what
        // they started, a rustc or an install script, may finish on its own).
        let sdks = tokio::select! {
            prepared = super::build::prepare_app(&app, &deps_root, &progress) => prepared?,
            () = super::shutdown_signal() => return Ok(()),
        };
        tracing::info!(
            app = %app.name,
            tables = app.tables.len(),
            functions = app.functions.len(),
            routes = app.routes.len(),
            "app loaded"
        );
        let summary = app.clone();
        config.python_sdk = sdks.python;
        config.node_sdk = sdks.node;
        let node = Node::bind(config, Some(app), data).await?;
        let _watch = if self.no_watch {
            None
        } else {
            Some(super::watch::start(
                &self.dir,
                &summary,
                node.dispatcher(),
                node.gateway_reloader(),
                node.async_settings(),
                deps_root,
            )?)
        };
        print_summary(&summary, &node);
        super::serve_until_signal(node).await
    }
}
