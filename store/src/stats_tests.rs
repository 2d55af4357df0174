//! What the Delta log keeps of each file: statistics of the listed columns
//! only, for new tables, for tables created before the list, and through
//! compaction.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::schema::{AUTH_EVENTS_STATS, auth_events_schema};
use crate::tests::{default_writer, record, rejected};
use crate::{AUTH_EVENTS, REJECTED_EVENTS, Source, Tables};

/// Every column named in the statistics of files added by the table's
/// log entries from `from_version` on.
fn stats_columns(table_dir: &Path, from_version: u64) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let log = table_dir.join("_delta_log");
    for entry in std::fs::read_dir(&log).expect("log dir") {
        let path = entry.expect("entry").path();
        let version = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok());
        if version.is_none_or(|v| v < from_version) {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("read").lines() {
            let action: Value = serde_json::from_str(line).expect("json");
            let Some(stats) = action["add"]["stats"].as_str() else {
                continue;
            };
            let stats: Value = serde_json::from_str(stats).expect("stats json");
            for part in ["minValues", "maxValues", "nullCount"] {
                if let Some(o) = stats[part].as_object() {
                    out.extend(o.keys().cloned());
                }
            }
        }
    }
    out
}

fn assert_no_identifiers(columns: &BTreeSet<String>) {
    for c in [
        "user_key",
        "device_key",
        "session_key",
        "raw",
        "error_message",
        "extra",
    ] {
        assert!(!columns.contains(c), "{c} has statistics: {columns:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_keeps_no_statistics_of_identifiers_nor_raw_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8").to_owned();
    let tables = Tables::open_or_create(&root, &Default::default())
        .await
        .expect("open");
    let (handle, task, cancel) = default_writer(tables);
    for i in 0..3 {
        handle
            .write(vec![record(i)], vec![rejected(Source::Http)])
            .await
            .expect("write");
    }
    cancel.cancel();
    task.await.expect("join").expect("writer");

    let events = stats_columns(&dir.path().join(AUTH_EVENTS), 0);
    assert!(
        events.contains("rp_id") && events.contains("occurred_at"),
        "{events:?}"
    );
    assert_no_identifiers(&events);
    let refused = stats_columns(&dir.path().join(REJECTED_EVENTS), 0);
    assert!(refused.contains("received_at"), "{refused:?}");
    assert_no_identifiers(&refused);

    // Compaction writes its files under the same rule.
    let table = crate::tables::open_existing(&root, AUTH_EVENTS, &Default::default())
        .await
        .expect("open");
    let before = table.version().expect("version") as u64;
    let (_, metrics) = table.optimize().await.expect("optimize");
    assert!(metrics.num_files_added > 0);
    let compacted = stats_columns(&dir.path().join(AUTH_EVENTS), before + 1);
    assert!(compacted.contains("rp_id"), "{compacted:?}");
    assert_no_identifiers(&compacted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_created_without_the_list_gets_it_when_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8").to_owned();
    // As keyshift created auth_events before it listed the columns.
    crate::tables::open_or_create_one(
        &root,
        AUTH_EVENTS,
        auth_events_schema(),
        Some(crate::schema::EVENT_DATE),
        None,
        &Default::default(),
    )
    .await
    .expect("create");
    let tables = Tables::open_or_create(&root, &Default::default())
        .await
        .expect("open");
    let config = tables
        .events
        .snapshot()
        .expect("snapshot")
        .metadata()
        .configuration()
        .get("delta.dataSkippingStatsColumns")
        .cloned();
    assert_eq!(config, Some(AUTH_EVENTS_STATS.join(",")));
    let (handle, task, cancel) = default_writer(tables);
    handle
        .write(vec![record(1)], Vec::new())
        .await
        .expect("write");
    cancel.cancel();
    task.await.expect("join").expect("writer");
    let events = stats_columns(&dir.path().join(AUTH_EVENTS), 0);
    assert!(events.contains("rp_id"), "{events:?}");
    assert_no_identifiers(&events);
}
