//! The shipped dashboards and alert rules in a real Prometheus scraping a
//! running keyshift (Prometheus from `scripts/tools.sh`; in CI it must be
//! there, elsewhere the test is skipped loudly).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyshift::bench::population::Population;
use serde_json::{Value, json};

use crate::prometheus::{RP, RP_TOKEN, post_lines, repo, started_and_fed, tool};

// ---- a real Prometheus --------------------------------------------------------

/// A Prometheus server on loopback, killed when dropped.
struct Prometheus {
    _child: keyshift::child::Child,
    base: String,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts `bin` scraping `target` every second with the shipped rules,
    /// evaluated every second.
    async fn start(bin: &Path, dir: &Path, target: &str) -> Prometheus {
        let rules = repo("dashboards/alerts/keyshift.rules.yml");
        assert!(rules.is_file(), "{} is missing", rules.display());
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: keyshift\n    static_configs:\n      - targets: ['{target}']\n",
            rules = rules.display()
        );
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).expect("prometheus.yml");
        let port = keyshift::child::free_port().expect("free port");
        let mut command = std::process::Command::new(bin);
        command
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let p = Prometheus {
            _child: keyshift::child::Child::spawn(command).expect("spawn prometheus"),
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = p
                .client
                .get(format!("{}/-/ready", p.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return p;
            }
            assert!(Instant::now() < deadline, "Prometheus not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET path?form`.
    async fn api(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.client
            .get(format!("{}{path}?{query}", self.base))
            .send()
            .await
            .expect("prometheus api")
            .json()
            .await
            .expect("json")
    }

    /// Evaluates `expr` now: `Err` with Prometheus's error, or the result.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self.api("/api/v1/query", &[("query", expr)]).await;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(match &v["data"]["result"] {
            Value::Array(a) => a.clone(),
            // Scalars and strings: one value.
            other => vec![other.clone()],
        })
    }

    /// Polls `expr` until it returns a non-empty result.
    async fn wait_for(&self, expr: &str, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = self.query(expr).await
                && !r.is_empty()
            {
                return r;
            }
            assert!(Instant::now() < deadline, "{expr}: no result in {within:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A dashboard panel's title and PromQL expressions, variables replaced as
/// Grafana would for "All" and durations.
struct Panel {
    dashboard: String,
    title: String,
    exprs: Vec<String>,
}

fn substitute(expr: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "15s")
        .replace("${__interval}", "15s")
        .replace("$__range", "5m")
        .replace("${__range}", "5m");
    // Every other variable at "All": a regex matching everything.
    while let Some(start) = out.find('$') {
        let rest = &out[start + 1..];
        let len = if rest.starts_with('{') {
            rest.find('}').map_or(rest.len(), |i| i + 1)
        } else {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        };
        out.replace_range(start..start + 1 + len, ".*");
    }
    out
}

fn dashboard_panels() -> Vec<Panel> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("dashboards"))
        .expect("dashboards/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "dashboards: {files:?}");
    let mut out = Vec::new();
    for file in files {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let mut stack: Vec<Value> = d["panels"].as_array().cloned().unwrap_or_default();
        while let Some(p) = stack.pop() {
            if let Some(inner) = p["panels"].as_array() {
                stack.extend(inner.iter().cloned());
            }
            let exprs: Vec<String> = p["targets"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .filter_map(|t| t["expr"].as_str())
                        .map(substitute)
                        .collect()
                })
                .unwrap_or_default();
            if !exprs.is_empty() {
                out.push(Panel {
                    dashboard: name.clone(),
                    title: p["title"].as_str().unwrap_or("").to_owned(),
                    exprs,
                });
            }
        }
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            if let Some(e) = a["expr"].as_str().or(a["target"]["expr"].as_str()) {
                out.push(Panel {
                    dashboard: name.clone(),
                    title: format!("annotation {}", a["name"]),
                    exprs: vec![substitute(e)],
                });
            }
        }
    }
    out
}

/// One recovery burst: `n` recoveries started now, by email.
fn recovery_burst(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            json!({
                "schema_version": 1,
                "event_id": format!("burst-{i}"),
                "event_type": "recovery.started",
                "occurred_at": chrono::Utc::now().to_rfc3339(),
                "rp_id": RP,
                "user_id": format!("burst-user-{i}"),
                "client": {"os": "iOS", "browser": "Safari"},
                "data": {"channel": "email"}
            })
            .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_evaluate_in_a_real_prometheus() {
    let Some(bin) = tool("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = started_and_fed(&dir.path().join("keyshift")).await;
    let target = server.base.trim_start_matches("http://").to_owned();
    let prom = Prometheus::start(&bin, dir.path(), &target).await;
    prom.wait_for("keyshift_events_total", Duration::from_secs(60))
        .await;
    // More traffic once Prometheus has a first sample, so rates have data.
    let mut lines = Vec::new();
    let mut population = Population::new(8, RP, 3000);
    population.day(chrono::Utc::now() - chrono::Duration::days(3), &mut lines);
    post_lines(&server, RP_TOKEN, &lines).await;
    for expr in [
        "sum(rate(keyshift_events_total[1m])) > 0",
        // The recording rules have been evaluated over that data.
        "keyshift:passkey_signin_errors:ratio_rate3d",
        "keyshift:ingest_freshness_errors:ratio_rate3d",
    ] {
        prom.wait_for(expr, Duration::from_secs(60)).await;
    }

    // Every expression of every panel and rule evaluates without error.
    let panels = dashboard_panels();
    let mut errors = Vec::new();
    let mut empty = Vec::new();
    for p in &panels {
        let mut any = false;
        for e in &p.exprs {
            match prom.query(e).await {
                Ok(r) => any |= !r.is_empty(),
                Err(err) => errors.push(format!("{} / {}: {e}: {err}", p.dashboard, p.title)),
            }
        }
        // The adoption and reliability panels have data; the Kafka ones
        // cannot here (no broker in this run).
        let kafka = p.exprs.iter().all(|e| e.contains("keyshift_kafka_"));
        if !any && !kafka && p.dashboard != "rollouts.json" && !p.title.starts_with("annotation") {
            empty.push(format!("{} / {}: {:?}", p.dashboard, p.title, p.exprs));
        }
    }
    let rules = prom.api("/api/v1/rules", &[]).await;
    let mut rule_count = 0;
    for g in rules["data"]["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            rule_count += 1;
            let q = r["query"].as_str().expect("rule query");
            if let Err(err) = prom.query(q).await {
                errors.push(format!("rule {}: {err}", r["name"]));
            }
        }
    }
    assert!(rule_count > 10, "rules not loaded: {rules}");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );

    // A recovery burst makes the recovery-spike alert go pending or firing
    // (the first-week branch: this Prometheus has no history a week back).
    post_lines(&server, RP_TOKEN, &recovery_burst(600)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let alerts = prom.api("/api/v1/alerts", &[]).await;
        let spike = alerts["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| {
                a["labels"]["alertname"] == "KeyshiftRecoverySpike" && a["labels"]["rp_id"] == RP
            });
        if let Some(a) = spike {
            assert!(
                matches!(a["state"].as_str(), Some("pending" | "firing")),
                "{a}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery-spike alert: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every rule has been evaluated by now, without error.
    let rules = prom.api("/api/v1/rules", &[]).await;
    for g in rules["data"]["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            assert_ne!(r["health"], "err", "{r}");
        }
    }
    drop(prom);
    server.stop().await;
}
