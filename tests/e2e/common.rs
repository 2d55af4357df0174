//! Shared helpers: start/stop a server, post, query.

use std::path::Path;

use keyshift::config::Config;
use keyshift::{Running, StartOptions, start_with};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Taken by the CPU-heavy tests (runaway queries, simulations, 200,000-event
/// backlogs) so that no two of them share this machine's cores: next to a
/// runaway query or a backlog, a demo's KPI queries ran past their time
/// limit. A test that also needs the Kafka broker takes `kafka::BROKER`
/// first.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    // The rollup task looks up the result cache on its own schedule; tests
    // that count lookups would race it. `kpi_rollups.rs` tests it.
    c.kpi_rollups.enabled = false;
    c
}

impl Server {
    pub async fn start(config: Config) -> Server {
        Self::start_with(config, StartOptions::default()).await
    }

    /// [`Server::start`] with options (injected faults, a clock).
    pub async fn start_with(config: Config, options: StartOptions) -> Server {
        let token = config.auth.admin_tokens.first().cloned();
        let running = start_with(config, CancellationToken::new(), options)
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

    /// [`Server::start`] with a writer whose commits fail when `faults`
    /// says so.
    pub async fn start_with_faults(
        config: Config,
        faults: &keyshift_store::writer::Faults,
    ) -> Server {
        let options = StartOptions {
            writer_faults: Some(faults.clone()),
            ..StartOptions::default()
        };
        Self::start_with(config, options).await
    }

    /// The `/metrics` exposition.
    pub async fn scrape(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
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

/// A `keyshift` process started by a test, its API address read from its
/// start-up log. Killed when dropped, unless it already exited.
pub struct Process {
    pub child: keyshift::child::Child,
    pub base: String,
}

impl Process {
    /// Starts `keyshift <args>` listening on a free loopback port, with
    /// `env` added, and waits until it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Process {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyshift"));
        command
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("KEYSHIFT__LOG__FORMAT", "json")
            .env("RUST_LOG", "warn,keyshift=info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = keyshift::child::Child::spawn(command).expect("spawn keyshift");
        let stderr = child.take_stderr().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Forwards the log to the test's output, and the address once.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[keyshift] {line}");
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["fields"]["message"].as_str() == Some("keyshift listening")
                    && let (Some(t), Some(addr)) = (tx.take(), v["fields"]["addr"].as_str())
                {
                    let _ = t.send(addr.to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("keyshift did not report its address within 60 s");
        Process {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.child.terminate().expect("SIGTERM");
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn exit_within(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        self.child.exit_within(within)
    }

    /// CPU time (user + system, clock ticks) per thread name of the process.
    pub fn cpu_ticks_by_thread_name(&self) -> std::collections::BTreeMap<String, u64> {
        self.child.cpu_ticks_by_thread_name()
    }

    /// Peak resident memory so far, KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.child.peak_rss_kib().expect("VmHWM")
    }
}

/// The value of a sample in a Prometheus text exposition (`name{labels}`
/// exactly as rendered), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
