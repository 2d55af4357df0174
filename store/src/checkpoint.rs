//! Delta checkpoints and log expiry, off the commit path.
//!
//! A checkpoint rewrites the state of every file of the table into one
//! Parquet file; with delta-rs's default it is written inside the commit
//! that reaches the checkpoint interval, which then takes several times as
//! long as the others (measured: 440–590 ms at versions 99–399 against
//! 15–170 ms for the commits around them) and holds every request waiting
//! on it. Here the commit only records the data; the checkpoint of that
//! version, and the expiry of log entries it makes redundant, are written by
//! a background task while the writer goes on. A checkpoint is an
//! optimisation for readers: if it fails or is cut short (a crash), nothing
//! is lost and the next interval writes one again.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use deltalake::DeltaTable;
use deltalake::checkpoints;
use deltalake::table::config::TablePropertiesExt as _;
use tracing::{debug, warn};

/// Tables (by location) with a checkpoint being written: at most one each.
static RUNNING: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Whether the commit of `version` is the one a checkpoint follows.
pub(crate) fn due(version: u64, interval: u64) -> bool {
    interval > 0 && (version + 1).is_multiple_of(interval)
}

/// After the commit of `version` to `table`: starts writing its checkpoint
/// in the background when one is due and none is being written.
pub(crate) fn after_commit(table: &DeltaTable, version: u64, name: &'static str) {
    let Ok(snapshot) = table.snapshot() else {
        return;
    };
    let config = snapshot.table_config();
    if !due(version, config.checkpoint_interval().get()) {
        return;
    }
    let cleanup = config.enable_expired_log_cleanup();
    let key = table.table_url().to_string();
    {
        let mut running = RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !running.insert(key.clone()) {
            debug!(
                table = name,
                version, "checkpoint still being written; skipped"
            );
            return;
        }
    }
    let table = table.clone();
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    // Writing a checkpoint is mostly synchronous work: a blocking thread,
    // not a worker of the runtime that serves requests.
    tokio::task::spawn_blocking(move || {
        match handle.block_on(checkpoint_and_expire(table, cleanup)) {
            Ok(()) => debug!(table = name, version, "checkpoint written"),
            Err(e) => {
                warn!(table = name, version, error = %e, "writing a checkpoint or expiring old log entries failed")
            }
        }
        RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
    });
}

/// Writes a checkpoint of the current version, then (when `cleanup`)
/// expires the log entries it makes redundant.
async fn checkpoint_and_expire(table: DeltaTable, cleanup: bool) -> deltalake::DeltaResult<()> {
    checkpoints::create_checkpoint(&table, None).await?;
    if cleanup {
        checkpoints::cleanup_metadata(&table, None).await?;
    }
    Ok(())
}

/// Whether the table lets writers expire old log entries
/// (`delta.enableExpiredLogCleanup`, on by default).
fn cleanup_enabled(table: &DeltaTable) -> bool {
    table
        .snapshot()
        .map(|s| s.table_config().enable_expired_log_cleanup())
        .unwrap_or(true)
}

/// Writes a checkpoint of `table`'s current version and expires the log
/// entries it makes redundant (as the table allows), waiting for both.
pub(crate) async fn write_now(table: &DeltaTable, name: &'static str) -> crate::Result<()> {
    let table = table.clone();
    let cleanup = cleanup_enabled(&table);
    let handle = tokio::runtime::Handle::current();
    // On a blocking thread, as above: the checkpoint writer waits
    // synchronously for work it spawned, which never runs when the caller's
    // runtime has a single thread.
    tokio::task::spawn_blocking(move || handle.block_on(checkpoint_and_expire(table, cleanup)))
        .await
        .map_err(|e| crate::StoreError::QueryPanicked(format!("checkpoint of {name}: {e}")))?
        .map_err(crate::StoreError::delta(name))
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn a_checkpoint_follows_every_interval_th_commit() {
        let due_at: Vec<u64> = (0..400).filter(|v| due(*v, 100)).collect();
        assert_eq!(due_at, vec![99, 199, 299, 399]);
        assert!(!due(5, 0));
    }
}
