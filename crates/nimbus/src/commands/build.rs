//! What `nimbus up` prepares before serving, and again when a function's dependency
//! files change: each function's dependencies, and the AWS SDK that Lambda's Python
//! runtime provides.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, bail};
use nimbus_core::{AppSpec, FunctionSpec, RuntimeKind};

use crate::progress::Progress;

/// The AWS SDK for Python offered to Python functions, as Lambda's Python runtimes
/// include one (a function's own bundled boto3 comes first on `sys.path`).
pub(crate) const PYTHON_SDK: &str = "boto3==1.44.8";

/// Files whose change means a function's dependencies must be installed again.
pub(crate) const DEPENDENCY_FILES: [&str; 3] =
    ["package.json", "package-lock.json", "requirements.txt"];

/// Where Nimbus keeps what several apps share: `NIMBUS_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/nimbus`, else `~/.cache/nimbus`.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("NIMBUS_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("nimbus"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("nimbus"))
}

/// Prepares every function, a progress line each; returns where the Python SDK is when
/// the app has Python functions and it could be installed. A missing SDK is a warning,
/// not an error: functions that bundle their own boto3, or use none, still run.
pub(crate) async fn prepare_app(
    app: &AppSpec,
    deps_root: &Path,
    progress: &Progress,
) -> anyhow::Result<Option<PathBuf>> {
    let mut sdk = None;
    if app
        .functions
        .values()
        .any(|f| f.runtime.kind == RuntimeKind::Python)
    {
        let task = progress.task("python runtime", &format!("AWS SDK ({PYTHON_SDK})"));
        match install_python_sdk().await {
            Ok(dir) => {
                task.done();
                sdk = Some(dir);
            }
            Err(e) => {
                task.warn(&format!("{e:#}"));
                tracing::warn!(error = %format!("{e:#}"), "Python functions will not find boto3 unless they bundle it");
            }
        }
    }
    let mut npm_done: Vec<PathBuf> = Vec::new();
    for function in app.functions.values() {
        if function.runtime.kind == RuntimeKind::Nodejs {
            if npm_done.contains(&function.code) {
                continue;
            }
            npm_done.push(function.code.clone());
        }
        prepare_function(function, deps_root, false, progress).await?;
    }
    Ok(sdk)
}

/// Prepares one function: `npm ci` (with a lock file) or `npm install` for a Node.js
/// function with a `package.json` and no `node_modules` yet, or always when `force`;
/// `pip install` of a Python function's `requirements.txt` into a directory of its own
/// under `deps_root` (as `sam build` vendors dependencies) when it changed since the last
/// install.
pub(crate) async fn prepare_function(
    function: &FunctionSpec,
    deps_root: &Path,
    force: bool,
    progress: &Progress,
) -> anyhow::Result<()> {
    match function.runtime.kind {
        RuntimeKind::Nodejs => install_npm(function, force, progress).await,
        RuntimeKind::Python => install_requirements(function, deps_root, progress).await,
        RuntimeKind::Wasm => build_component(function, progress).await,
        RuntimeKind::Provided => Ok(()),
    }
}

/// Builds a wasm function given as a Cargo package with
/// `cargo build --release --target wasm32-wasip2` (incremental: quick when nothing
/// changed); a function given as a `.wasm` file needs nothing.
async fn build_component(function: &FunctionSpec, progress: &Progress) -> anyhow::Result<()> {
    let code = function.code.as_path();
    if !code.is_dir() {
        return Ok(());
    }
    let task = progress.task(
        &function.name,
        "cargo build --release --target wasm32-wasip2",
    );
    tracing::info!(function = %function.name, dir = %code.display(), "building the wasm component");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = tokio::process::Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(code)
        // The package's own target directory, where the runtime looks for the component.
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .output()
        .await;
    finish(task, out, || {
        format!(
            "cargo build of wasm function {} in {} (is the wasm32-wasip2 target installed? rustup target add wasm32-wasip2)",
            function.name,
            code.display()
        )
    })
}

async fn install_npm(
    function: &FunctionSpec,
    force: bool,
    progress: &Progress,
) -> anyhow::Result<()> {
    let code = function.code.as_path();
    if !code.join("package.json").is_file() || (code.join("node_modules").is_dir() && !force) {
        return Ok(());
    }
    let verb = if code.join("package-lock.json").is_file() {
        "ci"
    } else {
        "install"
    };
    let task = progress.task(&function.name, &format!("npm {verb}"));
    tracing::info!(function = %function.name, dir = %code.display(), "running npm {verb}");
    let out = tokio::process::Command::new("npm")
        .arg(verb)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(code)
        .stdin(Stdio::null())
        .output()
        .await;
    finish(task, out, || {
        format!(
            "npm {verb} for function {} in {}",
            function.name,
            code.display()
        )
    })
}

async fn install_requirements(
    function: &FunctionSpec,
    deps_root: &Path,
    progress: &Progress,
) -> anyhow::Result<()> {
    let requirements = function.code.join("requirements.txt");
    if !requirements.is_file() {
        return Ok(());
    }
    let target = deps_root.join(&function.name);
    let wanted = std::fs::read(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let stamp = target.join(".nimbus-requirements");
    if std::fs::read(&stamp).ok().as_deref() == Some(wanted.as_slice()) {
        return Ok(());
    }
    let task = progress.task(&function.name, "pip install -r requirements.txt");
    tracing::info!(function = %function.name, "installing Python requirements");
    let out = pip_install(&target, &["-r".as_ref(), requirements.as_os_str()]).await;
    finish(task, out, || {
        format!("pip install for function {}", function.name)
    })?;
    std::fs::write(&stamp, &wanted)?;
    Ok(())
}

async fn pip_install(
    target: &Path,
    what: &[&std::ffi::OsStr],
) -> std::io::Result<std::process::Output> {
    tokio::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
        ])
        .arg(target)
        .args(what)
        .stdin(Stdio::null())
        .output()
        .await
}

/// Ends a progress task with the outcome of a tool it ran.
fn finish(
    task: crate::progress::Task,
    out: std::io::Result<std::process::Output>,
    what: impl Fn() -> String,
) -> anyhow::Result<()> {
    match out {
        Ok(out) if out.status.success() => {
            task.done();
            Ok(())
        }
        Ok(out) => {
            task.fail();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            bail!(
                "{} failed: {}",
                what(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )
        }
        Err(e) => {
            task.fail();
            Err(e).with_context(|| format!("cannot run {}", what()))
        }
    }
}

/// Installs [`PYTHON_SDK`] once per machine into the cache directory and returns where.
async fn install_python_sdk() -> anyhow::Result<PathBuf> {
    let root = cache_dir()
        .context("no cache directory (set NIMBUS_CACHE_DIR)")?
        .join("python-sdk");
    let dir = root.join(PYTHON_SDK.replace("==", "-"));
    if dir.join("boto3").is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    // Installed beside, then renamed into place: a half-done install is never used, and
    // two nodes installing at once both end with a whole one.
    let partial = tempfile::tempdir_in(&root)?;
    let out = pip_install(partial.path(), &[PYTHON_SDK.as_ref()]).await?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "pip install {PYTHON_SDK} failed: {}",
            stderr.lines().last().unwrap_or("")
        );
    }
    let partial = partial.keep();
    if std::fs::rename(&partial, &dir).is_err() {
        // Someone else installed it first.
        let _ = std::fs::remove_dir_all(&partial);
    }
    Ok(dir)
}
