//! The bootstrap shims for managed runtimes, shipped inside the binary and written to the
//! data directory at startup.

use std::path::{Path, PathBuf};

/// The Node.js shim.
const NODE: &str = include_str!("../runtimes/node/bootstrap.mjs");
/// The Python shim.
const PYTHON: &str = include_str!("../runtimes/python/bootstrap.py");

/// Writes the shims into `dir` (replacing older copies) and returns `dir`.
///
/// # Errors
/// When the directory or files cannot be written.
pub fn install(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in [("bootstrap.mjs", NODE), ("bootstrap.py", PYTHON)] {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text)?;
        }
    }
    Ok(dir.to_path_buf())
}

/// The Node.js shim's path in an installed directory.
pub fn node(dir: &Path) -> PathBuf {
    dir.join("bootstrap.mjs")
}

/// The Python shim's path in an installed directory.
pub fn python(dir: &Path) -> PathBuf {
    dir.join("bootstrap.py")
}
