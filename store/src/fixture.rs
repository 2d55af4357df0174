//! Tables in states that take live traffic hours to reach, for benchmarks
//! and tests: thousands of small commits written straight into the Delta
//! log.
//!
//! Each commit is what the writer makes: one Parquet file per partition its
//! rows touch, the `txn` positions given, a `commitInfo`. Without the
//! writer's snapshot update per commit (its cost grows with the file
//! count), 5,000 commits take seconds instead of most of an hour. Local
//! tables only; nothing else may write to the table meanwhile.

use chrono::Utc;
use deltalake::DeltaTable;
use deltalake::kernel::{Action, CommitInfo, Transaction};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};

use crate::schema::events_to_batch;
use crate::{AUTH_EVENTS, EventRecord, Result, StoreError};

/// Appends `commits` commits to `auth_events`, the rows and positions of
/// commit `c` given by `batch(c)`, then writes a checkpoint (as the writer
/// would have every 100 commits) and reloads `table`.
pub async fn small_commits(
    table: &mut DeltaTable,
    commits: usize,
    mut batch: impl FnMut(usize) -> (Vec<EventRecord>, Vec<Transaction>),
) -> Result<()> {
    let delta = StoreError::delta(AUTH_EVENTS);
    let url = table.table_url().clone();
    let dir = url.to_file_path().map_err(|()| StoreError::Location {
        uri: url.to_string(),
        reason: "small_commits writes local tables only".to_owned(),
    })?;
    let log = dir.join("_delta_log");
    let mut version = table.version().ok_or_else(|| StoreError::Location {
        uri: url.to_string(),
        reason: "table not loaded".to_owned(),
    })?;
    let mut writer = RecordBatchWriter::for_table(table).map_err(StoreError::delta(AUTH_EVENTS))?;
    for c in 0..commits {
        let (records, txns) = batch(c);
        writer
            .write(events_to_batch(&records)?)
            .await
            .map_err(StoreError::delta(AUTH_EVENTS))?;
        let adds = writer
            .flush()
            .await
            .map_err(StoreError::delta(AUTH_EVENTS))?;
        let info = CommitInfo {
            timestamp: Some(Utc::now().timestamp_millis()),
            operation: Some("WRITE".to_owned()),
            ..CommitInfo::default()
        };
        let actions = adds
            .into_iter()
            .map(Action::Add)
            .chain(txns.into_iter().map(Action::Txn))
            .chain([Action::CommitInfo(info)]);
        let mut lines = String::new();
        for action in actions {
            let line = serde_json::to_string(&action)
                .map_err(|e| StoreError::Decode(format!("serializing a log action: {e}")))?;
            lines.push_str(&line);
            lines.push('\n');
        }
        version += 1;
        let path = log.join(format!("{version:020}.json"));
        std::fs::write(&path, lines).map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    table.load().await.map_err(delta)?;
    crate::checkpoint::write_now(table, AUTH_EVENTS).await
}

/// A `txn` action recording `version` for `app`.
pub fn txn(app: &str, version: i64) -> Transaction {
    Transaction::new_with_last_update(app.to_owned(), version, Some(Utc::now().timestamp_millis()))
}
