//! What `nimbus up` prepares before serving: each function's dependencies.

use std::{path::Path, process::Stdio};

use anyhow::{Context, bail};
use nimbus_core::{AppSpec, RuntimeKind};

/// Installs npm dependencies for every Node.js function whose `package.json` has no
/// `node_modules` yet (`npm ci` with a lock file, `npm install` without), as `sam build`
/// would before a deploy.
pub(crate) async fn install_dependencies(app: &AppSpec) -> anyhow::Result<()> {
    let mut done: Vec<&Path> = Vec::new();
    for function in app.functions.values() {
        let code = function.code.as_path();
        if function.runtime.kind != RuntimeKind::Nodejs
            || done.contains(&code)
            || !code.join("package.json").is_file()
            || code.join("node_modules").is_dir()
        {
            continue;
        }
        done.push(code);
        let verb = if code.join("package-lock.json").is_file() {
            "ci"
        } else {
            "install"
        };
        tracing::info!(function = %function.name, dir = %code.display(), "running npm {verb}");
        let out = tokio::process::Command::new("npm")
            .arg(verb)
            .args(["--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(code)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run npm for function {}", function.name))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            bail!(
                "npm {verb} failed for function {} in {}: {}",
                function.name,
                code.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            );
        }
    }
    Ok(())
}
