//! `/metrics` as a contract (`docs/metrics.md`); the shared run that
//! [`crate::prometheus_server`] also scrapes with a real Prometheus.
//!
//! Prometheus and promtool come from `scripts/tools.sh` (Debian's
//! `prometheus` package). Without them these tests fail in CI; elsewhere they
//! are skipped, loudly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyshift::bench::population::Population;
use keyshift_http::RpToken;
use serde_json::{Value, json};

use crate::common::{Server, config};

pub(crate) const ADMIN: &str = "admin-token-0123456789";
pub(crate) const RP_TOKEN: &str = "rp-token-login-0123456789";
pub(crate) const RP: &str = "login.example.com";
/// Relying parties beyond the configured one that get their own label.
const CAP: usize = 2;
/// Posted by the admin token: two get a label, two are `other`.
const EXTRA_RPS: [&str; 4] = ["a.example", "b.example", "c.example", "d.example"];

pub(crate) fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A tool from `scripts/tools.sh`: in CI it must be there.
pub(crate) fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is missing: scripts/tools.sh installs it, and CI must run this test"
        );
        eprintln!("!!! WARNING: {name} not found (run scripts/tools.sh); this test is SKIPPED !!!");
    }
    found
}

// ---- the table -------------------------------------------------------------

#[derive(Debug)]
enum Bound {
    Values(BTreeSet<String>),
    /// Bounded by configuration: `rp_id`, `rollout`, `guardrail`, …
    Kind(String),
}

#[derive(Debug)]
struct Row {
    kind: String,
    labels: BTreeMap<String, Bound>,
}

/// Parses the table of `docs/metrics.md`.
fn table() -> BTreeMap<String, Row> {
    let text = std::fs::read_to_string(repo("docs/metrics.md")).expect("docs/metrics.md");
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `keyshift_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let mut labels = BTreeMap::new();
        for part in cells[3].split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (label, values) = part.split_once(':').expect("label: values");
            let values = values.trim();
            let bound = if let Some(kind) = values.strip_prefix('*') {
                Bound::Kind(kind.trim_end_matches('*').to_owned())
            } else {
                Bound::Values(
                    values
                        .split_whitespace()
                        .map(|v| v.trim_matches('`').to_owned())
                        .collect(),
                )
            };
            labels.insert(label.trim().to_owned(), bound);
        }
        let row = Row {
            kind: cells[2].to_owned(),
            labels,
        };
        assert!(rows.insert(name.clone(), row).is_none(), "{name} twice");
    }
    assert!(rows.len() > 30, "the table did not parse");
    rows
}

type Sample = (String, BTreeMap<String, String>);

/// The `# TYPE` lines and the samples of an exposition.
fn parse_scrape(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, _value) = line.rsplit_once(' ').expect("sample value");
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                // Our label values hold no quotes or commas.
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name, labels)
            }
        };
        samples.push((name.to_owned(), labels));
    }
    (types, samples)
}

/// What configuration-bound label kinds may take in this run.
struct Bounds {
    rps: BTreeSet<String>,
    rollouts: BTreeSet<String>,
    guardrails: BTreeSet<String>,
}

/// Every way `text` breaks the table; empty when it conforms.
fn conformance(text: &str, rows: &BTreeMap<String, Row>, bounds: &Bounds) -> Vec<String> {
    let platforms: BTreeSet<&str> = [
        "windows", "macos", "ios", "android", "linux", "chromeos", "other", "unknown", "all",
    ]
    .into();
    let mut problems = Vec::new();
    let (types, samples) = parse_scrape(text);
    for (name, kind) in &types {
        match rows.get(name) {
            None => problems.push(format!("{name}: not in docs/metrics.md")),
            Some(row) if &row.kind != kind => {
                problems.push(format!("{name}: a {kind}, documented as a {}", row.kind));
            }
            Some(_) => {}
        }
    }
    for (series, labels) in samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                series
                    .strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&series);
        let Some(row) = rows.get(family) else {
            continue;
        };
        let names: BTreeSet<&str> = labels
            .keys()
            .map(String::as_str)
            .filter(|l| *l != "le")
            .collect();
        let documented: BTreeSet<&str> = row.labels.keys().map(String::as_str).collect();
        if names != documented {
            problems.push(format!(
                "{series}: labels {names:?}, documented {documented:?}"
            ));
            continue;
        }
        for (label, value) in &labels {
            let ok = match row.labels.get(label) {
                None => label == "le",
                Some(Bound::Values(values)) => values.contains(value),
                Some(Bound::Kind(kind)) => match kind.as_str() {
                    "rp_id" => {
                        bounds.rps.contains(value)
                            || value == "other"
                            || (value == "all" && family.starts_with("keyshift_kpi_"))
                    }
                    "rollout" => bounds.rollouts.contains(value),
                    "guardrail" => bounds.guardrails.contains(value),
                    "partition" => value.parse::<u16>().is_ok(),
                    "platform" => platforms.contains(value.as_str()),
                    other => {
                        problems.push(format!("{series}: unknown bound *{other}*"));
                        true
                    }
                },
            };
            if !ok {
                problems.push(format!("{series}: {label}={value:?} is outside its bound"));
            }
        }
    }
    problems
}

/// Asserts that a scrape of a process whose relying parties are `rps` (and
/// without rollouts) follows `docs/metrics.md`: the Kafka tests call it on
/// the ingest and Kafka-mode collector processes.
pub(crate) fn assert_conforms(text: &str, rps: &[&str]) {
    let bounds = Bounds {
        rps: rps.iter().map(|r| (*r).to_owned()).collect(),
        rollouts: BTreeSet::new(),
        guardrails: BTreeSet::new(),
    };
    let problems = conformance(text, &table(), &bounds);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_conformance_check_can_fail() {
    let rows = table();
    let bounds = Bounds {
        rps: [RP.to_owned()].into(),
        rollouts: ["r".to_owned()].into(),
        guardrails: BTreeSet::new(),
    };
    let good = "# TYPE keyshift_rollout_percent gauge\nkeyshift_rollout_percent{rollout=\"r\"} 5\n";
    assert!(conformance(good, &rows, &bounds).is_empty());
    for (bad, why) in [
        (
            "# TYPE keyshift_made_up gauge\nkeyshift_made_up 1\n",
            "not in docs",
        ),
        (
            "# TYPE keyshift_rollout_percent counter\nkeyshift_rollout_percent{rollout=\"r\"} 1\n",
            "documented as a gauge",
        ),
        (
            "# TYPE keyshift_rollout_percent gauge\nkeyshift_rollout_percent{rollout=\"user-42\"} 1\n",
            "outside its bound",
        ),
        (
            "# TYPE keyshift_events_total counter\n\
             keyshift_events_total{event_type=\"auth.started\",method=\"passkey\",rp_id=\"login.example.com\",user=\"u1\"} 1\n",
            "labels",
        ),
        (
            "# TYPE keyshift_ceremony_errors_total counter\n\
             keyshift_ceremony_errors_total{ceremony=\"auth\",error=\"Oops\",method=\"passkey\",rp_id=\"login.example.com\"} 1\n",
            "outside its bound",
        ),
    ] {
        let problems = conformance(bad, &rows, &bounds);
        assert!(
            problems.iter().any(|p| p.contains(why)),
            "{bad}: {problems:?}"
        );
    }
}

// ---- a run -------------------------------------------------------------------

fn run_config(dir: &Path) -> keyshift::Config {
    let mut c = config(dir);
    c.auth.admin_tokens = vec![ADMIN.to_owned()];
    c.auth.rp_tokens = vec![RpToken {
        token: RP_TOKEN.to_owned(),
        rp_id: RP.to_owned(),
    }];
    c.ingest.max_rp_labels = CAP;
    c.kpi_gauges.interval = Duration::from_secs(1);
    c.kpi_gauges.max_rp_labels = CAP;
    c.rollout.rollouts = vec![
        serde_json::from_value(json!({
            "id": "pk-default",
            "rp_id": RP,
            "stage": "passkey_default",
            "evaluation_interval": "1s",
            "steps": [{"percent": 5}, {"percent": 100}],
            "guardrails": [{"metric": "passkey_error_rate", "kind": "absolute",
                            "threshold": 0.5, "severity": "rollback", "min_events": 1}]
        }))
        .expect("rollout"),
    ];
    c
}

fn bounds() -> Bounds {
    Bounds {
        rps: std::iter::once(RP)
            .chain(EXTRA_RPS)
            .map(str::to_owned)
            .collect(),
        rollouts: ["pk-default".to_owned()].into(),
        guardrails: ["passkey_error_rate:absolute".to_owned()].into(),
    }
}

/// Posts NDJSON lines with `token`, in requests of at most 5,000.
pub(crate) async fn post_lines(s: &Server, token: &str, lines: &[String]) {
    for chunk in lines.chunks(5000) {
        let resp = s
            .client
            .post(format!("{}/v1/events", s.base))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(chunk.join("\n"))
            .send()
            .await
            .expect("post");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, 200, "{body}");
    }
}

/// Two days of a 3,000-user population of [`RP`], one event of each other
/// relying party, an invalid line, a SecurityError.
async fn feed(s: &Server) {
    let mut lines = Vec::new();
    let mut population = Population::new(7, RP, 3000);
    let today = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    for back in [2, 1] {
        population.day(today - chrono::Duration::days(back), &mut lines);
    }
    post_lines(s, RP_TOKEN, &lines).await;
    let mut other = Vec::new();
    for (i, rp) in EXTRA_RPS.iter().enumerate() {
        let mut e = crate::common::event(&format!("x-{i}"), "u", rp);
        e["event_type"] = json!("auth.failed");
        e["data"] = json!({"method": "passkey", "error": {"name": "SecurityError"}});
        other.push(e.to_string());
    }
    other.push("{not json".to_owned());
    post_lines(s, ADMIN, &other).await;
}

/// Polls `/metrics` until every series in `wanted` is present.
async fn wait_for_series(s: &Server, wanted: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = s.scrape().await;
        let missing: Vec<&&str> = wanted.iter().filter(|w| !text.contains(**w)).collect();
        if missing.is_empty() {
            return text;
        }
        assert!(Instant::now() < deadline, "never appeared: {missing:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts keyshift, feeds it, exercises the read API and waits until the
/// KPI gauges and a rollout evaluation are on `/metrics`.
pub(crate) async fn started_and_fed(dir: &Path) -> (Server, String) {
    let server = Server::start(run_config(dir)).await;
    feed(&server).await;
    let resp = server
        .client
        .get(format!("{}/v1/kpis?kpi=coverage", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("kpis");
    assert_eq!(resp.status(), 200);
    server.sql("SELECT count(*) AS n FROM auth_events").await;
    let text = wait_for_series(
        &server,
        &[
            "keyshift_kpi_ratio{kpi=\"coverage\",platform=\"all\",rp_id=\"login.example.com\"}",
            "keyshift_kpi_per_thousand{",
            "keyshift_rollout_last_evaluation_timestamp_seconds{rollout=\"pk-default\"}",
        ],
    )
    .await;
    (server, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_documented_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, text) = started_and_fed(dir.path()).await;
    let problems = conformance(&text, &table(), &bounds());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Beyond the cap, relying parties are `other`, on the counters and gauges.
    let rps: BTreeSet<String> = parse_scrape(&text)
        .1
        .into_iter()
        .filter(|(n, _)| n == "keyshift_events_total")
        .filter_map(|(_, l)| l.get("rp_id").cloned())
        .collect();
    assert_eq!(rps.len(), 1 + CAP + 1, "{rps:?}");
    assert!(rps.contains("other") && rps.contains(RP), "{rps:?}");
    for series in [
        "keyshift_ceremony_errors_total{ceremony=\"auth\",error=\"SecurityError\",method=\"passkey\",rp_id=\"other\"} 2",
        "keyshift_ingest_events_total{outcome=\"rejected\",source=\"http\"} 1",
        "keyshift_rollout_step{rollout=\"pk-default\"}",
        "keyshift_rollout_evaluation_interval_seconds{rollout=\"pk-default\"} 1",
        "keyshift_rollout_last_decision_info{action=",
        "keyshift_kpi_ratio{kpi=\"passkey_signin_success\",platform=\"ios\",rp_id=\"all\"}",
        "keyshift_recoveries_total{",
        "keyshift_fallbacks_total{",
        "keyshift_ingest_event_age_seconds_bucket{",
    ] {
        assert!(text.contains(series), "missing {series}");
    }
    // The KPI gauge is the KPI module's number, not a re-implementation.
    let report: Value = server
        .client
        .get(format!(
            "{}/v1/kpis?kpi=coverage&rp_id={RP}&from={}&to={}&interval=week",
            server.base,
            (chrono::Utc::now() - chrono::Duration::days(7))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("kpis")
        .json()
        .await
        .expect("json");
    let api = report["kpis"][0]["totals"]
        .as_array()
        .and_then(|t| t.iter().find(|p| p.get("group").is_none()))
        .and_then(|p| p["value"].as_f64())
        .unwrap_or_else(|| panic!("coverage total: {report}"));
    let gauge = crate::common::sample(
        &text,
        "keyshift_kpi_ratio{kpi=\"coverage\",platform=\"all\",rp_id=\"login.example.com\"}",
    )
    .expect("gauge");
    assert!((api - gauge).abs() < 0.02, "api {api} vs gauge {gauge}");

    if let Some(promtool) = tool("promtool") {
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    server.stop().await;
}
