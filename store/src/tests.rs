//! Round trips through real Delta tables in a temporary directory.

use chrono::Utc;
use datafusion::arrow::array::{AsArray, Int64Array};
use datafusion::arrow::datatypes::Int64Type;
use keyshift_schemas::{DecodeOptions, decode_value};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::metrics::StoreMetrics;
use crate::query::QueryLimits;
use crate::{
    EventRecord, QueryEngine, QueryExecutor, RejectedRecord, Source, StoreConfig, StreamPosition,
    Tables, Writer,
};

pub(crate) fn record(i: usize) -> EventRecord {
    let v = json!({
        "schema_version": 1, "event_id": format!("e{i}"), "event_type": "auth.succeeded",
        "occurred_at": "2026-11-20T10:00:00Z", "rp_id": "example.com", "user_id": "raw-user",
        "client": {"browser": "Chrome"},
        "data": {"method": "passkey", "credential": {"backup_eligible": true, "backup_state": true, "transports": ["hybrid", "internal"]}}
    });
    let mut event = decode_value(&v, Utc::now(), &DecodeOptions::default()).expect("valid");
    event.user_id = None;
    EventRecord {
        event,
        user_key: Some("k".into()),
        device_key: None,
        session_key: None,
        received_at: Utc::now(),
        source: Source::Http,
    }
}

/// Both tables, new, under a fresh temporary directory (kept alive by the
/// returned guard) and that directory as a root string.
pub(crate) async fn fresh_tables() -> (tempfile::TempDir, String, Tables) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8").to_owned();
    let tables = Tables::open_or_create(&root, &Default::default())
        .await
        .expect("open");
    (dir, root, tables)
}

/// A malformed-JSON rejection from `source`.
pub(crate) fn rejected(source: Source) -> RejectedRecord {
    RejectedRecord {
        received_at: Utc::now(),
        source,
        rp_id: None,
        event_id: None,
        error: "malformed".into(),
        error_pointer: None,
        raw: "{".into(),
        raw_truncated: false,
        raw_size: 1,
    }
}

fn executor() -> QueryExecutor {
    QueryExecutor::standalone(&StoreConfig::default()).expect("query runtime")
}

pub(crate) fn limits() -> QueryLimits {
    QueryLimits::from(&StoreConfig::default())
}

/// A writer with the default configuration, and the token that stops it.
pub(crate) fn default_writer(
    tables: Tables,
) -> (
    crate::WriterHandle,
    tokio::task::JoinHandle<crate::Result<()>>,
    CancellationToken,
) {
    let cancel = CancellationToken::new();
    let (handle, task) = Writer::spawn(
        tables,
        StoreConfig::default(),
        StoreMetrics::unregistered(),
        cancel.clone(),
    )
    .expect("spawn");
    (handle, task, cancel)
}

/// `auth_events` rows of the tables under `root`, opened afresh.
pub(crate) async fn reopened_count(root: &str) -> i64 {
    let tables = Tables::open(root, &Default::default())
        .await
        .expect("reopen");
    let engine = QueryEngine::fixed(tables, limits(), executor()).expect("engine");
    count(&engine, "SELECT count(*) FROM auth_events").await
}

pub(crate) async fn count(engine: &QueryEngine, sql: &str) -> i64 {
    let out = engine.sql(sql).await.expect("query");
    let col = out.batches[0].column(0);
    col.as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.value(0))
        .unwrap_or_else(|| col.as_primitive::<Int64Type>().value(0))
}

#[tokio::test]
async fn writes_commit_and_survive_reopen() {
    let (_dir, root, tables) = fresh_tables().await;
    let (handle, task, cancel) = default_writer(tables);
    let rejected = rejected(Source::Http);
    let receipt = handle
        .write((0..10).map(record).collect(), vec![rejected])
        .await
        .expect("write");
    assert!(receipt.events_version.is_some());
    let engine = QueryEngine::live(handle.published(), limits(), executor()).expect("engine");
    assert_eq!(count(&engine, "SELECT count(*) FROM auth_events").await, 10);
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM auth_events WHERE array_has(credential_transports, 'hybrid')"
        )
        .await,
        10
    );
    assert_eq!(
        count(&engine, "SELECT count(*) FROM rejected_events").await,
        1
    );
    cancel.cancel();
    task.await.expect("join").expect("writer");

    let reopened = Tables::open(&root, &Default::default())
        .await
        .expect("reopen");
    let engine = QueryEngine::fixed(reopened, limits(), executor()).expect("engine");
    assert_eq!(count(&engine, "SELECT count(*) FROM auth_events").await, 10);
}

#[tokio::test]
async fn only_read_only_statements_run() {
    let (_dir, _, tables) = fresh_tables().await;
    let engine = QueryEngine::fixed(tables, limits(), executor()).expect("engine");
    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO auth_events SELECT * FROM auth_events",
        "DROP TABLE auth_events",
        "SET datafusion.execution.batch_size = 1",
        "COPY auth_events TO '/tmp/x.parquet'",
        "SELECT 1; SELECT 2",
    ] {
        assert!(engine.sql(sql).await.is_err(), "{sql} was allowed");
    }
    if let Err(e) = engine.sql("EXPLAIN SELECT count(*) FROM auth_events").await {
        panic!("EXPLAIN refused: {e}");
    }
    assert!(
        engine
            .sql("WITH a AS (SELECT 1 AS x) SELECT x FROM a")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn row_limit_truncates_and_says_so() {
    let (_dir, _, tables) = fresh_tables().await;
    let limits = QueryLimits {
        max_rows: 5,
        ..limits()
    };
    let engine = QueryEngine::fixed(tables, limits, executor()).expect("engine");
    let out = engine
        .sql("SELECT * FROM generate_series(1, 100)")
        .await
        .expect("query");
    assert!(out.truncated);
    assert_eq!(out.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
}

/// Rows nobody waits on are committed once `flush_max_rows` are pending, or
/// after `flush_max_delay`, whichever comes first.
#[tokio::test]
async fn unwaited_rows_flush_on_row_count_or_delay() {
    let (_dir, root, tables) = fresh_tables().await;
    let cfg = StoreConfig {
        flush_max_rows: 5,
        flush_max_delay: std::time::Duration::from_millis(300),
        ..StoreConfig::default()
    };
    let cancel = CancellationToken::new();
    let (handle, task) =
        Writer::spawn(tables, cfg, StoreMetrics::unregistered(), cancel.clone()).expect("spawn");
    let mut published = handle.published();
    let engine = QueryEngine::live(handle.published(), limits(), executor()).expect("engine");

    // Five rows reach flush_max_rows: committed without waiting for the delay.
    handle
        .submit((0..5).map(record).collect(), Vec::new())
        .await
        .expect("submit");
    tokio::time::timeout(std::time::Duration::from_secs(10), published.changed())
        .await
        .expect("committed on row count")
        .expect("writer alive");
    assert_eq!(count(&engine, "SELECT count(*) FROM auth_events").await, 5);

    // One row waits for the delay, then is committed.
    let submitted = std::time::Instant::now();
    handle
        .submit(vec![record(5)], Vec::new())
        .await
        .expect("submit");
    tokio::time::timeout(std::time::Duration::from_secs(10), published.changed())
        .await
        .expect("committed after the delay")
        .expect("writer alive");
    assert!(submitted.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(count(&engine, "SELECT count(*) FROM auth_events").await, 6);

    // Shutdown commits what is still held.
    handle
        .submit(vec![record(6)], Vec::new())
        .await
        .expect("submit");
    cancel.cancel();
    task.await.expect("join").expect("writer");
    assert_eq!(reopened_count(&root).await, 7);
}

/// Stream positions commit atomically with their rows, survive reloads, and a
/// second writer with a stale view of the same position is refused: whether
/// its snapshot is stale (Delta's conflict check) or only the position it
/// follows (the fence), and then it records no rejections either.
#[tokio::test]
async fn txn_versions_commit_with_rows_and_fence_a_stale_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8").to_owned();
    let open = || async {
        let tables = Tables::open_or_create(&root, &Default::default())
            .await
            .expect("open");
        Writer::spawn(
            tables,
            StoreConfig::default(),
            StoreMetrics::unregistered(),
            CancellationToken::new(),
        )
        .expect("spawn")
    };
    let (first, _t1) = open().await;
    let (second, _t2) = open().await;
    let app = "keyshift-topic-0".to_owned();
    assert_eq!(
        first.refresh(vec![app.clone()]).await.expect("refresh")[&app],
        Default::default()
    );
    assert_eq!(
        second.refresh(vec![app.clone()]).await.expect("refresh")[&app],
        Default::default()
    );

    let rejected = rejected(Source::Kafka {
        topic: "topic".into(),
        partition: 0,
        offset: 3,
    });
    first
        .write_with_txns(
            (0..3).map(record).collect(),
            vec![rejected.clone()],
            vec![StreamPosition::new(&app, None, 10)],
        )
        .await
        .expect("first writer commits");

    // The second writer last read the table before that commit.
    let stale = second
        .write_with_txns(
            vec![record(100)],
            Vec::new(),
            vec![StreamPosition::new(&app, None, 12)],
        )
        .await;
    let refused = stale.expect_err("a writer with a stale position must be refused");
    assert_eq!(
        refused.kind(),
        crate::ErrorKind::Conflict,
        "a lost commit race is a conflict (retry from the table): {refused}"
    );

    let seen = second.refresh(vec![app.clone()]).await.expect("refresh")[&app];
    assert_eq!(
        seen,
        crate::TxnVersions {
            events: Some(10),
            rejected: Some(10)
        }
    );
    let engine = QueryEngine::live(second.published(), limits(), executor()).expect("engine");
    assert_eq!(count(&engine, "SELECT count(*) FROM auth_events").await, 3);

    // Its snapshot is fresh now, but the batch it made follows the position
    // it read before the first writer's commit (its partition moved and
    // came back): refused before either table is written.
    let moved = second
        .write_with_txns(
            vec![record(100)],
            vec![rejected],
            vec![StreamPosition::new(&app, None, 12)],
        )
        .await
        .expect_err("a batch that follows an old position must be refused");
    assert_eq!(moved.kind(), crate::ErrorKind::Conflict, "{moved}");
    assert!(
        moved
            .to_string()
            .contains("another writer recorded the stream"),
        "{moved}"
    );
    let engine = QueryEngine::live(second.published(), limits(), executor()).expect("engine");
    assert_eq!(count(&engine, "SELECT count(*) FROM auth_events").await, 3);
    assert_eq!(
        count(&engine, "SELECT count(*) FROM rejected_events").await,
        1
    );

    second
        .write_with_txns(
            vec![record(100)],
            Vec::new(),
            vec![StreamPosition::new(&app, Some(10), 12)],
        )
        .await
        .expect("a batch that follows the table's position commits");
    let seen = second.refresh(vec![app.clone()]).await.expect("refresh")[&app];
    assert_eq!(seen.events, Some(12));
}

/// The commit that reaches the checkpoint interval does not write the
/// checkpoint itself; a background task does, and readers see the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_written_in_the_background() {
    let (dir, root, tables) = fresh_tables().await;
    let (handle, task, cancel) = default_writer(tables);
    // Version 0 created the table; versions 1..=99 are these commits.
    for i in 0..99 {
        handle
            .write(vec![record(i)], Vec::new())
            .await
            .expect("write");
    }
    let checkpoint = dir
        .path()
        .join("auth_events/_delta_log/00000000000000000099.checkpoint.parquet");
    let started = std::time::Instant::now();
    while !checkpoint.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no checkpoint at version 99"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    cancel.cancel();
    task.await.expect("join").expect("writer");
    assert_eq!(reopened_count(&root).await, 99);
}
