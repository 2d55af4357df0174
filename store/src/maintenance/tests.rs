//! Passes over real tables next to a running writer. On a multi-threaded
//! runtime: deltalake's vacuum and checkpoint wait synchronously for work
//! they spawn, which a single-threaded runtime never runs.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::metrics::MaintenanceMetrics;
use crate::tests::{default_writer, fresh_tables, record, rejected, reopened_count};
use crate::{Source, StreamPosition, WriterHandle};

/// The position before the `i`th write of stream "k" (written 0, 1, 2, …).
fn after(i: usize) -> Option<i64> {
    i.checked_sub(1).map(|v| v as i64)
}

fn maintainer(root: &str) -> Maintainer {
    let config = MaintenanceConfig {
        compact_min_files: 4,
        ..MaintenanceConfig::default()
    };
    Maintainer::new(
        root,
        &Default::default(),
        config,
        MaintenanceMetrics::unregistered(),
    )
}

async fn write(handle: &WriterHandle, range: std::ops::Range<usize>) {
    for i in range {
        handle
            .write_with_txns(
                vec![record(i)],
                vec![rejected(Source::Http)],
                vec![StreamPosition::new("k", after(i), i as i64)],
            )
            .await
            .expect("write");
    }
}

/// Data files (not log checkpoints) under a table's directory.
fn data_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("_delta_log") {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_next_to_the_writer_keeps_every_row_once_and_the_offsets() {
    let (dir, root, tables) = fresh_tables().await;
    let (handle, task, cancel) = default_writer(tables);
    write(&handle, 0..30).await;
    let m = maintainer(&root);
    let stop = CancellationToken::new();
    let opts = PassOptions::scheduled();
    let (reports, ()) = tokio::join!(m.pass(&opts, &stop), write(&handle, 30..60));
    let reports = reports.expect("pass");
    let events = &reports[0];
    assert_eq!(events.table, AUTH_EVENTS);
    assert!(events.partitions_compacted >= 1, "{events:?}");
    assert!(events.checkpoint, "{events:?}");

    // Once more with nothing writing: one file per table is left.
    let reports = m.pass(&opts, &stop).await.expect("second pass");
    assert_eq!(reports[0].files.1, 1, "{:?}", reports[0]);
    assert_eq!(reports[1].files.1, 1, "{:?}", reports[1]);
    assert_eq!(reopened_count(&root).await, 60);
    let positions = handle.refresh(vec!["k".to_owned()]).await.expect("refresh");
    assert_eq!(positions["k"].events, Some(59));
    assert_eq!(positions["k"].rejected, Some(59));

    // The writer goes on after the pass, and a full vacuum with no grace
    // (nothing writing now) leaves exactly the files of the current version.
    write(&handle, 60..61).await;
    let now = PassOptions {
        vacuum_grace: Some(Duration::ZERO),
        full_vacuum: Some(true),
        ..PassOptions::scheduled()
    };
    let reports = m.pass(&now, &stop).await.expect("vacuum pass");
    assert!(reports[0].vacuumed.0 > 0, "{:?}", reports[0]);
    assert_eq!(
        data_files(&dir.path().join(AUTH_EVENTS)).len(),
        reports[0].files.1
    );
    assert_eq!(reopened_count(&root).await, 61);
    cancel.cancel();
    task.await.expect("join").expect("writer");
}

/// The `event_type` column of every data file under `dir`, file by file,
/// in the order the rows are stored.
fn stored_event_types(dir: &Path) -> Vec<Vec<String>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    data_files(dir)
        .into_iter()
        .map(|path| {
            let file = std::fs::File::open(&path).expect("open");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .build()
                .expect("reader");
            let mut types = Vec::new();
            for batch in reader {
                let batch = batch.expect("batch");
                let column = batch.column_by_name("event_type").expect("event_type");
                let column = cast(column, &DataType::Utf8).expect("cast");
                types.extend(
                    column
                        .as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(str::to_owned),
                );
            }
            types
        })
        .collect()
}

/// Writes 24 single-event commits to one day, cycling through three kinds
/// of event, compacts with `cluster_max_mib` and returns the stored order.
async fn compacted_order(cluster_max_mib: u64) -> Vec<Vec<String>> {
    let (dir, root, tables) = fresh_tables().await;
    let (handle, task, cancel) = default_writer(tables);
    use keyshift_schemas::EventType;
    let kinds = [
        EventType::SupportContacted,
        EventType::AuthStarted,
        EventType::EnrollmentOffered,
    ];
    for i in 0..24 {
        let mut r = record(i);
        r.event.event_type = kinds[i % kinds.len()];
        handle
            .write_with_txns(
                vec![r],
                vec![],
                vec![StreamPosition::new("k", after(i), i as i64)],
            )
            .await
            .expect("write");
    }
    let config = MaintenanceConfig {
        compact_min_files: 4,
        cluster_max_mib,
        ..MaintenanceConfig::default()
    };
    let m = Maintainer::new(
        &root,
        &Default::default(),
        config,
        MaintenanceMetrics::unregistered(),
    );
    let opts = PassOptions {
        vacuum_grace: Some(Duration::ZERO),
        full_vacuum: Some(true),
        ..PassOptions::scheduled()
    };
    let reports = m
        .pass(&opts, &CancellationToken::new())
        .await
        .expect("pass");
    assert_eq!(reports[0].partitions_compacted, 1, "{:?}", reports[0]);
    assert_eq!(
        reports[0].partitions_sorted,
        usize::from(cluster_max_mib > 0),
        "{:?}",
        reports[0]
    );
    assert_eq!(reopened_count(&root).await, 24);
    cancel.cancel();
    task.await.expect("join").expect("writer");
    stored_event_types(&dir.path().join(AUTH_EVENTS))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_stores_a_small_day_sorted_by_event_type() {
    let sorted = compacted_order(32).await;
    assert_eq!(sorted.len(), 1, "one file for the day");
    let mut expected = sorted[0].clone();
    expected.sort();
    assert_eq!(sorted[0], expected);
    assert_eq!(sorted[0].len(), 24);
    // Without it, the rows stay in the order they were written.
    let merged = compacted_order(0).await;
    assert_eq!(merged.len(), 1);
    assert_ne!(merged[0], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_whole_old_partitions_and_the_writer_rebases_over_it() {
    let (dir, root, tables) = fresh_tables().await;
    let (handle, task, cancel) = default_writer(tables);
    write(&handle, 0..5).await;
    let m = maintainer(&root);
    let stop = CancellationToken::new();
    // 2028: the events' day (2026-11-20) is past 400 days, the rejections'
    // (today) past 30.
    let later = PassOptions {
        only: Some(Step::Retention),
        now: "2028-01-01T00:00:00Z".parse().expect("time"),
        ..PassOptions::scheduled()
    };
    let reports = m.pass(&later, &stop).await.expect("pass");
    assert_eq!(reports[0].expired_days, ["2026-11-20"]);
    assert_eq!(reports[0].files.1, 0);
    assert_eq!(reports[1].files.1, 0);
    assert_eq!(reopened_count(&root).await, 0);
    // Not expired at today's date: nothing to do, no commit.
    let today = PassOptions {
        only: Some(Step::Retention),
        ..PassOptions::scheduled()
    };
    write(&handle, 5..7).await;
    let reports = m.pass(&today, &stop).await.expect("pass");
    assert!(reports[0].expired_days.is_empty());
    assert_eq!(reports[0].versions.0, reports[0].versions.1);
    assert_eq!(reopened_count(&root).await, 2);
    let positions = handle.refresh(vec!["k".to_owned()]).await.expect("refresh");
    assert_eq!(positions["k"].events, Some(6));
    // The deleted files leave storage with the vacuum.
    let gone = PassOptions {
        only: Some(Step::Vacuum),
        vacuum_grace: Some(Duration::ZERO),
        full_vacuum: Some(true),
        now: Utc::now(),
        ..PassOptions::scheduled()
    };
    m.pass(&gone, &stop).await.expect("vacuum");
    assert_eq!(data_files(&dir.path().join(AUTH_EVENTS)).len(), 2);
    cancel.cancel();
    task.await.expect("join").expect("writer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_waits_for_another_maintainer_then_gives_up() {
    let (_dir, root, _tables) = fresh_tables().await;
    let held = MaintenanceLock::try_acquire(Path::new(&root))
        .expect("io")
        .expect("free");
    let err = maintainer(&root)
        .pass(&PassOptions::scheduled(), &CancellationToken::new())
        .await
        .expect_err("locked");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.is_retryable());
    drop(held);
}
