//! The bootstrap shims for managed runtimes, shipped inside the binary and written to the
//! data directory at startup.

use std::path::{Path, PathBuf};

/// The Node.js shim.
const NODE: &str = include_str!("../runtimes/node/bootstrap.cjs");
/// The Python shim: the script Nimbus runs, which imports the runtime module below.
const PYTHON: &str = include_str!("../runtimes/python/bootstrap.py");
/// The Python runtime module. Being imported rather than run, its bytecode is cached in
/// `__pycache__` beside it after the first start, which saves compiling it at every one.
const PYTHON_RUNTIME: &str = include_str!("../runtimes/python/_nimbus_bootstrap.py");

/// Writes the shims into `dir` (replacing older copies) and returns `dir`.
///
/// # Errors
/// When the directory or files cannot be written.
pub fn install(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut python_changed = false;
    for (name, text) in [
        ("bootstrap.cjs", NODE),
        ("bootstrap.py", PYTHON),
        ("_nimbus_bootstrap.py", PYTHON_RUNTIME),
    ] {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text)?;
            python_changed |= name.ends_with(".py");
        }
    }
    if python_changed {
        // Python checks cached bytecode against the source's size and modification time
        // in whole seconds: a new shim written within the same second as the old one, at
        // the same size, could run the old code.
        match std::fs::remove_dir_all(dir.join("__pycache__")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(dir.to_path_buf())
}

/// The Node.js shim's path in an installed directory.
pub fn node(dir: &Path) -> PathBuf {
    dir.join("bootstrap.cjs")
}

/// The Python shim's path in an installed directory.
pub fn python(dir: &Path) -> PathBuf {
    dir.join("bootstrap.py")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_writes_every_shim_and_replaces_stale_ones() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let shims = install(dir.path()).expect("install");
        assert_eq!(
            std::fs::read_to_string(node(&shims)).expect("node shim"),
            NODE
        );
        assert_eq!(
            std::fs::read_to_string(python(&shims)).expect("python shim"),
            PYTHON
        );
        let runtime = shims.join("_nimbus_bootstrap.py");
        assert_eq!(
            std::fs::read_to_string(&runtime).expect("python runtime"),
            PYTHON_RUNTIME
        );

        // Bytecode cached from an older runtime module goes with it.
        let cache = shims.join("__pycache__");
        std::fs::create_dir_all(&cache).expect("cache directory");
        std::fs::write(cache.join("_nimbus_bootstrap.cpython-311.pyc"), b"old").expect("pyc");
        std::fs::write(&runtime, "def main():\n    return 3\n").expect("stale runtime");
        install(dir.path()).expect("install again");
        assert_eq!(
            std::fs::read_to_string(&runtime).expect("python runtime"),
            PYTHON_RUNTIME
        );
        assert!(!cache.exists(), "the stale bytecode cache was left behind");

        // Unchanged shims leave the cache alone.
        std::fs::create_dir_all(&cache).expect("cache directory");
        install(dir.path()).expect("install a third time");
        assert!(
            cache.exists(),
            "an up-to-date install removed the bytecode cache"
        );
    }
}
