//! `keyshift import` from the outside: exact counts over a million lines, a
//! re-run that stores nothing, a SIGKILL mid-import resumed without loss or
//! doubles, standard input with an RP scope and the exit status.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::HEAVY;

/// What a generated file must give.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    lines: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    blank: u64,
}

fn event(i: u64, rp: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"imp-{i}","event_type":"auth.started","occurred_at":"2026-11-20T09:00:00Z","rp_id":"{rp}","client":{{"os":"ios","browser":"safari","form_factor":"mobile","app_type":"web"}},"data":{{"method":"passkey"}},"user_id":"u{u}"}}"#,
        u = i % 5_000
    )
}

/// `n` numbered lines: mostly new events; every 100th repeats the (valid) event of
/// 51 lines before (a duplicate), every 250th is malformed or invalid (a
/// rejection), and every 1,000th is followed by a blank line.
fn write_events(out: &mut impl std::io::Write, n: u64) -> Expected {
    let mut want = Expected::default();
    for i in 1..=n {
        let line = if i % 250 == 0 {
            want.rejected += 1;
            if i % 500 == 0 {
                format!(r#"{{"schema_version":1,"event_id":"bad-{i}","#)
            } else {
                event(i, "import.example").replace("auth.started", "auth.teleported")
            }
        } else if i % 100 == 0 {
            want.duplicates += 1;
            event(i - 51, "import.example")
        } else {
            want.accepted += 1;
            event(i, "import.example")
        };
        writeln!(out, "{line}").expect("write");
        want.lines += 1;
        if i % 1_000 == 0 {
            writeln!(out).expect("write");
            want.lines += 1;
            want.blank += 1;
        }
    }
    want
}

fn import(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyshift"));
    c.args(["import", "--data-dir"])
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "warn");
    c
}

/// Runs an import with `--json`; its exit code and report.
fn run_json(dir: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let out = import(dir, args)
        .arg("--json")
        .stderr(Stdio::inherit())
        .output()
        .expect("run keyshift import");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), report)
}

fn sql(dir: &Path, query: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_keyshift"))
        .args(["sql", "--format", "json", "--data-dir"])
        .arg(dir)
        .arg(query)
        .output()
        .expect("keyshift sql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    v["rows"].as_array().cloned().expect("rows")
}

/// Rows, distinct ids and refused lines the import left in the tables.
fn stored(dir: &Path) -> (i64, i64, i64) {
    let rows = sql(
        dir,
        "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM auth_events",
    );
    let rejected = sql(
        dir,
        "SELECT count(*) AS n FROM rejected_events WHERE source = 'import'",
    );
    let n = |v: &Value, k: &str| v[k].as_i64().unwrap_or(-1);
    (n(&rows[0], "n"), n(&rows[0], "d"), n(&rejected[0], "n"))
}

fn counts(file: &Value) -> Expected {
    let n = |k: &str| file[k].as_u64().unwrap_or(u64::MAX);
    Expected {
        lines: n("lines"),
        accepted: n("accepted"),
        duplicates: n("duplicates"),
        rejected: n("rejected"),
        blank: n("blank"),
    }
}

#[tokio::test]
async fn a_million_lines_give_exact_counts_and_a_rerun_stores_nothing() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backfill.ndjson");
    let want = {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        let want = write_events(&mut out, 1_000_000);
        out.flush().expect("flush");
        want
    };
    let data = dir.path().join("data");
    let path = file.to_str().expect("utf-8 path");

    let (code, report) = run_json(&data, &[path]);
    assert_eq!(code, Some(3), "lines were rejected: exit status 3");
    assert_eq!(counts(&report["files"][0]), want);
    let first = &report["files"][0]["rejections"][0];
    assert_eq!(first["line"], 250, "{first}");
    assert!(
        first["error"]
            .as_str()
            .is_some_and(|e| e.contains("teleported")),
        "{first}"
    );
    let accepted = i64::try_from(want.accepted).expect("fits");
    let rejected = i64::try_from(want.rejected).expect("fits");
    assert_eq!(stored(&data), (accepted, accepted, rejected));

    let (code, again) = run_json(&data, &[path]);
    assert_eq!(code, Some(0), "nothing rejected in this run: {again}");
    let f = &again["files"][0];
    assert_eq!(f["accepted"], 0);
    assert_eq!(f["rejected"], 0);
    assert_eq!(f["resumed_after_line"], want.lines);
    assert_eq!(
        stored(&data),
        (accepted, accepted, rejected),
        "a re-run stores nothing"
    );
}

#[tokio::test]
async fn an_import_killed_midway_resumes_without_loss_or_doubles() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backfill.ndjson.gz");
    let want = {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&file).expect("create"),
            flate2::Compression::fast(),
        );
        let mut out = std::io::BufWriter::new(gz);
        let want = write_events(&mut out, 100_000);
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|gz| gz.finish())
            .expect("gzip");
        want
    };
    let data = dir.path().join("data");
    let path = file.to_str().expect("utf-8 path");
    let mut child = import(&data, &[path, "--batch-lines", "1000", "--no-progress"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    // Killed once a few commits (each with its line number) are in.
    let log = data.join("tables/auth_events/_delta_log");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let commits = std::fs::read_dir(&log)
            .map(|d| d.filter(|e| e.is_ok()).count())
            .unwrap_or(0);
        if commits >= 6 {
            break;
        }
        assert!(Instant::now() < deadline, "no commits within 120 s");
        assert!(child.try_wait().expect("wait").is_none(), "exited early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let (partial, _, _) = stored(&data);
    assert!(partial > 0 && partial < i64::try_from(want.accepted).expect("fits"));

    let (code, report) = run_json(&data, &[path, "--no-progress"]);
    assert_eq!(code, Some(3), "{report}");
    let resumed = report["files"][0]["resumed_after_line"]
        .as_i64()
        .expect("resumed");
    assert!(
        resumed > 0,
        "the re-run resumed after the stored lines: {report}"
    );
    let accepted = i64::try_from(want.accepted).expect("fits");
    let rejected = i64::try_from(want.rejected).expect("fits");
    assert_eq!(
        stored(&data),
        (accepted, accepted, rejected),
        "every event once, every refused line recorded once"
    );
}

#[tokio::test]
async fn stdin_with_an_rp_scope_rejects_other_rps_and_overlong_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut body = String::new();
    for i in 0..8 {
        body.push_str(&event(i, "mine.example"));
        body.push('\n');
    }
    body.push_str(&event(8, "other.example"));
    body.push('\n');
    body.push_str(&format!("{}\n", "x".repeat(3_000)));
    let mut child = import(&data, &["-", "--rp-id", "mine.example", "--json"])
        .env("KEYSHIFT__INGEST__MAX_BODY_BYTES", "2048")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed stdin");
    let out = child.wait_with_output().expect("import");
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let f = &report["files"][0];
    assert_eq!(f["content_id"], Value::Null);
    assert_eq!(
        (f["accepted"].as_u64(), f["rejected"].as_u64()),
        (Some(8), Some(2))
    );
    let errors: Vec<(i64, String)> = f["rejections"]
        .as_array()
        .expect("rejections")
        .iter()
        .map(|r| (r["line"].as_i64().unwrap_or(0), r["error"].to_string()))
        .collect();
    assert_eq!(errors[0].0, 9);
    assert!(errors[0].1.contains("other.example"), "{errors:?}");
    assert_eq!(errors[1].0, 10);
    assert!(errors[1].1.contains("max_body_bytes (2048)"), "{errors:?}");
    let rows = sql(
        &data,
        "SELECT source_topic, source_offset, raw_size, raw_truncated FROM rejected_events \
         ORDER BY source_offset",
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["source_topic"], "stdin");
    assert_eq!(rows[1]["raw_size"], 3000);
    assert_eq!(rows[1]["raw_truncated"], true);
}
