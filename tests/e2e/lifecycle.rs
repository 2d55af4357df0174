//! Table upkeep from the outside: `keyshift maintain` over many small
//! commits, killed at its worst moments and run again; the server's
//! background pass.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use keyshift::child::Child;
use keyshift_store::query::QueryLimits;
use keyshift_store::{EventRecord, QueryEngine, QueryExecutor, StoreConfig, Tables};
use serde_json::Value;

use crate::common::{self, HEAVY, Server, files, sample};

const APP: &str = "keyshift-kafka-test-0";
const COMMITS: usize = 300;
const PER_COMMIT: usize = 3;

/// Event `i`, on one of three days.
fn record(i: usize) -> EventRecord {
    let at = Utc
        .with_ymd_and_hms(2026, 11, 20 + (i % 3) as u32, 12, 0, 0)
        .single()
        .expect("time");
    keyshift::synth::event_record("m", i as u64, "example.com", at).expect("valid")
}

/// `COMMITS` commits of `PER_COMMIT` events over three day partitions, each
/// recording its position as a Kafka consumer would: about 900 files.
async fn small_commits(root: &str) {
    let mut tables = Tables::open_or_create(root, &Default::default())
        .await
        .expect("tables");
    keyshift_store::fixture::small_commits(&mut tables.events, COMMITS, |c| {
        let events = (0..PER_COMMIT)
            .map(|k| record(c * PER_COMMIT + k))
            .collect();
        (events, vec![keyshift_store::fixture::txn(APP, c as i64)])
    })
    .await
    .expect("commits");
}

/// Rows, distinct event ids, files of the current version, and the stored
/// position, read from a fresh open.
async fn state(root: &str) -> (i64, i64, usize, Option<i64>) {
    let tables = Tables::open(root, &Default::default()).await.expect("open");
    let files = tables
        .events
        .snapshot()
        .expect("snapshot")
        .log_data()
        .num_files();
    let position = tables
        .events
        .snapshot()
        .expect("snapshot")
        .transaction_version(tables.events.log_store().as_ref(), APP)
        .await
        .expect("txn");
    let engine = QueryEngine::fixed(
        tables,
        QueryLimits::from(&StoreConfig::default()),
        QueryExecutor::standalone(&StoreConfig::default()).expect("executor"),
    )
    .expect("engine");
    let out = engine
        .sql("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM auth_events")
        .await
        .expect("query");
    let json = keyshift_metrics::batches_to_rows(&out.batches).expect("json");
    let row = &json[0];
    let n = |k: &str| row[k].as_i64().expect("count");
    (n("n"), n("d"), files, position)
}

fn maintain(data_dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyshift"));
    c.args(["maintain", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

/// Data files under the table's directory (the log's checkpoints aside).
fn parquet_on_disk(table: &Path) -> Vec<std::path::PathBuf> {
    files(table)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .filter(|p| !p.components().any(|c| c.as_os_str() == "_delta_log"))
        .collect()
}

/// Starts `keyshift maintain` and SIGKILLs it as soon as `moment` holds;
/// whether it was still running then.
fn kill_when(data_dir: &Path, moment: impl Fn() -> bool) -> bool {
    let mut child = Child::spawn(maintain(data_dir, &[])).expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.exit_within(Duration::ZERO).is_some() {
            return false;
        }
        if moment() {
            child.kill();
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "keyshift maintain neither ended nor reached the moment"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintain_survives_sigkill_and_compacts_without_losing_rows_or_offsets() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tables");
    let root_s = root.to_str().expect("utf8").to_owned();
    small_commits(&root_s).await;
    let before = state(&root_s).await;
    let rows = (COMMITS * PER_COMMIT) as i64;
    assert_eq!(before, (rows, rows, COMMITS * 3, Some(COMMITS as i64 - 1)));
    let table = root.join("auth_events");
    let log = table.join("_delta_log");
    let written = parquet_on_disk(&table).len();
    let commits = files(&log).len();

    // Killed while compaction writes its first file (before any commit),
    // then right after its first commit.
    let d = dir.path().to_owned();
    let killed_writing = kill_when(&d, || parquet_on_disk(&table).len() > written);
    let killed_committed = kill_when(&d, || files(&log).len() > commits);
    assert!(killed_writing, "maintain ended before it wrote a file");
    let after_kills = state(&root_s).await;
    assert_eq!(
        (after_kills.0, after_kills.1, after_kills.3),
        (rows, rows, before.3)
    );
    eprintln!(
        "killed: writing={killed_writing} committed={killed_committed}; files now {}",
        after_kills.2
    );

    // Run to completion; no grace, so the full vacuum also removes what the
    // killed runs left behind.
    let out = maintain(&d, &["--json", "--vacuum-grace", "0s", "--no-writers"])
        .output()
        .expect("maintain");
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(report[0]["table"], "auth_events");
    let after = state(&root_s).await;
    assert_eq!(
        (after.0, after.1, after.3),
        (rows, rows, before.3),
        "rows or offsets changed"
    );
    assert!(
        after.2 * 10 <= before.2,
        "files {} → {}: not 10× fewer",
        before.2,
        after.2
    );
    assert_eq!(
        parquet_on_disk(&table).len(),
        after.2,
        "unreferenced files left on disk"
    );

    // A second run finds nothing to do.
    let again = maintain(&d, &["--json"]).output().expect("maintain");
    let report: Value = serde_json::from_slice(&again.stdout).expect("json summary");
    assert_eq!(report[0]["partitions_compacted"], 0, "{report}");
    assert_eq!(
        report[0]["versions"][0], report[0]["versions"][1],
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_maintains_its_tables_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.maintenance.interval = Duration::from_secs(1);
    config.maintenance.compact_min_files = 2;
    let server = Server::start(config).await;
    for i in 0..6 {
        let (status, _) = server
            .post_ndjson(&[common::event(&format!("bg-{i}"), "u", "example.com").to_string()])
            .await;
        assert_eq!(status, 200);
    }
    until_scraped(&server, "no compaction within 60 s", |text| {
        let files = sample(text, r#"keyshift_store_table_files{table="auth_events"}"#);
        // The gauge is set per table, the pass counted once all are done.
        let passes = sample(text, r#"keyshift_maintenance_passes_total{outcome="ok"}"#);
        files == Some(1.0) && passes >= Some(1.0)
    })
    .await;
    assert_eq!(server.scalar("SELECT count(*) FROM auth_events").await, 6);
    let (status, _) = server
        .post_ndjson(&[common::event("bg-after", "u", "example.com").to_string()])
        .await;
    assert_eq!(status, 200, "the writer commits over the compacted table");
    assert_eq!(server.scalar("SELECT count(*) FROM auth_events").await, 7);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_compacts_as_soon_as_the_writer_added_enough_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    // The clock alone would not compact within the test.
    config.maintenance.interval = Duration::from_secs(3600);
    config.maintenance.compact_min_files = 2;
    config.maintenance.compact_after_files = 4;
    let server = Server::start(config).await;
    // One commit each, one file each: the fourth triggers the compaction.
    for i in 0..4 {
        let (status, _) = server
            .post_ndjson(&[common::event(&format!("fc-{i}"), "u", "example.com").to_string()])
            .await;
        assert_eq!(status, 200);
    }
    until_scraped(&server, "no compaction after 4 files within 60 s", |text| {
        let started = |trigger: &str| {
            sample(
                text,
                &format!(r#"keyshift_maintenance_passes_started_total{{trigger="{trigger}"}}"#),
            )
        };
        assert_eq!(
            started("interval"),
            Some(0.0),
            "the interval has not passed"
        );
        let files = sample(text, r#"keyshift_store_table_files{table="auth_events"}"#);
        let passes = sample(text, r#"keyshift_maintenance_passes_total{outcome="ok"}"#);
        files == Some(1.0) && started("files") == Some(1.0) && passes == Some(1.0)
    })
    .await;
    assert_eq!(server.scalar("SELECT count(*) FROM auth_events").await, 4);
    let (status, _) = server
        .post_ndjson(&[common::event("fc-after", "u", "example.com").to_string()])
        .await;
    assert_eq!(status, 200, "the writer commits over the compacted table");
    assert_eq!(server.scalar("SELECT count(*) FROM auth_events").await, 5);
    server.stop().await;
}

/// Scrapes `/metrics` until `done` holds for the text, failing with `what`
/// and the maintenance series after 60 s.
async fn until_scraped(server: &Server, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = server.scrape().await;
        if done(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {}",
            text.lines()
                .filter(|l| l.contains("maintenance") || l.contains("table_files"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_removes_a_user_from_every_table_and_the_vacuum_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(common::config(dir.path())).await;
    let rp = "example.com";
    let mut lines: Vec<String> = (0..3)
        .map(|i| common::event(&format!("a-{i}"), "alice@example.org", rp).to_string())
        .chain((0..2).map(|i| common::event(&format!("b-{i}"), "bob@example.org", rp).to_string()))
        .collect();
    // Refused (no event_type), its redacted copy keyed to alice.
    let mut bad = common::event("a-bad", "alice@example.org", rp);
    bad.as_object_mut().expect("object").remove("event_type");
    lines.push(bad.to_string());
    let (status, body) = server.post_ndjson(&lines).await;
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(5)),
        "{body}"
    );

    // Erased while the server runs; the user id comes on stdin.
    let mut erase = Command::new(env!("CARGO_BIN_EXE_keyshift"));
    erase
        .args([
            "erase",
            "--json",
            "--rp-id",
            rp,
            "--user-id",
            "-",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = erase.spawn().expect("spawn");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"alice@example.org\n").expect("write");
    }
    let out = child.wait_with_output().expect("erase");
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["rows_auth_events"], 3, "{report}");
    assert_eq!(report["rows_rejected_events"], 1, "{report}");
    let secret = keyshift_ingest::pseudonym::Pseudonymizer::load(&dir.path().join("secret.key"))
        .expect("secret");
    let key = secret.key("user", rp, "alice@example.org");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("alice") && !text.contains(&key), "{text}");

    // The writer commits over the delete; queries no longer see alice.
    let (status, _) = server
        .post_ndjson(&[common::event("b-2", "bob@example.org", rp).to_string()])
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.scalar("SELECT count(*) FROM auth_events").await, 3);
    assert_eq!(
        server
            .scalar("SELECT count(DISTINCT user_key) FROM auth_events")
            .await,
        1
    );
    let alice = format!("SELECT count(*) FROM auth_events WHERE user_key = '{key}'");
    assert_eq!(server.scalar(&alice).await, 0);
    // rejected_events had no commit since: the server still reads its old
    // version (the CLI cannot tell it; the admin API reloads at once).
    // A fresh open sees the erasure.
    server.stop().await;

    // After the vacuum, the files on disk are exactly those of the current
    // versions, which hold none of alice's rows.
    let out = maintain(dir.path(), &["--vacuum-grace", "0s", "--no-writers"])
        .output()
        .expect("maintain");
    assert!(out.status.success(), "{out:?}");
    let root = dir.path().join("tables");
    let tables = Tables::open(root.to_str().expect("utf8"), &Default::default())
        .await
        .expect("open");
    assert_eq!(state(root.to_str().expect("utf8")).await.0, 3);
    let rejected = tables.rejected.snapshot().expect("snapshot");
    assert_eq!(
        rejected.log_data().iter().count(),
        0,
        "the only reject was alice's; its file is gone from the table"
    );
    for (name, table) in [
        ("auth_events", &tables.events),
        ("rejected_events", &tables.rejected),
    ] {
        let live = table.snapshot().expect("snapshot").log_data().num_files();
        assert_eq!(
            parquet_on_disk(&root.join(name)).len(),
            live,
            "{name}: files left on disk"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_erases_and_queries_stop_seeing_the_user_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.auth.admin_tokens = vec!["admin-token-0123456789".to_owned()];
    config.auth.rp_tokens = vec![keyshift_http::RpToken {
        token: "rp-token-0123456789abc".to_owned(),
        rp_id: "example.com".to_owned(),
    }];
    let server = Server::start(config).await;
    let lines: Vec<String> = ["carol", "carol", "dave"]
        .iter()
        .enumerate()
        .map(|(i, u)| common::event(&format!("e-{i}"), u, "example.com").to_string())
        .collect();
    let (status, _) = server.post_ndjson(&lines).await;
    assert_eq!(status, 200);
    let erase = |token: &'static str| {
        server
            .client
            .post(format!("{}/v1/admin/erasures", server.base))
            .bearer_auth(token)
            .json(&serde_json::json!({"rp_id": "example.com", "user_id": "carol"}))
            .send()
    };
    let refused = erase("rp-token-0123456789abc").await.expect("post");
    assert_eq!(refused.status().as_u16(), 403, "an RP token may not erase");
    let resp = erase("admin-token-0123456789").await.expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let report: Value = resp.json().await.expect("json");
    assert_eq!(report["rows_auth_events"], 2, "{report}");
    // No commit since: the answer itself made queries current.
    assert_eq!(server.scalar("SELECT count(*) FROM auth_events").await, 1);
    server.stop().await;
}
