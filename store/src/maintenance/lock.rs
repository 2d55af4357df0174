//! One maintainer per table root: an exclusive advisory lock on
//! `<root>/maintenance.lock`, held for one pass and released by the OS if
//! the process dies.
//!
//! Why a lock and not Delta's conflict checks: two compactions of the same
//! files both commit in deltalake (removes without `dataChange` do not
//! conflict), and each adds its own merged copy of the rows — the rows
//! would be doubled. Object storage has no such lock; there the
//! configuration must name one maintainer (see `MaintenanceConfig::runs_for`).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Result, StoreError};

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct MaintenanceLock {
    _file: File,
}

impl MaintenanceLock {
    /// Locks `<dir>/maintenance.lock` without waiting: `Ok(None)` when
    /// another process (or another pass of this one) holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("maintenance.lock");
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(io(source)),
        }
    }

    /// Waits up to `patience` for the lock, polling once a second;
    /// [`StoreError::Locked`] when it stays taken.
    pub async fn acquire(dir: &Path, patience: Duration) -> Result<Self> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(lock) = Self::try_acquire(dir)? {
                return Ok(lock);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Locked {
                    path: lock_path(dir).display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The directory holding the lock of the tables under `root`: the root
/// itself when it is local; `None` on object storage (no lock there).
pub fn lock_dir(root: &str) -> Option<PathBuf> {
    if let Some(rest) = root.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    (!root.contains("://")).then(|| PathBuf::from(root))
}

/// Where the lock of the tables under `dir` lives.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("maintenance.lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_maintainer_waits_and_then_gives_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = MaintenanceLock::try_acquire(dir.path())
            .expect("io")
            .expect("free");
        assert!(
            MaintenanceLock::try_acquire(dir.path())
                .expect("io")
                .is_none()
        );
        let err = MaintenanceLock::acquire(dir.path(), Duration::ZERO)
            .await
            .expect_err("held");
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        drop(first);
        MaintenanceLock::acquire(dir.path(), Duration::ZERO)
            .await
            .expect("free again");
    }
}
