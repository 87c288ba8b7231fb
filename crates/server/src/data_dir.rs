//! The node's data directory, held under an exclusive lock.

use std::{
    fs::{File, TryLockError},
    path::{Path, PathBuf},
};

/// The lock file inside a data directory.
const LOCK_FILE: &str = "nimbus.lock";

/// The async event queue's file inside a data directory (embedded mode).
const EVENTS_FILE: &str = "events.redb";

/// The stream triggers' checkpoints inside a data directory.
const TRIGGERS_FILE: &str = "triggers.redb";

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process holds the directory.
    #[error(
        "data directory {} is in use by another nimbus process (pid {pid}); stop it or use another directory",
        path.display()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The holder's pid as it recorded it, or `unknown`.
        pid: String,
    },
    /// The directory or its lock file cannot be created or opened.
    #[error("cannot use data directory {}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A data directory this process holds exclusively until it is dropped (the operating
/// system releases the lock if the process dies, so a crash never leaves it stuck).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `path` if needed and takes its lock.
    ///
    /// # Errors
    /// [`DataDirError::Locked`] when another process holds it, [`DataDirError::Io`] when
    /// it cannot be created or opened.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        // Absolute, so that paths derived from it (runtime shims, the table file) stay
        // valid in processes that run elsewhere, such as functions in their code directory.
        let path = &path.canonicalize().map_err(io)?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&lock_path)
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown".to_owned());
                return Err(DataDirError::Locked {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // The pid is only for the message above; the lock itself is what excludes.
        use std::io::Write;
        lock.set_len(0).map_err(io)?;
        write!(lock, "{}", std::process::id()).map_err(io)?;
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file of the durable async event queue and its dead letters.
    pub fn events_file(&self) -> PathBuf {
        self.path.join(EVENTS_FILE)
    }

    /// The file of the table stream triggers' checkpoints.
    pub fn triggers_file(&self) -> PathBuf {
        self.path.join(TRIGGERS_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let first = DataDir::open(&path).unwrap();
        let err = DataDir::open(&path).unwrap_err();
        assert!(matches!(err, DataDirError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another nimbus process"));
        drop(first);
        DataDir::open(&path).unwrap();
    }
}
