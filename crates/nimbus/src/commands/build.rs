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

/// Installs each Python function's `requirements.txt` into a directory of its own under
/// `deps_root` (as `sam build` vendors dependencies), when the requirements changed since
/// the last install; the runtime puts that directory on `sys.path` after the code.
pub(crate) async fn install_python_requirements(
    app: &AppSpec,
    deps_root: &Path,
) -> anyhow::Result<()> {
    for function in app.functions.values() {
        let requirements = function.code.join("requirements.txt");
        if function.runtime.kind != RuntimeKind::Python || !requirements.is_file() {
            continue;
        }
        let target = deps_root.join(&function.name);
        let wanted = std::fs::read(&requirements)
            .with_context(|| format!("cannot read {}", requirements.display()))?;
        let stamp = target.join(".nimbus-requirements");
        if std::fs::read(&stamp).ok().as_deref() == Some(wanted.as_slice()) {
            continue;
        }
        tracing::info!(function = %function.name, "installing Python requirements");
        let out = tokio::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
            ])
            .arg(&target)
            .arg("-r")
            .arg(&requirements)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run pip for function {}", function.name))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            bail!(
                "pip install failed for function {}: {}",
                function.name,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            );
        }
        std::fs::write(&stamp, &wanted)?;
    }
    Ok(())
}
