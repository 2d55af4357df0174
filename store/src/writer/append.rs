//! One Delta commit of one batch, fenced by the stream positions it
//! expects the table to hold, and reading a table's recorded stream
//! position (`txn` version).

use std::collections::HashMap;
use std::time::Instant;

use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use tracing::{debug, error, info};

use crate::{Result, StoreError};

/// The stream positions a commit expects the table to hold before it:
/// `(app id, position)`, `None` for none recorded.
pub(super) type Fence<'a> = &'a [(String, Option<i64>)];

/// A table's stream positions as of one table version, as the fence read
/// them: reading one from the log replays it (a GET per log file on object
/// storage), so while no other writer commits, this writer's own commits
/// keep them up to date instead.
#[derive(Debug, Default)]
pub(super) struct Known {
    version: Option<u64>,
    positions: HashMap<String, Option<i64>>,
}

impl Known {
    /// The position of `app` in `table` as loaded.
    pub(super) async fn get(
        &mut self,
        table: &DeltaTable,
        app: &str,
        name: &'static str,
    ) -> Result<Option<i64>> {
        if self.version != table.version() {
            self.version = table.version();
            self.positions.clear();
        }
        if let Some(found) = self.positions.get(app) {
            return Ok(*found);
        }
        let found = txn_version(table, app, name).await?;
        self.positions.insert(app.to_owned(), found);
        Ok(found)
    }

    /// This writer committed `txns` as `version` on a snapshot at `base`:
    /// when nothing else was committed in between, that is all that changed.
    fn committed(&mut self, base: u64, version: u64, txns: &[Transaction]) {
        if self.version == Some(base) && version == base + 1 {
            for t in txns {
                self.positions.insert(t.app_id.clone(), Some(t.version));
            }
            self.version = Some(version);
        }
    }
}

/// Writes one batch as one Delta commit, with the given `txn` actions.
///
/// Refused with [`StoreError::PositionMoved`] when the snapshot it commits
/// on holds another position than `fence` says for one of its streams;
/// Delta's conflict check covers the commits that land meanwhile (a winning
/// commit with the same `txn` app id is a conflict).
pub(super) async fn append(
    writer: &mut RecordBatchWriter,
    table: &mut DeltaTable,
    batch: deltalake::arrow::record_batch::RecordBatch,
    txns: Vec<Transaction>,
    fence: Fence<'_>,
    known: &mut Known,
    name: &'static str,
) -> Result<u64> {
    let err = StoreError::delta(name);
    check_fence(table, fence, known, name).await?;
    let t0 = Instant::now();
    if batch.num_rows() > 0
        && let Err(e) = writer.write(batch).await
    {
        writer.reset();
        return Err(err(e));
    }
    let adds: Vec<Action> = match writer.flush().await {
        Ok(adds) => adds.into_iter().map(Action::Add).collect(),
        Err(e) => {
            writer.reset();
            return Err(err(e));
        }
    };
    let t1 = Instant::now();
    let mut rebased = false;
    loop {
        let snapshot = table.snapshot().map_err(StoreError::delta(name))?;
        let base = snapshot.version();
        let partition_by = Some(snapshot.metadata().partition_columns().to_vec());
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by,
            predicate: None,
        };
        // Checkpoints and log expiry happen in the background after the commit
        // (see `checkpoint.rs`), not inside it.
        let properties = CommitProperties::default()
            .with_application_transactions(txns.clone())
            .with_create_checkpoint(false)
            .with_cleanup_expired_logs(Some(false));
        let outcome = CommitBuilder::from(properties)
            .with_actions(adds.clone())
            .build(Some(snapshot), table.log_store(), operation)
            .await;
        match outcome {
            Ok(done) => {
                table.state = Some(done.snapshot());
                known.committed(base, done.version(), &txns);
                crate::checkpoint::after_commit(table, done.version(), name);
                debug!(
                    table = name,
                    version = done.version(),
                    write_ms = (t1 - t0).as_millis() as u64,
                    commit_ms = t1.elapsed().as_millis() as u64,
                    rebased,
                    "appended"
                );
                return Ok(done.version());
            }
            Err(e) => {
                // Our view of the log may be stale (another writer committed):
                // reload so the next attempt starts from the truth.
                if let Err(reload) = table.update_state().await {
                    error!(table = name, error = %reload, "reloading table after a failed commit");
                    return Err(err(e));
                }
                if rebased || !lost_to_a_delete(&e) {
                    return Err(err(e));
                }
                // A retention or erasure DELETE removed files our snapshot
                // had: Delta calls that a read conflict, but an append reads
                // nothing. The rows are written already; commit them once
                // more on the new snapshot, unless another writer recorded
                // our streams meanwhile (then the race is lost for real).
                if let Err(moved) = check_fence(table, fence, known, name).await {
                    info!(table = name, error = %moved, "stream position moved while rebasing over a delete");
                    return Err(moved);
                }
                info!(table = name, "append rebased over a concurrent delete");
                rebased = true;
            }
        }
    }
}

/// Whether a commit failed only because a concurrent commit removed files
/// (with `dataChange`) that were in the snapshot it was built on.
fn lost_to_a_delete(e: &deltalake::DeltaTableError) -> bool {
    use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
    matches!(
        e,
        deltalake::DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentDeleteRead)
        }
    )
}

/// Refuses when `table` (as loaded) holds another position than `fence`
/// expects for one of its streams.
pub(super) async fn check_fence(
    table: &DeltaTable,
    fence: Fence<'_>,
    known: &mut Known,
    name: &'static str,
) -> Result<()> {
    for (app_id, expected) in fence {
        let found = known.get(table, app_id, name).await?;
        if found != *expected {
            return Err(StoreError::PositionMoved {
                app_id: app_id.clone(),
                expected: *expected,
                found,
            });
        }
    }
    Ok(())
}

pub(super) async fn txn_version(
    table: &DeltaTable,
    app: &str,
    name: &'static str,
) -> Result<Option<i64>> {
    table
        .snapshot()
        .map_err(StoreError::delta(name))?
        .transaction_version(table.log_store().as_ref(), app)
        .await
        .map_err(StoreError::delta(name))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::Int64Array;
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::arrow::record_batch::RecordBatch;

    use super::*;
    use crate::tests::{fresh_tables, record};
    use crate::{AUTH_EVENTS, ErrorKind};

    /// Not injected: deltalake's own refusal of a batch that does not match
    /// the table is classified as a bug, and the writer recovers from it.
    #[tokio::test]
    async fn a_schema_mismatch_is_a_bug_and_the_writer_recovers() {
        let (_dir, _root, mut tables) = fresh_tables().await;
        let mut writer = RecordBatchWriter::for_table(&tables.events).expect("writer");
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .expect("batch");
        let err = append(
            &mut writer,
            &mut tables.events,
            wrong,
            Vec::new(),
            &[],
            &mut Known::default(),
            AUTH_EVENTS,
        )
        .await
        .expect_err("a batch of another schema is refused");
        assert_eq!(err.kind(), ErrorKind::Bug, "{err:?}");
        let good = crate::schema::events_to_batch(&[record(1)]).expect("batch");
        append(
            &mut writer,
            &mut tables.events,
            good,
            Vec::new(),
            &[],
            &mut Known::default(),
            AUTH_EVENTS,
        )
        .await
        .expect("the next good batch commits");
    }

    fn txn(app: &str, version: i64) -> Transaction {
        Transaction::new_with_last_update(app.to_owned(), version, None)
    }

    fn one(i: usize) -> deltalake::arrow::record_batch::RecordBatch {
        crate::schema::events_to_batch(&[record(i)]).expect("batch")
    }

    /// Rows removed by a retention or erasure DELETE between two appends
    /// cost the writer one more commit attempt, not a failed request; the
    /// stream position is still checked.
    #[tokio::test]
    async fn an_append_rebases_over_a_concurrent_delete() {
        let (_dir, _root, mut tables) = fresh_tables().await;
        let events = &mut tables.events;
        let mut writer = RecordBatchWriter::for_table(events).expect("writer");
        let fence = |after: Option<i64>| vec![("k".to_owned(), after)];
        let mut known = Known::default();
        append(
            &mut writer,
            events,
            one(1),
            vec![txn("k", 1)],
            &fence(None),
            &mut known,
            AUTH_EVENTS,
        )
        .await
        .expect("first");
        let deleter = events.clone();
        let (after_delete, m) = deleter
            .clone()
            .delete()
            .with_predicate("event_date < '2100-01-01'")
            .await
            .expect("delete");
        assert_eq!(m.num_removed_files, 1);
        append(
            &mut writer,
            events,
            one(2),
            vec![txn("k", 2)],
            &fence(Some(1)),
            &mut known,
            AUTH_EVENTS,
        )
        .await
        .expect("the append is rebased over the delete");
        assert_eq!(
            events.version(),
            Some(after_delete.version().unwrap_or(0) + 1)
        );
        assert_eq!(
            txn_version(events, "k", AUTH_EVENTS).await.expect("txn"),
            Some(2)
        );

        // A delete landed, then another writer recorded position 3: Delta
        // reports the delete first, and on the new snapshot ours follows 2,
        // so the rows may be stored already and the commit must fail, not
        // rebase (whatever position it would record).
        let mut stale = events.clone();
        let (mut other, _) = events
            .clone()
            .delete()
            .with_predicate("event_date < '2100-01-01'")
            .await
            .expect("delete");
        let mut other_writer = RecordBatchWriter::for_table(&other).expect("writer");
        append(
            &mut other_writer,
            &mut other,
            one(3),
            vec![txn("k", 3)],
            &fence(Some(2)),
            &mut Known::default(),
            AUTH_EVENTS,
        )
        .await
        .expect("other writer");
        let err = append(
            &mut writer,
            &mut stale,
            one(4),
            vec![txn("k", 5)],
            &fence(Some(2)),
            &mut known,
            AUTH_EVENTS,
        )
        .await
        .expect_err("a moved stream position is never rebased over");
        assert!(
            matches!(
                err,
                StoreError::PositionMoved {
                    expected: Some(2),
                    found: Some(3),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err:?}");
    }

    /// The race the fence exists for: another writer records stream "j"
    /// while this one commits stream "k"; Delta lands ours after theirs
    /// without a conflict (other streams), so our snapshot now holds their
    /// "j". Our next commit of "j", following the position we read before,
    /// is refused: the positions it remembers (it read "j" before) never
    /// hide their commit.
    #[tokio::test]
    async fn a_stream_recorded_by_another_writer_meanwhile_is_refused() {
        let (_dir, _root, mut tables) = fresh_tables().await;
        let ours = &mut tables.events;
        let mut theirs = ours.clone();
        let mut writer = RecordBatchWriter::for_table(ours).expect("writer");
        let mut their_writer = RecordBatchWriter::for_table(&theirs).expect("writer");
        let mut known = Known::default();
        let k = |after| vec![("k".to_owned(), after)];
        let j = |after| vec![("j".to_owned(), after)];
        append(
            &mut writer,
            ours,
            one(1),
            vec![txn("k", 1)],
            &[("k".to_owned(), None), ("j".to_owned(), None)],
            &mut known,
            AUTH_EVENTS,
        )
        .await
        .expect("ours");
        append(
            &mut writer,
            ours,
            one(2),
            vec![txn("k", 2)],
            &k(Some(1)),
            &mut known,
            AUTH_EVENTS,
        )
        .await
        .expect("ours, from what it remembers");
        theirs.update_state().await.expect("load");
        append(
            &mut their_writer,
            &mut theirs,
            one(3),
            vec![txn("j", 7)],
            &j(None),
            &mut Known::default(),
            AUTH_EVENTS,
        )
        .await
        .expect("theirs");
        append(
            &mut writer,
            ours,
            one(4),
            vec![txn("k", 3)],
            &k(Some(2)),
            &mut known,
            AUTH_EVENTS,
        )
        .await
        .expect("ours lands after theirs: another stream, no conflict");
        let err = append(
            &mut writer,
            ours,
            one(5),
            vec![txn("j", 4)],
            &j(None),
            &mut known,
            AUTH_EVENTS,
        )
        .await
        .expect_err("j moved since we read it");
        assert!(
            matches!(
                err,
                StoreError::PositionMoved {
                    expected: None,
                    found: Some(7),
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
