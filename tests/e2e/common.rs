//! Shared helpers: start/stop a server, post, query.

use std::path::Path;

use keyshift::config::Config;
use keyshift::{Running, start};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub struct Server {
    pub running: Running,
    pub base: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

pub fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.server.data_dir = dir.to_path_buf();
    c
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let token = config.auth.admin_tokens.first().cloned();
        let running = start(config, CancellationToken::new())
            .await
            .expect("server starts");
        let base = format!("http://{}", running.addr);
        Server {
            running,
            base,
            client: reqwest::Client::new(),
            token,
        }
    }

    pub async fn stop(self) {
        self.running.stop().await.expect("clean shutdown");
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.post(format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Posts an NDJSON body; returns status and JSON body.
    pub async fn post_ndjson(&self, lines: &[String]) -> (u16, Value) {
        let body = lines.join("\n");
        let resp = self
            .post("/v1/events")
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("post");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("json response"))
    }

    pub async fn sql(&self, sql: &str) -> Vec<Value> {
        let resp = self
            .post("/v1/sql")
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .expect("sql");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert!(status.is_success(), "{sql}: {status} {body}");
        body["rows"].as_array().cloned().unwrap_or_default()
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        let rows = self.sql(sql).await;
        let row = rows.first().and_then(Value::as_object).expect("one row");
        row.values()
            .next()
            .and_then(Value::as_i64)
            .expect("integer")
    }
}

/// A valid event with a distinctive raw user id.
pub fn event(id: &str, user: &str, rp: &str) -> Value {
    json!({
        "schema_version": 1,
        "event_id": id,
        "event_type": "auth.succeeded",
        "occurred_at": chrono::Utc::now().to_rfc3339(),
        "rp_id": rp,
        "user_id": user,
        "device_id": format!("{user}-device"),
        "session_id": format!("{user}-session"),
        "client": {"os": "macOS", "browser": "Safari", "form_factor": "desktop", "app_type": "web"},
        "rollout": {"rollout_id": "pk-default", "variant": "treatment", "percent": 5},
        "data": {"method": "passkey", "duration_ms": 3100,
                 "credential": {"backup_eligible": true, "backup_state": true, "transports": ["internal"]}}
    })
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
