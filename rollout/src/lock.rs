//! One controller per data dir (embedded mode): an exclusive advisory lock
//! on `<data_dir>/rollout-controller.lock`, held for the process's life and
//! released by the OS if it dies. The decision table fences a second
//! controller too (see `keyshift_store::decisions`); the lock makes the
//! common mistake — two processes on one data dir — fail at start-up.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::{Result, RolloutError};

/// The held lock on `<data_dir>/rollout-controller.lock`; dropping it releases the lock.
#[derive(Debug)]
pub struct ControllerLock {
    _file: File,
}

impl ControllerLock {
    /// Creates the lock file if needed and locks it without waiting. Fails with
    /// [`RolloutError::Locked`] when another process holds it, [`RolloutError::LockIo`]
    /// when the file cannot be opened or locked.
    pub fn acquire(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("rollout-controller.lock");
        let shown = path.display().to_string();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| RolloutError::LockIo {
                path: shown.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(RolloutError::Locked { path: shown }),
            Err(TryLockError::Error(source)) => Err(RolloutError::LockIo {
                path: shown,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ControllerLock::acquire(dir.path()).expect("first");
        assert!(matches!(
            ControllerLock::acquire(dir.path()),
            Err(RolloutError::Locked { .. })
        ));
        drop(first);
        ControllerLock::acquire(dir.path()).expect("free again");
    }
}
