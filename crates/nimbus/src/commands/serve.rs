//! `nimbus serve`.

use std::path::PathBuf;

use clap::Args;
use nimbus_server::{DataDir, Node};

use super::ListenArgs;

/// Runs a long-lived node with its state in --data-dir.
#[derive(Debug, Args)]
pub struct Serve {
    /// Where the node keeps its state.
    #[arg(long, env = "NIMBUS_DATA_DIR", default_value = "nimbus-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    listen: ListenArgs,
}

impl Serve {
    /// Runs the node until SIGINT or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        let data = DataDir::open(&self.data_dir)?;
        let node = Node::bind(self.listen.config()?, None, data).await?;
        super::serve_until_signal(node).await
    }
}
