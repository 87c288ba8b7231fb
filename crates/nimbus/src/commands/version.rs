//! `nimbus version`.

use clap::Args;

/// Prints the version of Nimbus and of the components it embeds.
#[derive(Debug, Args)]
pub struct Version {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

impl Version {
    /// Prints the version.
    pub async fn run(self) -> anyhow::Result<()> {
        let version = env!("CARGO_PKG_VERSION");
        if self.json {
            outln!(
                "{}",
                serde_json::json!({ "nimbus": version, "target": std::env::consts::ARCH, "os": std::env::consts::OS })
            )?;
        } else {
            outln!("nimbus {version}")?;
        }
        Ok(())
    }
}
