//! Tokens, RP scoping, read-only SQL, loopback-only when open.

use keyshift_http::RpToken;
use serde_json::{Value, json};

use crate::common::{Server, config, event};

const ADMIN: &str = "admin-token-for-tests-0001";
const RP_A: &str = "rp-a-token-for-tests-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scope_writes_and_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.auth.admin_tokens = vec![ADMIN.to_owned()];
    cfg.auth.rp_tokens = vec![RpToken {
        token: RP_A.to_owned(),
        rp_id: "a.example".to_owned(),
    }];
    let server = Server::start(cfg).await;
    let url = format!("{}/v1/events", server.base);
    let body = json!([
        event("s-1", "u1", "a.example"),
        event("s-2", "u2", "b.example")
    ]);

    let resp = server
        .client
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 401);
    let resp = server
        .client
        .post(&url)
        .bearer_auth("wrong-token-000000000")
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 401);

    // The RP token may write for its own rp_id only: the other event is rejected, per event.
    let resp = server
        .client
        .post(&url)
        .bearer_auth(RP_A)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.expect("json");
    assert_eq!(out["accepted"], 1);
    assert_eq!(out["rejected"][0]["index"], 1);
    assert!(
        out["rejected"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("b.example")),
        "{out}"
    );

    // RP tokens cannot read; admin tokens can.
    let sql = format!("{}/v1/sql", server.base);
    let q = json!({"sql": "SELECT count(*) AS n FROM auth_events"});
    let resp = server
        .client
        .post(&sql)
        .bearer_auth(RP_A)
        .json(&q)
        .send()
        .await
        .expect("sql");
    assert_eq!(resp.status(), 403);
    let rows = server.sql("SELECT count(*) AS n FROM auth_events").await;
    assert_eq!(rows[0]["n"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_is_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path())).await;
    for sql in [
        "DROP TABLE auth_events",
        "INSERT INTO auth_events SELECT * FROM auth_events",
        "CREATE TABLE t AS SELECT 1",
        "SELECT 1; SELECT 2",
        "not sql at all",
    ] {
        let resp = server
            .post("/v1/sql")
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .expect("sql");
        assert_eq!(resp.status(), 400, "{sql}");
        let body: Value = resp.json().await.expect("json error");
        assert!(body["error"].is_string(), "{sql}: {body}");
    }
    let rows = server.sql("EXPLAIN SELECT count(*) FROM auth_events").await;
    assert!(!rows.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn an_open_server_refuses_a_public_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.server.listen = "0.0.0.0:0".parse().expect("addr");
    let err = keyshift::start(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("must refuse");
    assert!(err.to_string().contains("without authentication"), "{err}");
}
