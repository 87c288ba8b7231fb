//! Finding a function's component, compiling it once and keeping it pre-instantiated.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use nimbus_core::FunctionSpec;
use wasmtime::{
    Engine,
    component::{Component, Linker},
};
use wasmtime_wasi_http::bindings::ProxyPre;

use crate::host::Host;

/// The target Rust wasm functions are built for.
const TARGET: &str = "wasm32-wasip2";

/// Where `function`'s component is.
///
/// A `code` that is not a directory is the component itself (a `.wasm` file). A
/// directory holds a Cargo package built with `cargo build --release --target
/// wasm32-wasip2`: the component is
/// `<target>/wasm32-wasip2/release/<lib name>.wasm`, where `<lib name>` is the package's
/// `[lib] name`, else its `[package] name` with `-` replaced by `_`, and `<target>` is
/// `target_dir` if given (relative to the package, as Cargo takes `CARGO_TARGET_DIR`
/// when run there), else `<code>/target`.
pub fn component_path(function: &FunctionSpec, target_dir: Option<&Path>) -> PathBuf {
    let code = &function.code;
    if !code.is_dir() {
        return code.clone();
    }
    let manifest = std::fs::read_to_string(code.join("Cargo.toml")).unwrap_or_default();
    let name = artifact_name(&manifest).unwrap_or_else(|| function.name.replace('-', "_"));
    let target = match target_dir {
        Some(dir) => code.join(dir),
        None => code.join("target"),
    };
    target
        .join(TARGET)
        .join("release")
        .join(format!("{name}.wasm"))
}

/// The name Cargo gives a package's library artifact, read from its `Cargo.toml`.
fn artifact_name(manifest: &str) -> Option<String> {
    let mut section = String::new();
    let mut package = None;
    let mut lib = None;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(header) = line.strip_prefix('[') {
            section = header.trim_end_matches(']').trim().to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "name" {
            continue;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
        match (section.as_str(), value) {
            ("package", Some(v)) => package = Some(v.to_owned()),
            ("lib", Some(v)) => lib = Some(v.to_owned()),
            _ => {}
        }
    }
    lib.or(package).map(|name| name.replace('-', "_"))
}

/// A compiled component, linked and ready to instantiate.
struct Loaded {
    modified: Option<SystemTime>,
    len: u64,
    pre: ProxyPre<Host>,
}

/// The compiled component of each file in use, rebuilt when the file changes. Functions
/// sharing a file share its compiled code.
#[derive(Default)]
pub(crate) struct Components {
    by_path: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<Option<Loaded>>>>>,
}

impl Components {
    /// The pre-instantiated component at `path`: compiled (in a blocking task;
    /// wasmtime's cache makes an unchanged file cheap to compile again) on first use and
    /// whenever the file changed, shared otherwise. Concurrent first starts wait for one
    /// compilation.
    pub(crate) async fn get(
        &self,
        engine: &Engine,
        linker: &Arc<Linker<Host>>,
        path: &Path,
    ) -> Result<ProxyPre<Host>, String> {
        let slot = Arc::clone(
            self.by_path
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(path.to_owned())
                .or_default(),
        );
        let mut slot = slot.lock().await;
        let meta = std::fs::metadata(path).map_err(|e| {
            format!(
                "cannot read the component {}: {e} (build a Rust function with `cargo build --release --target {TARGET}`)",
                path.display()
            )
        })?;
        let (modified, len) = (meta.modified().ok(), meta.len());
        if let Some(loaded) = slot.as_ref()
            && loaded.modified == modified
            && loaded.len == len
            && modified.is_some()
        {
            return Ok(loaded.pre.clone());
        }
        let (engine, linker, owned) = (engine.clone(), Arc::clone(linker), path.to_owned());
        let pre = tokio::task::spawn_blocking(move || compile(&engine, &linker, &owned))
            .await
            .map_err(|e| format!("compilation did not finish: {e}"))??;
        *slot = Some(Loaded {
            modified,
            len,
            pre: pre.clone(),
        });
        Ok(pre)
    }
}

fn compile(engine: &Engine, linker: &Linker<Host>, path: &Path) -> Result<ProxyPre<Host>, String> {
    let component = Component::from_file(engine, path)
        .map_err(|e| format!("cannot compile {}: {e:#}", path.display()))?;
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        format!(
            "cannot link {}: {e:#} (a wasm function may import WASI 0.2 and wasi:http only)",
            path.display()
        )
    })?;
    ProxyPre::new(pre).map_err(|e| {
        format!(
            "{} does not export wasi:http/incoming-handler: {e:#}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_follow_cargo() {
        assert_eq!(
            artifact_name("[package]\nname = \"my-fn\"\nversion = \"0.1.0\"\n").as_deref(),
            Some("my_fn")
        );
        assert_eq!(
            artifact_name(
                "[package]\nname = 'pkg' # the package\n[lib]\ncrate-type = [\"cdylib\"]\nname = \"lib-name\"\n"
            )
            .as_deref(),
            Some("lib_name")
        );
        assert_eq!(
            artifact_name("[dependencies]\nname = \"x\"\n").as_deref(),
            None
        );
    }
}
