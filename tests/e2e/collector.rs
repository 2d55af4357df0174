//! The collector's acceptance scenarios.

use serde_json::{Value, json};

use crate::common::{Server, config, event, files};

const RAW_USER: &str = "SECRET-USER";

fn valid(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            event(
                &format!("evt-{i:05}"),
                &format!("{RAW_USER}-{}", i % 300),
                "login.example.com",
            )
        })
        .collect()
}

/// 30 invalid inputs of six kinds, five each, every one carrying a raw user id.
fn invalid() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for i in 0..5 {
        let u = format!("{RAW_USER}-bad-{i}");
        out.push((
            format!(r#"{{"schema_version":1,"event_id":"bad-json-{i}","user_id":"{u}","rp_id":"login.example.com","data":{{"#),
            "malformed JSON",
        ));
        let mut e = event(&format!("bad-type-{i}"), &u, "login.example.com");
        e["data"]["duration_ms"] = json!("slow");
        out.push((e.to_string(), "/data/duration_ms"));
        let mut e = event(&format!("bad-kind-{i}"), &u, "login.example.com");
        e["event_type"] = json!("auth.teleported");
        out.push((e.to_string(), "/event_type"));
        let mut e = event(&format!("bad-bs-{i}"), &u, "login.example.com");
        e["data"]["credential"]["backup_eligible"] = json!(false);
        out.push((e.to_string(), "/data/credential/backup_state"));
        let mut e = event(&format!("bad-future-{i}"), &u, "login.example.com");
        e["occurred_at"] = json!((chrono::Utc::now() + chrono::Duration::hours(25)).to_rfc3339());
        out.push((e.to_string(), "/occurred_at"));
        let mut e = event(&format!("bad-long-{i}"), &u, "login.example.com");
        e["client"]["browser"] = json!("x".repeat(65));
        out.push((e.to_string(), "/client/browser"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_valid_fifty_resends_thirty_invalid_then_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path())).await;
    let valid = valid(1000);
    let invalid = invalid();

    // Interleave: 10 requests, each with 100 new events, 5 re-sends of
    // earlier ones and 3 invalid inputs.
    let (mut accepted, mut duplicates, mut rejected) = (0, 0, Vec::new());
    for r in 0..10 {
        let mut lines: Vec<String> = valid[r * 100..(r + 1) * 100]
            .iter()
            .map(Value::to_string)
            .collect();
        for k in 0..5 {
            lines.push(valid[(r * 100 + k * 7) % ((r + 1) * 100)].to_string());
        }
        let bad = &invalid[r * 3..r * 3 + 3];
        lines.extend(bad.iter().map(|(l, _)| l.clone()));
        let (status, body) = server.post_ndjson(&lines).await;
        assert_eq!(status, 200, "{body}");
        accepted += body["accepted"].as_u64().expect("accepted");
        duplicates += body["duplicates"].as_u64().expect("duplicates");
        let rj = body["rejected"].as_array().expect("rejected");
        for (j, item) in rj.iter().enumerate() {
            assert_eq!(item["index"].as_u64(), Some(105 + j as u64), "{item}");
            let expected = bad[j].1;
            assert!(
                item["error"].as_str().is_some_and(|e| e.contains(expected)),
                "{item} should mention {expected}"
            );
        }
        rejected.extend(rj.iter().cloned());
    }
    assert_eq!((accepted, duplicates, rejected.len()), (1000, 50, 30));

    let rows = server
        .sql("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM auth_events")
        .await;
    assert_eq!(rows[0], json!({"n": 1000, "d": 1000}));
    assert_eq!(
        server.scalar("SELECT count(*) FROM rejected_events").await,
        30
    );
    assert_eq!(
        server
            .scalar("SELECT count(*) FROM rejected_events WHERE error_pointer IS NOT NULL")
            .await,
        25,
        "every JSON rejection names its JSON pointer"
    );
    assert_eq!(
        server
            .scalar("SELECT count(DISTINCT user_key) FROM auth_events")
            .await,
        300
    );

    // No raw identifier anywhere: not in any column, not in any file.
    let all = server.sql("SELECT * FROM rejected_events").await;
    let all_events = server.sql("SELECT * FROM auth_events LIMIT 10000").await;
    for row in all.iter().chain(&all_events) {
        assert!(!row.to_string().contains(RAW_USER), "raw id stored: {row}");
    }
    server.stop().await;
    for f in files(dir.path()) {
        let bytes = std::fs::read(&f).expect("read");
        let hit = bytes
            .windows(RAW_USER.len())
            .any(|w| w == RAW_USER.as_bytes());
        assert!(!hit, "raw user id in {}", f.display());
    }

    // Restart on the same data dir: same data, and every re-send is a duplicate.
    let server = Server::start(config(dir.path())).await;
    assert_eq!(
        server.scalar("SELECT count(*) FROM auth_events").await,
        1000
    );
    let mut dup_total = 0;
    for chunk in valid.chunks(250) {
        let lines: Vec<String> = chunk.iter().map(Value::to_string).collect();
        let (status, body) = server.post_ndjson(&lines).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], 0, "{body}");
        dup_total += body["duplicates"].as_u64().expect("duplicates");
    }
    assert_eq!(dup_total, 1000);
    assert_eq!(
        server.scalar("SELECT count(*) FROM auth_events").await,
        1000
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_clients_get_exact_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = std::sync::Arc::new(Server::start(config(dir.path())).await);
    let mut tasks = Vec::new();
    for c in 0..8 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            for b in 0..5 {
                let lines: Vec<String> = (0..200)
                    .map(|i| {
                        event(
                            &format!("c{c}-b{b}-{i}"),
                            &format!("{RAW_USER}-{c}-{i}"),
                            "a.example",
                        )
                        .to_string()
                    })
                    .collect();
                let (status, body) = server.post_ndjson(&lines).await;
                assert_eq!(status, 200, "{body}");
                accepted += body["accepted"].as_u64().expect("accepted");
            }
            accepted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client");
    }
    assert_eq!(total, 8 * 5 * 200);
    assert_eq!(
        server
            .scalar("SELECT count(DISTINCT event_id) FROM auth_events")
            .await,
        8000
    );
    assert_eq!(
        server.scalar("SELECT count(*) FROM auth_events").await,
        8000
    );
    let server = std::sync::Arc::into_inner(server).expect("sole owner");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_arrays_limits_and_bad_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path())).await;

    let arr = json!([
        event("arr-1", "u1", "a.example"),
        event("arr-2", "u2", "a.example")
    ]);
    let resp = server
        .post("/v1/events")
        .json(&arr)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"accepted": 2, "duplicates": 0, "rejected": []})
    );

    // A malformed JSON body is a 400 with a JSON error, and the server stays up.
    let resp = server
        .post("/v1/events")
        .header("content-type", "application/json")
        .body("[{\"a\":")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json error");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("malformed JSON")),
        "{body}"
    );
    // …and the body is recorded like any other bad input.
    let rows = server
        .sql("SELECT raw, error FROM rejected_events WHERE source = 'http' AND raw LIKE '[{%'")
        .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["raw"], json!("[{\"a\":"), "{rows:?}");

    // More than 10,000 events: 413.
    let many: Vec<String> = (0..10_001).map(|i| format!("{{\"i\":{i}}}")).collect();
    let (status, body) = server.post_ndjson(&many).await;
    assert_eq!(status, 413, "{body}");

    // More than 5 MiB: 413.
    let big = "x".repeat(5 * 1024 * 1024 + 1);
    let resp = server
        .post("/v1/events")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.expect("json error");
    assert!(body["error"].is_string());

    // Wrong content type: 415.
    let resp = server
        .post("/v1/events")
        .header("content-type", "text/csv")
        .body("a,b")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 415);

    // Unknown fields are kept, with their pointers.
    let mut e = event("extra-1", "u3", "a.example");
    e["producer_build"] = json!("2026.11");
    let (status, body) = server.post_ndjson(&[e.to_string()]).await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(1)));
    let rows = server
        .sql("SELECT extra FROM auth_events WHERE event_id = 'extra-1'")
        .await;
    assert_eq!(rows[0]["extra"], json!("{\"/producer_build\":\"2026.11\"}"));

    // Still serving.
    let health = server
        .client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    server.stop().await;
}

/// Producers move to schema v2 one by one: v1 and v2 events arrive in one
/// request, are stored side by side, survive a restart, and the KPIs read
/// both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_events_are_stored_side_by_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path())).await;
    let v1 = event("v1-a", "user-a", "login.example.com");
    let mut v2 = event("v2-a", "user-b", "login.example.com");
    v2["schema_version"] = json!(2);
    let mut signaled = event("v2-b", "user-b", "login.example.com");
    signaled["schema_version"] = json!(2);
    signaled["event_type"] = json!("credential.signaled");
    signaled["data"] = json!({"signal": "unknown_credential"});
    let mut hinted = event("v2-c", "user-c", "login.example.com");
    hinted["schema_version"] = json!(2);
    hinted["event_type"] = json!("auth.started");
    hinted["data"] = json!({"method": "passkey", "hints": ["security-key"]});
    let mut too_new = event("v1-signal", "user-d", "login.example.com");
    too_new["event_type"] = json!("credential.signaled");
    too_new["data"] = json!({"signal": "unknown_credential"});
    let lines: Vec<String> = [v1, v2, signaled, hinted, too_new]
        .iter()
        .map(Value::to_string)
        .collect();
    let (status, body) = server.post_ndjson(&lines).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 4, "{body}");
    assert_eq!(
        body["rejected"][0]["index"], 4,
        "credential.signaled needs v2: {body}"
    );
    server.stop().await;

    let server = Server::start(config(dir.path())).await;
    let rows = server
        .sql(
            "SELECT event_id, schema_version, signal, array_to_string(hints, ',') AS hints \
             FROM auth_events ORDER BY event_id",
        )
        .await;
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["event_id"], r["schema_version"], r["signal"], r["hints"]
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            r#""v1-a" 1 null null"#,
            r#""v2-a" 2 null null"#,
            r#""v2-b" 2 "unknown_credential" null"#,
            r#""v2-c" 2 null "security-key""#,
        ]
    );
    let kpis = server
        .client
        .get(format!("{}/v1/kpis?kpi=passkey_usage", server.base))
        .send()
        .await
        .expect("kpis");
    assert_eq!(
        kpis.status().as_u16(),
        200,
        "{}",
        kpis.text().await.unwrap_or_default()
    );
    server.stop().await;
}
