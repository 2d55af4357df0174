//! One Delta commit of one batch, and reading a table's recorded stream
//! position (`txn` version).

use std::time::Instant;

use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use tracing::{debug, error};

use crate::{Result, StoreError};

/// Writes one batch as one Delta commit, with the given `txn` actions.
pub(super) async fn append(
    writer: &mut RecordBatchWriter,
    table: &mut DeltaTable,
    batch: deltalake::arrow::record_batch::RecordBatch,
    txns: Vec<Transaction>,
    name: &'static str,
) -> Result<u64> {
    let err = StoreError::delta(name);
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
    let snapshot = table.snapshot().map_err(StoreError::delta(name))?;
    let partition_by = Some(snapshot.metadata().partition_columns().to_vec());
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by,
        predicate: None,
    };
    // Checkpoints and log expiry happen in the background after the commit
    // (see `checkpoint.rs`), not inside it.
    let properties = CommitProperties::default()
        .with_application_transactions(txns)
        .with_create_checkpoint(false)
        .with_cleanup_expired_logs(Some(false));
    let outcome = CommitBuilder::from(properties)
        .with_actions(adds)
        .build(Some(snapshot), table.log_store(), operation)
        .await;
    match outcome {
        Ok(done) => {
            table.state = Some(done.snapshot());
            crate::checkpoint::after_commit(table, done.version(), name);
            debug!(
                table = name,
                version = done.version(),
                write_ms = (t1 - t0).as_millis() as u64,
                commit_ms = t1.elapsed().as_millis() as u64,
                "appended"
            );
            Ok(done.version())
        }
        Err(e) => {
            // Our view of the log may be stale (another writer committed):
            // reload so the next attempt starts from the truth.
            if let Err(reload) = table.update_state().await {
                error!(table = name, error = %reload, "reloading table after a failed commit");
            }
            Err(err(e))
        }
    }
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
            AUTH_EVENTS,
        )
        .await
        .expect("the next good batch commits");
    }
}
