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
/// directory holds a Cargo package that `nimbus up` builds with `cargo build --release
/// --target wasm32-wasip2 --target-dir <code>/target`: the component is
/// `<target>/wasm32-wasip2/release/<artifact>.wasm`, named as Cargo names it (see
/// [`artifact_name`]), where `<target>` is `target_dir` if given (relative to the
/// package, as Cargo takes `--target-dir` when run there), else `<code>/target`.
///
/// The name is worked out from the package alone, not handed over by the build, because
/// a node that serves a deployed app (`nimbus serve`) finds components it did not build.
pub fn component_path(function: &FunctionSpec, target_dir: Option<&Path>) -> PathBuf {
    let code = &function.code;
    if !code.is_dir() {
        return code.clone();
    }
    let manifest = std::fs::read_to_string(code.join("Cargo.toml")).unwrap_or_default();
    let has_main = code.join("src").join("main.rs").is_file();
    let name =
        artifact_name(&manifest, has_main).unwrap_or_else(|| function.name.replace('-', "_"));
    let target = match target_dir {
        Some(dir) => code.join(dir),
        None => code.join("target"),
    };
    target
        .join(TARGET)
        .join("release")
        .join(format!("{name}.wasm"))
}

/// The file name (without `.wasm`) Cargo gives the component a package builds, read from
/// its `Cargo.toml`; `has_main` says whether it has a `src/main.rs`.
///
/// Cargo writes a `.wasm` for a `cdylib` library, named after the `[lib] name`, else the
/// package name, with `-` replaced by `_` (`my_fn.wasm`); and for each binary, named
/// after the binary as it is (`my-fn.wasm`): the first `[[bin]] name`, else the package
/// name when there is a `src/main.rs`. A library that is not a `cdylib` makes no `.wasm`,
/// so the binary is the component then; a package with both a `cdylib` and a binary runs
/// its library. `None` when the manifest does not parse or names no package.
fn artifact_name(manifest: &str, has_main: bool) -> Option<String> {
    let manifest = toml_span::parse(manifest).ok()?;
    let text = |pointer: &str| {
        manifest
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let package = text("/package/name")?;
    let library = || {
        text("/lib/name")
            .unwrap_or_else(|| package.clone())
            .replace('-', "_")
    };
    // Cargo still reads the older `crate_type` spelling.
    let cdylib = ["/lib/crate-type", "/lib/crate_type"]
        .iter()
        .any(|pointer| {
            manifest
                .pointer(pointer)
                .and_then(|v| v.as_array())
                .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")))
        });
    if cdylib {
        return Some(library());
    }
    match text("/bin/0/name") {
        Some(bin) => Some(bin),
        None if has_main => Some(package),
        None => Some(library()),
    }
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
        // A library (a cdylib, or declared some other way): `-` becomes `_`.
        assert_eq!(
            artifact_name("[package]\nname = \"my-fn\"\nversion = \"0.1.0\"\n", false).as_deref(),
            Some("my_fn")
        );
        assert_eq!(
            artifact_name(
                "[package]\nname = 'pkg' # the package\n[lib]\ncrate-type = [\"cdylib\"]\nname = \"lib-name\"\n",
                false
            )
            .as_deref(),
            Some("lib_name")
        );
        assert_eq!(
            artifact_name("[dependencies]\nname = \"x\"\n", false).as_deref(),
            None
        );
        // A binary keeps its name as it is.
        assert_eq!(
            artifact_name("[package]\nname = \"my-fn\"\n", true).as_deref(),
            Some("my-fn")
        );
        assert_eq!(
            artifact_name(
                "[package]\nname = \"my-fn\"\n[[bin]]\nname = \"the-handler\"\npath = \"src/h.rs\"\n[[bin]]\nname = \"other\"\n",
                false
            )
            .as_deref(),
            Some("the-handler")
        );
        // A cdylib is the component even beside a binary, its crate-type on any line.
        assert_eq!(
            artifact_name(
                "[package]\nname = \"my-fn\"\n[lib]\ncrate-type = [\n  \"rlib\",\n  \"cdylib\",\n]\n",
                true
            )
            .as_deref(),
            Some("my_fn")
        );
        // A library that is not a cdylib makes no .wasm: the binary is the component.
        assert_eq!(
            artifact_name(
                "[package]\nname = \"my-fn\"\n[lib]\nname = \"core-lib\"\n",
                true
            )
            .as_deref(),
            Some("my-fn")
        );
    }

    #[test]
    fn a_binary_package_is_found_where_cargo_builds_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"my-fn\"\nversion = \"0.1.0\"\n",
        )
        .unwrap();
        let spec = FunctionSpec {
            concurrency: nimbus_core::Concurrency {
                max: 1,
                min_warm: 0,
            },
            ..FunctionSpec::new(
                "f",
                "wasm".parse().expect("wasm is a runtime"),
                dir.path().to_owned(),
            )
        };
        assert_eq!(
            component_path(&spec, None),
            dir.path().join("target/wasm32-wasip2/release/my-fn.wasm")
        );
    }
}
