//! Failed commits keep their kind, their table and one error id from the
//! writer to every caller waiting on them (faults injected through
//! [`Faults`]; a real schema mismatch is in `writer/append.rs`).

use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::metrics::StoreMetrics;
use crate::tests::{count, fresh_tables, limits, record, rejected};
use crate::writer::{Fault, Faults};
use crate::{
    AUTH_EVENTS, ErrorKind, QueryEngine, QueryExecutor, REJECTED_EVENTS, Source, StoreConfig,
    StoreError, Writer, WriterHandle,
};

struct Armed {
    _dir: tempfile::TempDir,
    handle: WriterHandle,
    faults: Faults,
    registry: Registry,
    _cancel: tokio_util::sync::DropGuard,
}

async fn armed_writer() -> Armed {
    let (dir, _root, tables) = fresh_tables().await;
    let registry = Registry::new();
    let faults = Faults::default();
    let cancel = CancellationToken::new();
    let (handle, _task) = Writer::spawn_with(
        tables,
        StoreConfig::default(),
        StoreMetrics::new(&registry).expect("metrics"),
        cancel.clone(),
        faults.clone(),
    )
    .expect("spawn");
    Armed {
        _dir: dir,
        handle,
        faults,
        registry,
        _cancel: cancel.drop_guard(),
    }
}

fn commit_errors(registry: &Registry, table: &str, kind: ErrorKind) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "keyshift_store_commit_errors_total")
        .flat_map(|f| f.get_metric())
        .find(|m| {
            let label = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map(|l| l.value())
            };
            label("table") == Some(table) && label("kind") == Some(kind.as_str())
        })
        .map_or(0, |m| m.get_counter().get_value() as u64)
}

async fn stored(handle: &WriterHandle) -> i64 {
    let executor = QueryExecutor::standalone(&StoreConfig::default()).expect("query runtime");
    let engine = QueryEngine::live(handle.published(), limits(), executor).expect("engine");
    count(&engine, "SELECT count(DISTINCT event_id) FROM auth_events").await
}

fn commit_failed(result: crate::Result<crate::CommitReceipt>) -> (&'static str, ErrorKind, String) {
    match result {
        Err(StoreError::CommitFailed {
            table,
            kind,
            error_id,
            ..
        }) => (table, kind, error_id),
        other => panic!("expected CommitFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_commit_keeps_its_kind_table_and_id() {
    let w = armed_writer().await;
    let cases = [
        (Fault::Conflict, ErrorKind::Conflict),
        (Fault::Transient, ErrorKind::Transient),
        (Fault::Fatal, ErrorKind::Fatal),
        (Fault::Bug, ErrorKind::Bug),
    ];
    for (i, (fault, kind)) in cases.into_iter().enumerate() {
        w.faults.fail_next(fault, AUTH_EVENTS, 1);
        let err = w.handle.write(vec![record(i)], Vec::new()).await;
        let (table, got, error_id) = commit_failed(err);
        assert_eq!((table, got), (AUTH_EVENTS, kind));
        assert_eq!(error_id.len(), 16);
        assert_eq!(
            got.is_retryable(),
            matches!(fault, Fault::Conflict | Fault::Transient)
        );
        assert_eq!(commit_errors(&w.registry, AUTH_EVENTS, kind), 1);
        // The writer is alive and the same rows commit on the next try.
        w.handle
            .write(vec![record(i)], Vec::new())
            .await
            .expect("the retry commits");
    }
    assert_eq!(w.faults.hits(), 4);
    assert_eq!(stored(&w.handle).await, 4);
}

#[tokio::test]
async fn a_failure_on_rejected_events_names_that_table() {
    let w = armed_writer().await;
    w.faults.fail_next(Fault::Transient, REJECTED_EVENTS, 1);
    let err = w
        .handle
        .write(vec![record(1)], vec![rejected(Source::Http)])
        .await;
    assert_eq!(commit_failed(err).0, REJECTED_EVENTS);
    assert_eq!(
        commit_errors(&w.registry, REJECTED_EVENTS, ErrorKind::Transient),
        1
    );
    assert_eq!(
        commit_errors(&w.registry, AUTH_EVENTS, ErrorKind::Transient),
        0
    );
    assert_eq!(
        stored(&w.handle).await,
        0,
        "nothing of the request was applied"
    );
}

/// Two requests that arrive together are one group: a transient failure
/// reaches both with the same id.
#[tokio::test]
async fn requests_of_one_group_share_the_failure() {
    let w = armed_writer().await;
    w.faults.fail_next(Fault::Transient, AUTH_EVENTS, 1);
    let (a, b) = tokio::join!(
        w.handle.write(vec![record(1)], Vec::new()),
        w.handle.write(vec![record(2)], Vec::new()),
    );
    let (a, b) = (commit_failed(a), commit_failed(b));
    assert_eq!(a, b);
    assert_eq!(a.1, ErrorKind::Transient);
    assert_eq!(w.faults.hits(), 1, "one commit for the group");
}

/// A bug fails the same way on every retry, and its callers are told not to
/// retry: the group is committed request by request so that only the
/// request holding the poison row fails.
#[tokio::test]
async fn a_poison_row_fails_only_its_own_request() {
    let w = armed_writer().await;
    w.faults.fail_rows_with(Fault::Bug, AUTH_EVENTS, "e7");
    let (poisoned, healthy, other) = tokio::join!(
        w.handle
            .write(vec![record(6), record(7)], vec![rejected(Source::Http)]),
        w.handle
            .write(vec![record(8)], vec![rejected(Source::Http)]),
        w.handle.write(vec![record(9)], Vec::new()),
    );
    assert_eq!(commit_failed(poisoned).1, ErrorKind::Bug);
    healthy.expect("a request without the poison row commits");
    other.expect("a request without the poison row commits");
    // The group's commit and the poisoned request's own commit.
    assert_eq!(w.faults.hits(), 2);
    assert_eq!(stored(&w.handle).await, 2);
    let executor = QueryExecutor::standalone(&StoreConfig::default()).expect("query runtime");
    let engine = QueryEngine::live(w.handle.published(), limits(), executor).expect("engine");
    assert_eq!(
        count(&engine, "SELECT count(*) FROM rejected_events").await,
        2,
        "the group's rejections were committed once, before auth_events failed"
    );
}
