//! `keyshift report` over real Delta tables: the hand-worked golden files,
//! and polars agreeing with the KPI API wherever both compute the same
//! figure — on the golden dataset and on a simulated relying party.

use std::collections::BTreeMap;
use std::path::Path;

use keyshift::config::Config;
use keyshift::report_cmd::{ReportArgs, run_report};
use keyshift::simulate::{ScenarioArgs, SimulateArgs, run_simulate};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{Server, config};

const EVENTS: &str = include_str!("../golden/report-events.ndjson");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/report");
const TABLES: [&str; 8] = [
    "cohorts.csv",
    "cohort_adoption.csv",
    "platforms.csv",
    "browsers.csv",
    "credential_mix.csv",
    "at_risk.csv",
    "recovery.csv",
    "support.csv",
];
const CHARTS: [&str; 5] = [
    "cohort_adoption.png",
    "credential_mix.png",
    "at_risk.png",
    "recovery.png",
    "support.png",
];

async fn load(server: &Server, text: &str) {
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for chunk in lines.chunks(1000) {
        let (status, body) = server.post_ndjson(chunk).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], chunk.len(), "{body}");
    }
}

async fn report(config: &Config, from: &str, to: &str, out: &Path) -> String {
    let args = ReportArgs {
        rp_id: None,
        from: Some(from.to_owned()),
        to: Some(to.to_owned()),
        out: out.to_path_buf(),
    };
    run_report(config, &args).await.expect("report")
}

/// A CSV file of the report as rows of column → value.
fn csv(dir: &Path, name: &str) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join(name)).expect("csv");
    assert!(!text.contains('"'), "{name}: no quoting expected here");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| ((*h).to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

fn int(row: &BTreeMap<String, String>, name: &str) -> i64 {
    row[name]
        .parse()
        .unwrap_or_else(|_| panic!("{name} in {row:?}"))
}

#[tokio::test]
async fn the_report_matches_the_hand_worked_golden_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir.path().join("data"));
    let server = Server::start(cfg.clone()).await;
    load(&server, EVENTS).await;
    let out = dir.path().join("report");
    let said = report(&cfg, "2026-10-05", "2026-10-26", &out).await;
    assert!(
        said.contains("57 events")
            && said.contains("3 cohorts, 10 users first offered, 7 enrolled"),
        "{said}"
    );
    for name in TABLES {
        let want = std::fs::read_to_string(Path::new(GOLDEN).join(name)).expect("golden");
        let got = std::fs::read_to_string(out.join(name)).expect("written");
        assert_eq!(got, want, "{name} differs from tests/golden/report/{name}");
    }
    for name in CHARTS {
        let png = std::fs::read(out.join(name)).expect("chart");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
        // IHDR: width and height, big-endian, at bytes 16..24.
        assert_eq!(
            &png[16..24],
            &[0, 0, 3, 192, 0, 0, 2, 8],
            "{name} is 960×520"
        );
    }
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    for line in [
        "- **10** users were first offered a passkey in the range, in 3 weekly cohorts; **7** of them (70.0 %) have one. Median time from first offer to enrolment: **3.0 h**.",
        "- 1 user already held a passkey when first offered (in no cohort).",
        "- Passkeys created in the range: 8, of which 4 synced (50.0 %).",
        "| 2026-10-05 | 6 | 33.3 % | 66.7 % | 83.3 % |",
        "![Cumulative adoption](cohort_adoption.png)",
    ] {
        assert!(md.contains(line), "report.md lacks {line:?}:\n{md}");
    }
    assert!(md.contains("**4** of 8 holders seen (50.0 %)"), "{md}");
    // The figures the KPI API also computes agree on this dataset too.
    let compared = agree(
        &server,
        &out,
        "2026-10-05T00:00:00Z",
        "2026-10-26T00:00:00Z",
    )
    .await;
    assert!(compared >= 20, "{compared} figures compared");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polars_agrees_with_the_kpi_api_on_a_simulated_relying_party() {
    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.ndjson");
    let sim = SimulateArgs {
        scenario: ScenarioArgs {
            scenario: "healthy".to_owned(),
            seed: None,
            users: Some(1500),
            days: Some(16),
        },
        to: file.to_str().expect("path").to_owned(),
        token: None,
        assign_from: None,
        percent: Some(50.0),
        speed: 0.0,
        start: Some("2026-10-05T00:00:00Z".to_owned()),
    };
    run_simulate(&sim, CancellationToken::new())
        .await
        .expect("simulate");
    let cfg = config(&dir.path().join("data"));
    let server = Server::start(cfg.clone()).await;
    load(&server, &std::fs::read_to_string(&file).expect("events")).await;
    let out = dir.path().join("report");
    // A range that starts and ends mid-week: partial first and last weeks.
    let (from, to) = ("2026-10-07T00:00:00Z", "2026-10-20T12:00:00Z");
    report(&cfg, from, to, &out).await;
    let compared = agree(&server, &out, from, to).await;
    assert!(compared >= 40, "{compared} figures compared");
    // Not vacuous: the simulated weeks have every kind of figure.
    for name in ["cohorts.csv", "recovery.csv", "support.csv", "at_risk.csv"] {
        assert!(!csv(&out, name).is_empty(), "{name} is empty");
    }
    server.stop().await;
}

/// `(date of t, group, key) → (numerator, denominator)` of a KPI's points.
type Points = BTreeMap<(String, String, String), (i64, i64)>;

async fn kpi(server: &Server, name: &str, extra: &str, from: &str, to: &str) -> (Points, Points) {
    let url = format!(
        "{}/v1/kpis?kpi={name}&from={}&to={}{extra}",
        server.base,
        from.replace('+', "%2B"),
        to.replace('+', "%2B"),
    );
    let resp = server.client.get(url).send().await.expect("kpis");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    let k = &body["kpis"][0];
    let points = |list: &Value| -> Points {
        list.as_array()
            .expect("points")
            .iter()
            .map(|p| {
                let s = |f: &str| {
                    p[f].as_str()
                        .map(|v| v.chars().take(10).collect())
                        .unwrap_or_default()
                };
                let full = |f: &str| p[f].as_str().unwrap_or_default().to_owned();
                (
                    (s("t"), full("group"), full("key")),
                    (
                        p["numerator"].as_i64().expect("numerator"),
                        p["denominator"].as_i64().expect("denominator"),
                    ),
                )
            })
            .collect()
    };
    (points(&k["series"]), points(&k["totals"]))
}

/// Compares the report in `out` with `/v1/kpis` over the same range;
/// returns how many figures were compared.
async fn agree(server: &Server, out: &Path, from: &str, to: &str) -> usize {
    let mut n = 0;
    let key = |t: &str, g: &str, k: &str| (t.to_owned(), g.to_owned(), k.to_owned());
    // Enrollment rate by platform and by browser (range totals).
    for (by, file) in [("platform", "platforms.csv"), ("browser", "browsers.csv")] {
        let (_, totals) = kpi(server, "enrollment_rate", &format!("&by={by}"), from, to).await;
        let mut want = Points::new();
        for r in csv(out, file) {
            if int(&r, "offered") > 0 {
                want.insert(
                    key("", &r[by], ""),
                    (int(&r, "enrolled"), int(&r, "offered")),
                );
            }
        }
        let got: Points = totals
            .into_iter()
            .filter(|((_, g, _), _)| !g.is_empty())
            .collect();
        assert_eq!(got, want, "enrollment_rate by {by}");
        n += want.len() * 2;
    }
    // Credential mix per week (a kind the week lacks is no KPI point).
    let (series, _) = kpi(server, "credential_mix", "&interval=week", from, to).await;
    let mut want = Points::new();
    for r in csv(out, "credential_mix.csv") {
        for kind in ["synced", "device_bound"] {
            if int(&r, kind) > 0 {
                want.insert(
                    key(&r["week"], "", kind),
                    (int(&r, kind), int(&r, "passkeys")),
                );
            }
        }
    }
    assert_eq!(series, want, "credential_mix per week");
    n += want.len() * 2;
    // At-risk holders per week (weeks without holders leave the report).
    let (series, totals) = kpi(server, "at_risk_holders", "&interval=week", from, to).await;
    let want: Points = csv(out, "at_risk.csv")
        .iter()
        .map(|r| {
            (
                key(&r["week"], "", ""),
                (int(r, "at_risk"), int(r, "holders")),
            )
        })
        .collect();
    let got: Points = series
        .into_iter()
        .filter(|(_, (_, den))| *den > 0)
        .collect();
    assert_eq!(got, want, "at_risk_holders per week");
    n += want.len() * 2;
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    let (num, den) = totals[&key("", "", "")];
    assert!(
        md.contains(&format!("**{num}** of {den} holders seen")),
        "at-risk total {num}/{den} not in report.md"
    );
    n += 2;
    // Recovery starts per 1,000 active users, per week and channel.
    let (series, _) = kpi(server, "recovery_per_1k_users", "&interval=week", from, to).await;
    let want: Points = csv(out, "recovery.csv")
        .iter()
        .filter(|r| int(r, "starts") > 0)
        .map(|r| {
            (
                key(&r["week"], "", &r["channel"]),
                (int(r, "starts"), int(r, "active_users")),
            )
        })
        .collect();
    assert_eq!(series, want, "recovery_per_1k_users per week");
    n += want.len() * 2;
    // Support contacts per 1,000 sign-ins, per week.
    let (series, _) = kpi(server, "support_per_1k_signins", "&interval=week", from, to).await;
    let want: Points = csv(out, "support.csv")
        .iter()
        .map(|r| {
            (
                key(&r["week"], "", ""),
                (int(r, "contacts"), int(r, "signins")),
            )
        })
        .collect();
    assert_eq!(series, want, "support_per_1k_signins per week");
    n + want.len() * 2
}
