//! `nimbus up` watches each function's code and reloads that function alone when it
//! changes, as `cargo lambda watch` and `spin watch` do: new invocations get the new code,
//! in-flight ones finish on the old. A change to `package.json`, `package-lock.json` or
//! `requirements.txt` installs the function's dependencies again first.

use std::{
    collections::BTreeSet,
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use nimbus_core::{AppSpec, FunctionSpec, RuntimeKind};
use nimbus_dispatch::Dispatcher;
use notify_debouncer_full::{
    DebounceEventResult, Debouncer, RecommendedCache, new_debouncer,
    notify::{EventKind, RecommendedWatcher, RecursiveMode},
};

use super::build::{DEPENDENCY_FILES, prepare_function};
use crate::progress::Progress;

/// Directories whose changes never reload a function: Nimbus's own state, version
/// control, installed dependencies and caches.
const IGNORED: [&str; 6] = [
    ".nimbus",
    ".git",
    "node_modules",
    "__pycache__",
    "target",
    ".venv",
];

/// How long changes must settle before a reload (an editor's save is several events).
const SETTLE: Duration = Duration::from_millis(200);

/// Keeps the watch running while alive.
pub(crate) struct Watch {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

fn ignored(path: &Path, code: &Path) -> bool {
    path.strip_prefix(code).is_ok_and(|rest| {
        rest.components().any(|c| match c {
            Component::Normal(name) => IGNORED.iter().any(|i| name == *i),
            _ => false,
        })
    })
}

/// The functions a changed `path` belongs to (code directories may be shared).
fn owners<'a>(functions: &'a [FunctionSpec], path: &Path) -> Vec<&'a FunctionSpec> {
    functions
        .iter()
        .filter(|f| path.starts_with(&f.code) && !ignored(path, &f.code))
        .collect()
}

/// Starts watching the code of `app`'s functions; changes reload them on `dispatcher`.
///
/// Each code directory is watched itself and each of its subdirectories recursively,
/// except the ignored ones (so `node_modules` costs no watches); a subdirectory created
/// later is not watched until the next `up`.
pub(crate) fn start(
    app: &AppSpec,
    dispatcher: Arc<Dispatcher>,
    deps_root: PathBuf,
) -> anyhow::Result<Watch> {
    let functions: Vec<FunctionSpec> = app
        .functions
        .values()
        .filter(|f| f.runtime.kind != RuntimeKind::Wasm || f.code.is_dir())
        .cloned()
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(SETTLE, None, move |events| {
        let _ = tx.send(events);
    })
    .context("cannot watch function code")?;
    let dirs: BTreeSet<&Path> = functions.iter().map(|f| f.code.as_path()).collect();
    for dir in dirs {
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !ignored(&path, dir) {
                debouncer
                    .watch(&path, RecursiveMode::Recursive)
                    .with_context(|| format!("cannot watch {}", path.display()))?;
            }
        }
    }
    tokio::spawn(async move {
        let progress = Progress::stdout();
        while let Some(events) = rx.recv().await {
            let events = match events {
                Ok(events) => events,
                Err(errors) => {
                    for e in errors {
                        tracing::warn!(error = %e, "watching function code failed");
                    }
                    continue;
                }
            };
            // Per function: whether a dependency file changed, and one path to report.
            let mut changed: Vec<(&FunctionSpec, bool, PathBuf)> = Vec::new();
            // Reading the code (opening files, listing directories) is no change.
            let paths = events
                .iter()
                .filter(|e| {
                    matches!(
                        e.kind,
                        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                    )
                })
                .flat_map(|e| e.paths.iter());
            for path in paths {
                let dependencies = path
                    .file_name()
                    .is_some_and(|n| DEPENDENCY_FILES.iter().any(|d| n == *d));
                for f in owners(&functions, path) {
                    match changed.iter_mut().find(|(c, ..)| c.name == f.name) {
                        Some(entry) => entry.1 |= dependencies,
                        None => changed.push((f, dependencies, path.clone())),
                    }
                }
            }
            for (function, dependencies, path) in changed {
                tracing::info!(function = %function.name, path = %path.display(), "function code changed; reloading");
                if dependencies
                    && let Err(e) = prepare_function(function, &deps_root, true, &progress).await
                {
                    tracing::error!(function = %function.name, error = %format!("{e:#}"), "cannot install the function's dependencies; it keeps its old code");
                    continue;
                }
                if let Err(e) = dispatcher.reload(function.clone()).await {
                    tracing::error!(function = %function.name, error = %e, "cannot reload");
                }
            }
        }
    });
    Ok(Watch {
        _debouncer: debouncer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_dependency_directories_are_ignored() {
        let code = Path::new("/app");
        assert!(ignored(Path::new("/app/.nimbus/tables.redb"), code));
        assert!(ignored(Path::new("/app/node_modules/x/index.js"), code));
        assert!(ignored(Path::new("/app/pkg/__pycache__/m.pyc"), code));
        assert!(!ignored(Path::new("/app/index.js"), code));
        assert!(!ignored(Path::new("/app/lib/util.js"), code));
        // Only below the code directory: an app living under `target/` still reloads.
        assert!(!ignored(
            Path::new("/target/app/index.js"),
            Path::new("/target/app")
        ));
    }
}
