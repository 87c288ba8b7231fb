//! `nimbus up` watches each function's code (its directory, or its `.wasm` file) and
//! reloads that function alone when it changes, as `cargo lambda watch` and `spin watch`
//! do: new invocations get the new code, in-flight ones finish on the old. A change to
//! `package.json`, `package-lock.json` or `requirements.txt` installs the function's
//! dependencies again first; the `package-lock.json` that install itself writes is not a
//! change.
//!
//! It also watches `nimbus.toml`: a valid new version swaps the gateway's routes,
//! authorizers, API keys, rate limits and CORS (requests in flight finish on the old), and
//! reloads the functions whose settings changed; adding or removing functions or tables
//! needs a restart, and says so. An invalid version is reported and the app keeps running
//! as it was.
//!
//! Changes that are not code do not reload: Nimbus's own state and dependency
//! directories ([`IGNORED`]), what a `.gitignore` in the code or app directory ignores (as
//! `cargo lambda watch` and watchexec do), and the files the node itself writes to (its
//! stdout or stderr redirected into the code directory), which would otherwise reload the
//! function on every line it logs.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use ignore::gitignore::Gitignore;
use nimbus_core::{AppSpec, FunctionSpec, RuntimeKind};
use nimbus_dispatch::Dispatcher;
use nimbus_events::WorkerSettings;
use nimbus_gateway::Reloader;
use nimbus_manifest::{LoadError, MANIFEST_FILE, Support};
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

/// Changed paths that are not code, beyond [`IGNORED`].
#[derive(Default)]
struct NotCode {
    /// The files the node's stdout and stderr go to, when they are files.
    outputs: Vec<PathBuf>,
    /// The `.gitignore` files of the app directory and of the code directories, each
    /// matching below its own directory.
    gitignores: Vec<Gitignore>,
}

impl NotCode {
    /// What the node writes to now, and the `.gitignore` files of `dirs` (read once: a
    /// later change to one applies from the next `up`).
    fn find<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> NotCode {
        // On Linux a descriptor's link names the file it writes; elsewhere there is none.
        let outputs = (1..=2)
            .filter_map(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok())
            .filter(|p| p.is_file())
            .collect();
        let mut gitignores = Vec::new();
        for dir in dirs {
            let file = dir.join(".gitignore");
            if !file.is_file() {
                continue;
            }
            let (gitignore, error) = Gitignore::new(&file);
            if let Some(e) = error {
                tracing::warn!(path = %file.display(), error = %e, "part of a .gitignore cannot be read; its other patterns still apply to watching");
            }
            gitignores.push(gitignore);
        }
        NotCode {
            outputs,
            gitignores,
        }
    }

    /// Whether a change to `path` is not a change of the code in `code`. A `.gitignore`
    /// judges only the part of the path below `code`: a code directory the app's
    /// `.gitignore` ignores as a whole (a build output such as `dist/`) is still code.
    fn covers(&self, path: &Path, code: &Path) -> bool {
        if self.outputs.iter().any(|o| o == path)
            || (!self.outputs.is_empty()
                && std::fs::canonicalize(path).is_ok_and(|p| self.outputs.contains(&p)))
        {
            return true;
        }
        // A path already removed may have been a directory: dir-only patterns apply.
        let gone = !path.exists();
        let is_dir = path.is_dir();
        self.gitignores.iter().any(|g| {
            // The path, then its parents, down to the code directory (the nearest match
            // decides, so that a `!` pattern can take back a broader one).
            for (i, p) in path
                .ancestors()
                .take_while(|p| *p != code && p.starts_with(code) && p.starts_with(g.path()))
                .enumerate()
            {
                let found = if i == 0 {
                    let m = g.matched(p, is_dir);
                    if gone && m.is_none() {
                        g.matched(p, true)
                    } else {
                        m
                    }
                } else {
                    g.matched(p, true)
                };
                if found.is_ignore() {
                    return true;
                }
                if found.is_whitelist() {
                    return false;
                }
            }
            false
        })
    }
}

/// The functions a changed `path` belongs to (code directories may be shared).
fn owners<'a>(
    functions: &'a [FunctionSpec],
    path: &Path,
    not_code: &NotCode,
) -> Vec<&'a FunctionSpec> {
    functions
        .iter()
        .filter(|f| {
            path.starts_with(&f.code) && !ignored(path, &f.code) && !not_code.covers(path, &f.code)
        })
        .collect()
}

/// The npm lock file, which `npm install` writes.
const NPM_LOCK: &str = "package-lock.json";

/// A digest of the file at `path`, to tell a rewrite with the same content from a change.
fn content_hash(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

/// What the node runs now, and how to change it.
struct Running {
    dir: PathBuf,
    app: AppSpec,
    dispatcher: Arc<Dispatcher>,
    reloader: Reloader,
    async_settings: WorkerSettings,
    deps_root: PathBuf,
    npm_locks: NpmLocks,
}

/// The content of each Node.js code directory's lock file as Nimbus last saw or wrote
/// it: the lock its own `npm install` writes raises an event that is no change, and
/// would otherwise install everything a second time.
#[derive(Default)]
struct NpmLocks(HashMap<PathBuf, Option<u64>>);

impl NpmLocks {
    /// Remembers the lock file of `function` as it is now (after Nimbus installed its
    /// dependencies, or at start).
    fn remember(&mut self, function: &FunctionSpec) {
        if function.runtime.kind == RuntimeKind::Nodejs {
            let lock = function.code.join(NPM_LOCK);
            let hash = content_hash(&lock);
            self.0.insert(lock, hash);
        }
    }

    /// Whether `path` is a lock file whose content is what Nimbus last saw: no change.
    /// A changed one is remembered as it is now.
    fn unchanged(&mut self, path: &Path) -> bool {
        let Some(seen) = self.0.get_mut(path) else {
            return false;
        };
        let now = content_hash(path);
        if *seen == now {
            return true;
        }
        *seen = now;
        false
    }
}

impl Running {
    /// Loads `nimbus.toml` again and applies what can change while running.
    async fn reload_app(&mut self, progress: &Progress) {
        let app = match nimbus_manifest::load(&self.dir, Support::current()) {
            Ok(app) => app,
            Err(LoadError::Invalid(diagnostics)) => {
                for d in &diagnostics.errors {
                    tracing::error!("{d}");
                }
                tracing::error!(
                    errors = diagnostics.errors.len(),
                    "{MANIFEST_FILE} has errors; the app keeps running as it was"
                );
                return;
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot load {MANIFEST_FILE}; the app keeps running as it was");
                return;
            }
        };
        // What a running node cannot take is refused as a whole, before anything
        // changes: routes naming a function that is not running would answer 500, and
        // the gateway would hand a function whose runtime kind changed requests in the
        // other kind's form.
        for (name, function) in &app.functions {
            let refusal = match self.app.functions.get(name) {
                None => "a new function needs a restart of nimbus up",
                Some(old) if old.runtime.kind != function.runtime.kind => {
                    "a function's runtime kind changed; that needs a restart of nimbus up"
                }
                Some(_) => continue,
            };
            tracing::error!(function = %name, "{refusal}; the app keeps running as it was");
            return;
        }
        let mut app = app;
        // Functions are prepared before the routes change, so that a function whose
        // dependencies cannot be installed keeps its old settings and the routes never
        // name settings that are not running.
        let mut changed = Vec::new();
        for (name, function) in &mut app.functions {
            let Some(old) = self.app.functions.get(name) else {
                continue;
            };
            if old == function {
                continue;
            }
            if let Err(e) = prepare_function(function, &self.deps_root, false, progress).await {
                tracing::error!(function = %name, error = %format!("{e:#}"), "cannot install the function's dependencies; it keeps its old settings (saving {MANIFEST_FILE} again retries)");
                *function = old.clone();
                continue;
            }
            changed.push(function.clone());
        }
        for function in &changed {
            self.npm_locks.remember(function);
        }
        if let Err(e) = self.reloader.reload(app.clone()).await {
            tracing::error!(error = %e, "the new routes cannot be served; the app keeps running as it was");
            return;
        }
        for function in changed {
            if let Err(e) = self.dispatcher.reload(function.clone()).await {
                tracing::warn!(function = %function.name, error = %e, "restart nimbus up to apply this change");
                continue;
            }
            // Queued async events follow the new policy, timeout and concurrency.
            self.async_settings.update(function);
        }
        for name in self.app.functions.keys() {
            if !app.functions.contains_key(name) {
                tracing::warn!(function = %name, "a removed function keeps running until nimbus up restarts");
            }
        }
        if app.tables != self.app.tables {
            tracing::warn!("table changes take effect when nimbus up restarts");
        }
        if app.events != self.app.events {
            tracing::warn!("[[events]] changes (schedules) take effect when nimbus up restarts");
        }
        tracing::info!(routes = app.routes.len(), "app reloaded");
        self.app = app;
    }
}

/// Starts watching the code of `app`'s functions; changes reload them on `dispatcher`.
///
/// Each code directory is watched itself and each of its subdirectories recursively,
/// except the ignored ones (so `node_modules` costs no watches); a subdirectory created
/// later is not watched until the next `up`. A subdirectory may be a symbolic link; one
/// leading to a directory already watched (or above one: `up -> ..`) is skipped, so that
/// a link loop costs nothing. A function whose code is a `.wasm` file is watched through
/// the directory holding it, without its subdirectories.
pub(crate) fn start(
    dir: &Path,
    app: &AppSpec,
    dispatcher: Arc<Dispatcher>,
    reloader: Reloader,
    async_settings: WorkerSettings,
    deps_root: PathBuf,
) -> anyhow::Result<Watch> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let manifest = dir.join(MANIFEST_FILE);
    let mut running = Running {
        dir: dir.clone(),
        app: app.clone(),
        dispatcher,
        reloader,
        async_settings,
        deps_root,
        npm_locks: NpmLocks::default(),
    };
    for function in app.functions.values() {
        running.npm_locks.remember(function);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(SETTLE, None, move |events| {
        let _ = tx.send(events);
    })
    .context("cannot watch function code")?;
    let dirs: BTreeSet<&Path> = app
        .functions
        .values()
        .filter(|f| f.code.is_dir())
        .map(|f| f.code.as_path())
        .collect();
    let mut with_gitignores = dirs.clone();
    with_gitignores.insert(dir.as_path());
    let not_code = NotCode::find(with_gitignores);
    // The app directory itself, for nimbus.toml (watched without its subdirectories
    // unless it is also a code directory).
    if !dirs.contains(dir.as_path()) {
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
    }
    let Plan {
        watches,
        links: linked,
    } = watch_plan(&dir, &dirs, app.functions.values())?;
    for (path, mode) in watches {
        debouncer
            .watch(&path, mode)
            .with_context(|| format!("cannot watch {}", path.display()))?;
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
            let mut changed: Vec<(FunctionSpec, bool, PathBuf)> = Vec::new();
            let mut manifest_changed = false;
            // A function whose code is a `.wasm` file owns exactly that path.
            let functions: Vec<FunctionSpec> = running.app.functions.values().cloned().collect();
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
                let is_manifest = path.file_name().is_some_and(|n| n == MANIFEST_FILE)
                    && path
                        .parent()
                        .and_then(|p| std::fs::canonicalize(p).ok())
                        .is_some_and(|p| p == running.dir);
                if is_manifest {
                    manifest_changed = true;
                    continue;
                }
                if path.file_name().is_some_and(|n| n == NPM_LOCK)
                    && running.npm_locks.unchanged(path)
                {
                    continue;
                }
                let dependencies = path
                    .file_name()
                    .is_some_and(|n| DEPENDENCY_FILES.iter().any(|d| n == *d));
                // A directory several functions link to is watched under one name.
                for name in aliases(path, &linked) {
                    for f in owners(&functions, &name, &not_code) {
                        match changed.iter_mut().find(|(c, ..)| c.name == f.name) {
                            Some(entry) => entry.1 |= dependencies,
                            None => changed.push((f.clone(), dependencies, path.clone())),
                        }
                    }
                }
            }
            if manifest_changed {
                tracing::info!(path = %manifest.display(), "{MANIFEST_FILE} changed; reloading the app");
                running.reload_app(&progress).await;
            }
            // Node.js code directories installed in this batch: functions sharing one
            // need one install.
            let mut installed: Vec<PathBuf> = Vec::new();
            for (function, dependencies, path) in changed {
                // The settings now running: a manifest change in the same batch may have
                // changed them (or removed the function), and reloading the copy taken
                // before it would bring the old settings back.
                let Some(function) = running.app.functions.get(&function.name).cloned() else {
                    continue;
                };
                tracing::info!(function = %function.name, path = %path.display(), "function code changed; reloading");
                // A wasm function's Cargo package is built again before every reload.
                let rebuild = (dependencies
                    || (function.runtime.kind == RuntimeKind::Wasm && function.code.is_dir()))
                    && !(function.runtime.kind == RuntimeKind::Nodejs
                        && installed.contains(&function.code));
                if rebuild {
                    if let Err(e) =
                        prepare_function(&function, &running.deps_root, true, &progress).await
                    {
                        tracing::error!(function = %function.name, error = %format!("{e:#}"), "cannot install the function's dependencies; it keeps its old code");
                        continue;
                    }
                    if function.runtime.kind == RuntimeKind::Nodejs {
                        installed.push(function.code.clone());
                    }
                    running.npm_locks.remember(&function);
                }
                if let Err(e) = running.dispatcher.reload(function.clone()).await {
                    tracing::error!(function = %function.name, error = %e, "cannot reload");
                }
            }
        }
    });
    Ok(Watch {
        _debouncer: debouncer,
    })
}

/// What to watch, and the linked directories met on the way.
#[derive(Debug)]
struct Plan {
    /// The paths to watch, each once.
    watches: Vec<(PathBuf, RecursiveMode)>,
    /// Every symbolic link to a directory in a code directory, watched or not, with where
    /// it leads (resolved): a change is reported under one name, and [`aliases`] gives it
    /// its others, so that each function whose code reaches it is reloaded.
    links: Vec<(PathBuf, PathBuf)>,
}

/// `path` under each name it has: as reported, where it really is, and through each
/// link in `links` that leads there.
fn aliases(path: &Path, links: &[(PathBuf, PathBuf)]) -> Vec<PathBuf> {
    let mut names = vec![path.to_path_buf()];
    // The directory resolved, not the file: a removed file has no real path of its own.
    let real = match (
        path.parent().and_then(|p| std::fs::canonicalize(p).ok()),
        path.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => return names,
    };
    let through_links = links
        .iter()
        .filter_map(|(link, target)| Some(link.join(real.strip_prefix(target).ok()?)));
    for name in std::iter::once(real.clone()).chain(through_links) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// What to watch besides the app directory: each code directory in `dirs` itself, each
/// of its subdirectories (symbolic links followed) recursively, and the directory of each
/// `.wasm` code file not already watched, each once.
fn watch_plan<'a>(
    app_dir: &Path,
    dirs: &BTreeSet<&Path>,
    functions: impl IntoIterator<Item = &'a FunctionSpec>,
) -> anyhow::Result<Plan> {
    let mut plan: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    // Where the watches lead, symbolic links resolved: the directories watched alone,
    // and those watched with everything below them.
    let mut alone: HashSet<PathBuf> = HashSet::from([canonical(app_dir)]);
    let mut below: Vec<PathBuf> = Vec::new();
    let mut links: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        plan.push((dir.to_path_buf(), RecursiveMode::NonRecursive));
        alone.insert(canonical(dir));
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        // `is_dir` follows a symbolic link, where `DirEntry::file_type` does not.
        for path in entries.flatten().map(|entry| entry.path()) {
            if !path.is_dir() || ignored(&path, dir) {
                continue;
            }
            if path.is_symlink() {
                links.push(path);
            } else {
                below.push(canonical(&path));
                plan.push((path, RecursiveMode::Recursive));
            }
        }
    }
    // Links last, once every real directory is known: a link leading into what is
    // already watched with its subdirectories, or to a watched directory or above one
    // (`up -> ..`, a loop), is skipped.
    let mut linked = Vec::new();
    for path in links {
        let target = canonical(&path);
        linked.push((path.clone(), target.clone()));
        let known = alone.iter().chain(&below).any(|w| w.starts_with(&target))
            || below.iter().any(|w| target.starts_with(w));
        if known {
            tracing::debug!(path = %path.display(), "not watched: it leads where watching already goes");
            continue;
        }
        below.push(target);
        plan.push((path, RecursiveMode::Recursive));
    }
    for function in functions {
        let code = function.code.as_path();
        if code.is_dir() {
            continue;
        }
        let Some(parent) = code.parent() else {
            continue;
        };
        let covered = plan.iter().any(|(p, mode)| {
            p == parent || (*mode == RecursiveMode::Recursive && parent.starts_with(p))
        }) || parent == app_dir;
        if !covered {
            plan.push((parent.to_path_buf(), RecursiveMode::NonRecursive));
        }
    }
    Ok(Plan {
        watches: plan,
        links: linked,
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

    #[test]
    fn what_a_gitignore_ignores_is_not_code() {
        let app = tempfile::tempdir().unwrap();
        let dir = app.path();
        std::fs::write(dir.join(".gitignore"), "*.log\nbuild/\n!keep.log\n").unwrap();
        let not_code = NotCode::find([dir]);
        let covers = |path: &str| not_code.covers(&dir.join(path), dir);
        assert!(covers("node.log"));
        assert!(covers("sub/debug.log"));
        assert!(covers("build/out.js"));
        assert!(!covers("keep.log"));
        assert!(!covers("index.js"));
        // A removed directory matches a pattern for directories.
        assert!(covers("build"));
        // Paths outside the directory are not its .gitignore's to judge.
        assert!(!not_code.covers(Path::new("/elsewhere/node.log"), Path::new("/elsewhere")));
        // A code directory the app's .gitignore ignores as a whole is still code: only
        // the part of a path below the code directory is judged.
        let build = dir.join("build");
        assert!(!not_code.covers(&build.join("out.js"), &build));
        assert!(not_code.covers(&build.join("trace.log"), &build));
    }

    fn function(name: &str, runtime: &str, code: &Path) -> FunctionSpec {
        FunctionSpec {
            concurrency: nimbus_core::Concurrency {
                max: 1,
                min_warm: 0,
            },
            ..FunctionSpec::new(name, runtime.parse().expect("a runtime"), code.to_owned())
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_and_component_files_are_watched_once() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let app = root.join("app");
        let code = app.join("fn");
        let shared = root.join("shared");
        let components = root.join("components");
        for d in [&code.join("lib"), &shared, &components] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(components.join("a.wasm"), b"").unwrap();
        std::fs::write(code.join("b.wasm"), b"").unwrap();
        let link = |to: &Path, name: &str| std::os::unix::fs::symlink(to, code.join(name)).unwrap();
        link(&shared, "shared");
        link(&code.join("lib"), "lib-again");
        link(&app, "up");
        link(&code, "itself");
        let functions = [
            function("node", "nodejs22.x", &code),
            function("a", "wasm", &components.join("a.wasm")),
            function("b", "wasm", &code.join("b.wasm")),
        ];
        let dirs = BTreeSet::from([code.as_path()]);
        let mut plan = watch_plan(&app, &dirs, &functions).unwrap().watches;
        plan.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            plan,
            vec![
                (code.clone(), RecursiveMode::NonRecursive),
                (code.join("lib"), RecursiveMode::Recursive),
                // Followed, as a link to elsewhere; the links back into what is watched
                // (`lib-again`, `up`, `itself`) are not.
                (code.join("shared"), RecursiveMode::Recursive),
                // The directory of a component outside every code directory, alone.
                (components.clone(), RecursiveMode::NonRecursive),
            ]
        );
        // A component file belongs to its function alone.
        let not_code = NotCode::default();
        let owned = |path: &Path| -> Vec<String> {
            owners(&functions, path, &not_code)
                .iter()
                .map(|f| f.name.clone())
                .collect()
        };
        assert_eq!(owned(&components.join("a.wasm")), ["a"]);
        assert!(owned(&components.join("other.wasm")).is_empty());
        assert_eq!(owned(&code.join("shared/x.js")), ["node"]);
    }

    #[test]
    fn a_directory_two_functions_link_to_reloads_both() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let app = root.join("app");
        let shared = app.join("shared");
        let (a, b) = (app.join("a"), app.join("b"));
        for d in [&shared, &a, &b] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(shared.join("util.js"), b"").unwrap();
        std::os::unix::fs::symlink(&shared, a.join("lib")).unwrap();
        std::os::unix::fs::symlink(&shared, b.join("lib")).unwrap();
        // A third function's code is the shared directory itself.
        let functions = [
            function("a", "nodejs22.x", &a),
            function("b", "nodejs22.x", &b),
            function("s", "nodejs22.x", &shared),
        ];
        let dirs = BTreeSet::from([a.as_path(), b.as_path(), shared.as_path()]);
        let plan = watch_plan(&app, &dirs, &functions).unwrap();
        // Watched once, as `shared` itself: neither link is.
        assert!(
            !plan.watches.iter().any(|(p, _)| p.ends_with("lib")),
            "{:?}",
            plan.watches
        );
        assert_eq!(plan.links.len(), 2);
        let not_code = NotCode::default();
        let mut owned: Vec<String> = aliases(&shared.join("util.js"), &plan.links)
            .iter()
            .flat_map(|name| owners(&functions, name, &not_code))
            .map(|f| f.name.clone())
            .collect();
        owned.sort();
        owned.dedup();
        assert_eq!(owned, ["a", "b", "s"]);
        // A file removed since: found through its directory.
        let gone: Vec<PathBuf> = aliases(&a.join("lib/gone.js"), &plan.links);
        assert!(gone.contains(&b.join("lib/gone.js")), "{gone:?}");
    }

    #[test]
    fn the_lock_an_install_wrote_is_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let node = function("node", "nodejs22.x", dir.path());
        let lock = dir.path().join(NPM_LOCK);
        let mut locks = NpmLocks::default();
        // No lock at start; the install writes one, and Nimbus remembers it.
        locks.remember(&node);
        std::fs::write(&lock, "{\"lockfileVersion\": 3}").unwrap();
        locks.remember(&node);
        assert!(locks.unchanged(&lock));
        // Written again the same: still no change. Edited: a change, once.
        std::fs::write(&lock, "{\"lockfileVersion\": 3}").unwrap();
        assert!(locks.unchanged(&lock));
        std::fs::write(&lock, "{\"lockfileVersion\": 3, \"packages\": {}}").unwrap();
        assert!(!locks.unchanged(&lock));
        assert!(locks.unchanged(&lock));
        // Files other than a Node.js function's lock are never "unchanged".
        assert!(!locks.unchanged(&dir.path().join("package.json")));
    }
}
