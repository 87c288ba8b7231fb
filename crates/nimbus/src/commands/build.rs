//! What `nimbus up` prepares before serving, and again when a function's dependency
//! files change: each function's dependencies, and the AWS SDKs that Lambda's Python and
//! Node.js runtimes provide.

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

/// The AWS SDK for JavaScript v3 offered to Node.js functions, as Lambda's Node.js 18 and
/// later runtimes include it: the clients of the services Nimbus serves (DynamoDB, its
/// document client and streams, Lambda). A function's own `node_modules` come first.
pub(crate) const NODE_SDK: [(&str, &str); 4] = [
    ("@aws-sdk/client-dynamodb", "3.1169.0"),
    ("@aws-sdk/lib-dynamodb", "3.1169.0"),
    ("@aws-sdk/client-dynamodb-streams", "3.1141.0"),
    ("@aws-sdk/client-lambda", "3.1164.0"),
];

/// Where the AWS SDKs `nimbus up` installed are, for the functions of the runtimes that
/// include one on Lambda.
#[derive(Debug, Default)]
pub(crate) struct Sdks {
    /// boto3's directory, for Python functions.
    pub(crate) python: Option<PathBuf>,
    /// The `node_modules` of the SDK for JavaScript v3, for Node.js functions.
    pub(crate) node: Option<PathBuf>,
}

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

/// Prepares every function, a progress line each; returns where the AWS SDKs are, for
/// the runtimes the app uses, where they could be installed. A missing SDK is a warning,
/// not an error: functions that bundle their own, or use none, still run.
pub(crate) async fn prepare_app(
    app: &AppSpec,
    deps_root: &Path,
    progress: &Progress,
) -> anyhow::Result<Sdks> {
    let mut sdks = Sdks::default();
    let uses = |kind| app.functions.values().any(|f| f.runtime.kind == kind);
    if uses(RuntimeKind::Python) {
        let task = progress.task("python runtime", &format!("AWS SDK ({PYTHON_SDK})"));
        match install_python_sdk().await {
            Ok(dir) => {
                task.done();
                sdks.python = Some(dir);
            }
            Err(e) => {
                task.warn(&format!("{e:#}"));
                tracing::warn!(error = %format!("{e:#}"), "Python functions will not find boto3 unless they bundle it");
            }
        }
    }
    if uses(RuntimeKind::Nodejs) {
        let task = progress.task("nodejs runtime", "AWS SDK for JavaScript v3");
        match install_node_sdk().await {
            Ok(dir) => {
                task.done();
                sdks.node = Some(dir);
            }
            Err(e) => {
                task.warn(&format!("{e:#}"));
                tracing::warn!(error = %format!("{e:#}"), "Node.js functions will not find @aws-sdk/* unless they bundle it");
            }
        }
    }
    warn_of_other_versions(app).await;
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
    Ok(sdks)
}

/// Prepares one function: for a Node.js function with a `package.json`, `npm ci` (with a
/// lock file) or `npm install` when it has no `node_modules` yet, and `npm install` when
/// `force` (its dependencies changed while running: `npm ci` would refuse a lock file
/// that no longer matches `package.json`, and would delete `node_modules` first);
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
/// `cargo build --release --target wasm32-wasip2 --target-dir <code>/target`
/// (incremental: quick when nothing changed); a function given as a `.wasm` file needs
/// nothing.
///
/// The target directory is given on the command line because that beats every other
/// place Cargo takes it from (`CARGO_TARGET_DIR`, `CARGO_BUILD_TARGET_DIR`, a
/// `.cargo/config.toml`, the workspace the package is a member of), so the component is
/// always where the runtime looks for it (`nimbus_runtime_wasm::component_path`).
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
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(code.join("target"))
        .current_dir(code)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    finish(
        task,
        out,
        || {
            format!(
                "cargo build of wasm function {} in {}",
                function.name,
                code.display()
            )
        },
        missing_target_hint,
    )
}

/// The way out when the compiler says the wasm32-wasip2 standard library is missing
/// ("can't find crate for `std`", with a note that the target may not be installed).
fn missing_target_hint(stderr: &str) -> Option<&'static str> {
    let missing = stderr.contains("target may not be installed")
        || (stderr.contains("wasm32-wasip2") && stderr.contains("can't find crate for"));
    missing.then_some("is the wasm32-wasip2 target installed? rustup target add wasm32-wasip2")
}

async fn install_npm(
    function: &FunctionSpec,
    force: bool,
    progress: &Progress,
) -> anyhow::Result<()> {
    let code = function.code.as_path();
    let installed = code.join("node_modules").is_dir();
    if !code.join("package.json").is_file() || (installed && !force) {
        return Ok(());
    }
    // `npm ci` installs exactly the lock, for a first install; over an existing
    // `node_modules` after a change, `npm install` brings the lock and the installed
    // packages in line with `package.json` in place.
    let verb = if !installed && code.join("package-lock.json").is_file() {
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
        .kill_on_drop(true)
        .output()
        .await;
    finish(
        task,
        out,
        || {
            format!(
                "npm {verb} for function {} in {}",
                function.name,
                code.display()
            )
        },
        |_| None,
    )
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
    // Absolute, as pip runs in the code directory.
    let target = std::path::absolute(deps_root.join(&function.name))
        .with_context(|| format!("cannot resolve {}", deps_root.display()))?;
    let wanted = std::fs::read(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let stamp = target.join(".nimbus-requirements");
    if std::fs::read(&stamp).ok().as_deref() == Some(wanted.as_slice()) {
        return Ok(());
    }
    let task = progress.task(&function.name, "pip install -r requirements.txt");
    tracing::info!(function = %function.name, "installing Python requirements");
    // In the code directory, where pip resolves the relative paths a requirements file
    // may name (`-r base.txt`, `./libs/mine`), as `pip install -r requirements.txt` run
    // there by hand does.
    let out = pip_install(
        &target,
        &["-r".as_ref(), requirements.as_os_str()],
        Some(&function.code),
    )
    .await;
    finish(
        task,
        out,
        || format!("pip install for function {}", function.name),
        |_| None,
    )?;
    std::fs::write(&stamp, &wanted)?;
    Ok(())
}

/// Runs `pip install --target target what...`, in `dir` when given.
async fn pip_install(
    target: &Path,
    what: &[&std::ffi::OsStr],
    dir: Option<&Path>,
) -> std::io::Result<std::process::Output> {
    let mut command = tokio::process::Command::new("python3");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    command
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
        .kill_on_drop(true)
        .output()
        .await
}

/// Ends a progress task with the outcome of a tool it ran; a failure says what the tool
/// reported ([`failure_summary`]) and, when `hint` finds one in its stderr, the way out.
fn finish(
    task: crate::progress::Task,
    out: std::io::Result<std::process::Output>,
    what: impl Fn() -> String,
    hint: impl Fn(&str) -> Option<&'static str>,
) -> anyhow::Result<()> {
    match out {
        Ok(out) if out.status.success() => {
            task.done();
            Ok(())
        }
        Ok(out) => {
            task.fail();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let hint = hint(&stderr).map(|h| format!(" ({h})")).unwrap_or_default();
            bail!(
                "{} failed{hint}:\n{}",
                what(),
                failure_summary(&stderr, SUMMARY_BYTES)
            )
        }
        Err(e) => {
            task.fail();
            Err(e).with_context(|| format!("cannot run {}", what()))
        }
    }
}

/// Most of a failed tool's stderr put in its error.
const SUMMARY_BYTES: usize = 4096;

/// What a failed build or install reported, at most about `max` bytes: its error lines
/// (`error[E0425]: ...`, `error: could not compile`, pip's `ERROR: ...`, `npm error ...`)
/// each with the `-->` location line that follows it; else, when it printed none such, the
/// end of its stderr. Cargo's and npm's errors come before their last lines, which are
/// only a summary (`could not compile ... due to 1 previous error`, `npm error A complete
/// log ...`), so the tail alone loses what went wrong.
fn failure_summary(stderr: &str, max: usize) -> String {
    let is_error = |line: &str| {
        let line = line.trim_start().to_ascii_lowercase();
        line.starts_with("error") || line.starts_with("npm error") || line.starts_with("npm err!")
    };
    let mut picked: Vec<&str> = Vec::new();
    let mut after_error = false;
    for line in stderr.lines() {
        if is_error(line) {
            picked.push(line);
            after_error = true;
        } else if after_error && line.trim_start().starts_with("-->") {
            picked.push(line);
            after_error = false;
        } else if !line.trim().is_empty() {
            // Only the location right under an error line belongs to it.
            after_error = false;
        }
    }
    let mut kept = Vec::new();
    let mut size = 0;
    if picked.is_empty() {
        // The tail: the last lines that fit, in their order.
        for line in stderr.lines().rev().filter(|l| !l.trim().is_empty()) {
            if size + line.len() + 3 > max && !kept.is_empty() {
                break;
            }
            size += line.len() + 3;
            kept.push(line);
        }
        kept.reverse();
    } else {
        let total = picked.len();
        for line in picked {
            if size + line.len() + 3 > max && !kept.is_empty() {
                break;
            }
            size += line.len() + 3;
            kept.push(line);
        }
        if kept.len() < total {
            kept.push("...");
        }
    }
    let mut summary = kept
        .iter()
        .map(|l| format!("  {}", l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n");
    if summary.len() > max + 4 {
        // One line longer than the whole allowance (or the "..." past it).
        let mut end = max;
        while !summary.is_char_boundary(end) {
            end -= 1;
        }
        summary.truncate(end);
        summary.push_str("...");
    }
    if summary.is_empty() {
        summary.push_str("  (nothing on stderr)");
    }
    summary
}

/// Installs [`PYTHON_SDK`] once per machine into the cache directory and returns where.
async fn install_python_sdk() -> anyhow::Result<PathBuf> {
    let dir = cache_dir()
        .context("no cache directory (set NIMBUS_CACHE_DIR)")?
        .join("python-sdk")
        .join(PYTHON_SDK.replace("==", "-"));
    let complete = |dir: &Path| dir.join("boto3").is_dir();
    if complete(&dir) {
        return Ok(dir);
    }
    install_in_place(&dir, complete, |partial| async move {
        let out = pip_install(&partial, &[PYTHON_SDK.as_ref()], None).await?;
        if !out.status.success() {
            bail!(
                "pip install {PYTHON_SDK} failed: {}",
                last_line(&out.stderr)
            );
        }
        Ok(())
    })
    .await?;
    Ok(dir)
}

/// The interpreter version a runtime identifier names (`python3.12` -> `3.12`,
/// `nodejs20.x` -> `20`), if it names one.
fn declared_version(identifier: &str) -> Option<&str> {
    identifier
        .strip_prefix("python")
        .or_else(|| {
            identifier
                .strip_prefix("nodejs")
                .map(|v| v.strip_suffix(".x").unwrap_or(v))
        })
        .filter(|v| !v.is_empty())
}

/// Whether the version an interpreter printed (`Python 3.11.7`, `v20.20.2`) is the one
/// `declared` names, compared on the parts `declared` has.
fn same_version(declared: &str, printed: &str) -> bool {
    let printed = printed
        .trim()
        .trim_start_matches("Python ")
        .trim_start_matches('v');
    let mut printed = printed.split('.');
    declared.split('.').all(|part| printed.next() == Some(part))
}

/// Says so when a function declares a runtime version the machine's interpreter is not:
/// Node.js and Python functions run on the host's `node` and `python3`, whatever
/// version the manifest names (`python3.12` code may not even parse on 3.11).
async fn warn_of_other_versions(app: &AppSpec) {
    let mut printed: Vec<(RuntimeKind, Option<String>)> = Vec::new();
    for function in app.functions.values() {
        let kind = function.runtime.kind;
        let Some(declared) = declared_version(&function.runtime.identifier) else {
            continue;
        };
        let program = match kind {
            RuntimeKind::Nodejs => "node",
            RuntimeKind::Python => "python3",
            _ => continue,
        };
        let version = match printed.iter().find(|(k, _)| *k == kind) {
            Some((_, version)) => version.clone(),
            None => {
                let version = tokio::process::Command::new(program)
                    .arg("--version")
                    .stdin(Stdio::null())
                    .output()
                    .await
                    .ok()
                    .filter(|out| out.status.success())
                    .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
                printed.push((kind, version.clone()));
                version
            }
        };
        if let Some(version) = version
            && !same_version(declared, &version)
        {
            tracing::warn!(
                function = %function.name,
                runtime = %function.runtime.identifier,
                "the function declares {}, but runs on this machine's {program}, {version}",
                function.runtime.identifier
            );
        }
    }
}

/// Installs [`NODE_SDK`] once per machine into the cache directory (as the Python SDK),
/// and returns its `node_modules`.
async fn install_node_sdk() -> anyhow::Result<PathBuf> {
    let dir = cache_dir()
        .context("no cache directory (set NIMBUS_CACHE_DIR)")?
        .join("node-sdk")
        .join(node_sdk_dir());
    let complete = |dir: &Path| {
        NODE_SDK.iter().all(|(name, version)| {
            std::fs::read_to_string(dir.join("node_modules").join(name).join("package.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|package| package["version"] == *version)
        })
    };
    if complete(&dir) {
        return Ok(dir.join("node_modules"));
    }
    install_in_place(&dir, complete, |partial| async move {
        let dependencies: serde_json::Map<String, serde_json::Value> = NODE_SDK
            .iter()
            .map(|(name, version)| ((*name).to_owned(), (*version).into()))
            .collect();
        let manifest = serde_json::json!({
            "name": "nimbus-node-sdk",
            "private": true,
            "dependencies": dependencies,
        });
        std::fs::write(partial.join("package.json"), manifest.to_string())?;
        let out = tokio::process::Command::new("npm")
            .args([
                "install",
                "--omit=dev",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(&partial)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run npm (Node.js functions need it)")?;
        if !out.status.success() {
            bail!(
                "npm install of the AWS SDK for JavaScript v3 failed: {}",
                last_line(&out.stderr)
            );
        }
        Ok(())
    })
    .await?;
    Ok(dir.join("node_modules"))
}

/// The directory [`NODE_SDK`] is installed in, under the cache's `node-sdk`: named by
/// its packages' number and versions, so that another list is another install.
fn node_sdk_dir() -> String {
    let versions: Vec<&str> = NODE_SDK.iter().map(|(_, version)| *version).collect();
    format!("aws-sdk-js-{}-{}", NODE_SDK.len(), versions.join("-"))
}

/// The last line a tool wrote to stderr: what it failed on.
fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned()
}

/// Makes `dir` with `install`, which fills the directory it is given: beside `dir`, then
/// renamed into place, so that a half-done install is never used, and two nodes
/// installing at once both end with a whole one. `complete` tells a whole one; a `dir`
/// that is in the way and is not one is an error, not taken for someone else's install.
async fn install_in_place<F, Fut>(
    dir: &Path,
    complete: impl Fn(&Path) -> bool,
    install: F,
) -> anyhow::Result<()>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let root = dir.parent().context("an install directory has a parent")?;
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let partial = tempfile::tempdir_in(root)?;
    install(partial.path().to_path_buf()).await?;
    let partial = partial.keep();
    if let Err(e) = std::fs::rename(&partial, dir) {
        let _ = std::fs::remove_dir_all(&partial);
        // Someone else installed it first, or something else is there.
        if !complete(dir) {
            bail!(
                "cannot put the install in place at {} ({e}); remove what is there",
                dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_runtime_versions_are_compared_with_the_interpreters() {
        assert_eq!(declared_version("python3.12"), Some("3.12"));
        assert_eq!(declared_version("nodejs20.x"), Some("20"));
        assert_eq!(declared_version("python"), None);
        assert_eq!(declared_version("nodejs"), None);
        assert!(same_version("3.11", "Python 3.11.7"));
        assert!(!same_version("3.12", "Python 3.11.7"));
        assert!(!same_version("3.1", "Python 3.11.7"));
        assert!(same_version("20", "v20.20.2\n"));
        assert!(!same_version("22", "v20.20.2"));
    }

    #[test]
    fn a_failed_build_reports_the_compiler_errors() {
        let stderr = "   Compiling my-fn v0.1.0 (/app/my-fn)
error[E0425]: cannot find value `x` in this scope
 --> src/lib.rs:3:5
  |
3 |     x
  |     ^ not found in this scope

For more information about this error, try `rustc --explain E0425`.
error: could not compile `my-fn` (lib) due to 1 previous error
";
        let summary = failure_summary(stderr, SUMMARY_BYTES);
        assert_eq!(
            summary,
            "  error[E0425]: cannot find value `x` in this scope\n   --> src/lib.rs:3:5\n  error: could not compile `my-fn` (lib) due to 1 previous error"
        );
        assert_eq!(missing_target_hint(stderr), None);
    }

    #[test]
    fn a_missing_target_is_hinted_at() {
        let stderr = "error[E0463]: can't find crate for `std`
  |
  = note: the `wasm32-wasip2` target may not be installed
  = help: consider downloading the target with `rustup target add wasm32-wasip2`
";
        assert!(missing_target_hint(stderr).is_some_and(|h| h.contains("rustup target add")));
        assert!(failure_summary(stderr, SUMMARY_BYTES).contains("can't find crate for `std`"));
    }

    #[test]
    fn without_error_lines_the_tail_is_reported_within_the_cap() {
        let stderr: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let summary = failure_summary(&stderr, 100);
        assert!(summary.len() <= 120, "{summary}");
        assert!(summary.ends_with("line 1999"), "{summary}");
        assert!(!summary.contains("line 0\n"));
        // Many error lines are cut at the cap, and say so.
        let stderr: String = (0..2000).map(|i| format!("error: number {i}\n")).collect();
        let summary = failure_summary(&stderr, 100);
        assert!(summary.starts_with("  error: number 0\n"), "{summary}");
        assert!(summary.ends_with("..."), "{summary}");
        assert_eq!(failure_summary("", 100), "  (nothing on stderr)");
    }

    #[tokio::test]
    async fn requirements_name_paths_relative_to_the_code_directory() {
        let has_pip = std::process::Command::new("python3")
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_pip {
            eprintln!("skipped: no python3 with pip");
            return;
        }
        let app = tempfile::tempdir().unwrap();
        let code = app.path().join("fn");
        std::fs::create_dir(&code).unwrap();
        // A wheel beside the requirements, named by a relative path (no index needed).
        let made = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import zipfile\n\
                 with zipfile.ZipFile('mini-0.1-py3-none-any.whl', 'w') as z:\n\
                 \x20   z.writestr('mini.py', 'X = 1\\n')\n\
                 \x20   z.writestr('mini-0.1.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: mini\\nVersion: 0.1\\n')\n\
                 \x20   z.writestr('mini-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
                 \x20   z.writestr('mini-0.1.dist-info/RECORD', '')\n",
            )
            .current_dir(&code)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::write(
            code.join("requirements.txt"),
            "./mini-0.1-py3-none-any.whl\n",
        )
        .unwrap();
        let function = FunctionSpec {
            handler: Some("app.handler".to_owned()),
            concurrency: nimbus_core::Concurrency {
                max: 1,
                min_warm: 0,
            },
            ..FunctionSpec::new(
                "f",
                "python3.12".parse().expect("python3.12 is a runtime"),
                code.clone(),
            )
        };
        let deps = app.path().join("deps");
        install_requirements(&function, &deps, &Progress::stdout())
            .await
            .expect("the wheel named relative to the code directory installs");
        assert!(deps.join("f").join("mini.py").is_file());
    }
}
