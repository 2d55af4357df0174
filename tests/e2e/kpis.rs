//! The KPI API against the hand-computed golden dataset
//! (`tests/golden/`), its parameter rules, its scoping, the CLI and the
//! generated catalogue.

use keyshift::config::Config;
use keyshift_http::RpToken;
use serde_json::Value;

use crate::common::{Server, config, sample};

pub(crate) const EVENTS: &str = include_str!("../golden/kpi-events.ndjson");
pub(crate) const EXPECTED: &str = include_str!("../golden/kpi-expected.json");
pub(crate) const ADMIN: &str = "admin-token-0123456789";
const RP_TOKEN: &str = "rp-token-golden-0123456789";

pub(crate) fn secured(dir: &std::path::Path) -> Config {
    let mut c = config(dir);
    c.auth.admin_tokens = vec![ADMIN.to_owned()];
    c.auth.rp_tokens = vec![RpToken {
        token: RP_TOKEN.to_owned(),
        rp_id: "golden.example".to_owned(),
    }];
    c
}

async fn loaded(dir: &std::path::Path) -> Server {
    let server = Server::start(secured(dir)).await;
    let lines: Vec<String> = EVENTS.lines().map(str::to_owned).collect();
    store(&server, &lines).await;
    server
}

/// Posts `lines` and checks that every one was stored.
pub(crate) async fn store(server: &Server, lines: &[String]) {
    let (status, body) = server.post_ndjson(lines).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], lines.len(), "{body}");
}

pub(crate) async fn get(server: &Server, path: &str, token: &str) -> (u16, Value) {
    let resp = server
        .client
        .get(format!("{}{path}", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// `[t (date) | null, key | null, numerator, denominator]` of each point.
fn points(list: &Value) -> Vec<(Option<String>, Option<String>, f64, i64)> {
    let mut out: Vec<_> = list
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            let t = p["t"].as_str().map(|t| t[..10].to_owned());
            let key = p["key"].as_str().map(str::to_owned);
            let den = p["denominator"].as_i64().expect("denominator");
            let num = p["numerator"]
                .as_f64()
                .or_else(|| p["value"].as_f64())
                .expect("numerator or quantile");
            (t, key, num, den)
        })
        .collect();
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

fn expected(list: &Value) -> Vec<(Option<String>, Option<String>, f64, i64)> {
    let mut out: Vec<_> = list
        .as_array()
        .expect("expected points")
        .iter()
        .map(|p| {
            (
                p[0].as_str().map(str::to_owned),
                p[1].as_str().map(str::to_owned),
                p[2].as_f64().expect("num"),
                p[3].as_i64().expect("den"),
            )
        })
        .collect();
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

#[tokio::test]
async fn every_kpi_matches_its_hand_computed_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = loaded(dir.path()).await;
    let exp: Value = serde_json::from_str(EXPECTED).expect("expected json");
    let q = exp["query"].as_str().expect("query");
    let (status, report) = get(&server, &format!("/v1/kpis?{q}"), ADMIN).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["timezone"], "UTC");
    assert_eq!(
        report["complete"], true,
        "the collector commits before it answers"
    );
    let kpis = report["kpis"].as_array().expect("kpis");
    let want = exp["kpis"].as_object().expect("kpis");
    assert_eq!(
        kpis.len(),
        want.len(),
        "one result per KPI of the catalogue"
    );
    for k in kpis {
        let name = k["kpi"].as_str().expect("name");
        let w = &want[name];
        assert_eq!(
            points(&k["totals"]),
            expected(&w["totals"]),
            "{name} totals"
        );
        assert_eq!(
            points(&k["series"]),
            expected(&w["series"]),
            "{name} series"
        );
        // Every ratio's value is its numerator over its denominator.
        for p in k["totals"].as_array().into_iter().flatten() {
            let (num, den) = (p["numerator"].as_f64(), p["denominator"].as_f64());
            let scale = match k["unit"].as_str() {
                Some("per_thousand") => 1000.0,
                Some("ratio") => 1.0,
                _ => continue,
            };
            let v = p["value"]
                .as_f64()
                .expect("a value: every denominator here is > 0");
            let (num, den) = (num.expect("numerator"), den.expect("denominator"));
            assert!((v - scale * num / den).abs() < 1e-9, "{name}: {p}");
        }
    }

    // Over a longer range the report is made a chunk (a week from Monday,
    // half a week for the ceremonies) at a time: the days of the dataset
    // keep their values.
    let wide = q.replace("from=2026-11-02T00:00:00Z", "from=2026-10-20T00:00:00Z");
    let (status, report) = get(&server, &format!("/v1/kpis?{wide}"), ADMIN).await;
    assert_eq!(status, 200, "{report}");
    for k in report["kpis"].as_array().expect("kpis") {
        let name = k["kpi"].as_str().expect("name");
        let days: Vec<_> = points(&k["series"])
            .into_iter()
            .filter(|p| p.0.as_deref() >= Some("2026-11-02"))
            .collect();
        assert_eq!(
            days,
            expected(&want[name]["series"]),
            "{name} series, wide range"
        );
    }

    // The same numbers per platform, and over all platforms.
    let by = &exp["by_platform"];
    let (status, report) = get(
        &server,
        &format!("/v1/kpis?{}", by["query"].as_str().expect("query")),
        ADMIN,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    for k in report["kpis"].as_array().expect("kpis") {
        let name = k["kpi"].as_str().expect("name");
        let mut got: Vec<(Option<String>, i64, i64)> = k["totals"]
            .as_array()
            .expect("totals")
            .iter()
            .map(|p| {
                (
                    p["group"].as_str().map(str::to_owned),
                    p["numerator"].as_i64().expect("num"),
                    p["denominator"].as_i64().expect("den"),
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<(Option<String>, i64, i64)> = by["totals"][name]
            .as_array()
            .expect("want")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().map(str::to_owned),
                    p[1].as_i64().expect("num"),
                    p[2].as_i64().expect("den"),
                )
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "{name} by platform");
    }

    // The funnels.
    let (status, report) = get(&server, &format!("/v1/funnel?{q}"), ADMIN).await;
    assert_eq!(status, 200, "{report}");
    for f in report["funnels"].as_array().expect("funnels") {
        let name = f["funnel"].as_str().expect("name");
        let total = &f["totals"][0];
        let steps = |v: &Value| -> Vec<(String, i64)> {
            v.as_array()
                .expect("steps")
                .iter()
                .map(|s| {
                    (
                        s["step"].as_str().expect("step").to_owned(),
                        s["count"].as_i64().expect("count"),
                    )
                })
                .collect()
        };
        let want = &exp["funnel"]["totals"][name];
        let pairs = |v: &Value| -> Vec<(String, i64)> {
            v.as_array()
                .expect("pairs")
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().expect("s").to_owned(),
                        p[1].as_i64().expect("n"),
                    )
                })
                .collect()
        };
        assert_eq!(
            steps(&total["steps"]),
            pairs(&want["steps"]),
            "{name} steps"
        );
        assert_eq!(
            steps(&total["exits"]),
            pairs(&want["exits"]),
            "{name} exits"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn zero_denominators_bad_parameters_and_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = loaded(dir.path()).await;

    // A range with no events: every KPI is there, with no points — and a
    // day with enrollment offers but no sign-ins never shows a 0 or NaN.
    let (status, report) = get(
        &server,
        "/v1/kpis?rp_id=golden.example&from=2025-01-01T00:00:00Z&to=2025-01-02T00:00:00Z",
        ADMIN,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    for k in report["kpis"].as_array().expect("kpis") {
        assert!(k["series"].as_array().expect("series").is_empty(), "{k}");
    }
    let (_, report) = get(
        &server,
        "/v1/kpis?rp_id=golden.example&from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z\
         &kpi=recovery_per_1k_users&by=platform",
        ADMIN,
    )
    .await;
    // P8's recoveries (Linux, D2) have no active Linux user: the
    // denominator is 0 and the value null.
    let linux = report["kpis"][0]["series"]
        .as_array()
        .expect("series")
        .iter()
        .find(|p| p["group"] == "linux" && p["key"] == "sms")
        .cloned()
        .expect("linux sms point");
    assert_eq!(linux["denominator"], 0, "{linux}");
    assert_eq!(linux["numerator"], 3, "{linux}");
    assert!(linux["value"].is_null(), "{linux}");

    for (query, needle) in [
        ("kpi=nope", "valid: enrollment_rate"),
        ("by=os", "valid: platform"),
        ("interval=month", "valid: hour, day, week"),
        ("from=2026-11-02", "RFC 3339"),
        (
            "from=2026-11-03T00:00:00Z&to=2026-11-02T00:00:00Z",
            "is after",
        ),
        (
            "from=2020-01-01T00:00:00Z&to=2026-11-01T00:00:00Z&interval=hour",
            "limit of 10000",
        ),
    ] {
        let (status, body) = get(&server, &format!("/v1/kpis?{query}"), ADMIN).await;
        assert_eq!(status, 400, "{query}: {body}");
        let msg = body["error"].as_str().expect("error");
        assert!(msg.contains(needle), "{query}: {msg}");
    }
    // A wide breakdown over hours: refused by the point limit after the fact.
    let (status, body) = get(
        &server,
        "/v1/kpis?from=2026-10-01T00:00:00Z&to=2026-11-04T00:00:00Z&interval=hour&by=platform",
        ADMIN,
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // An RP token reads its own rp_id (also by default), nobody else's.
    let (status, report) = get(&server, "/v1/kpis?kpi=coverage", RP_TOKEN).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rp_id"], "golden.example");
    let (status, body) = get(&server, "/v1/kpis?rp_id=other.example", RP_TOKEN).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = get(&server, "/v1/funnel?rp_id=other.example", RP_TOKEN).await;
    assert_eq!(status, 403);
    let (status, _) = get(&server, "/v1/kpis", "not-a-token-at-all-0000").await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn the_cli_prints_the_same_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = loaded(dir.path()).await;
    server.stop().await;
    let mut cfg = config(dir.path());
    cfg.log.level = "warn".into();
    let args = keyshift::kpis_cmd::KpisArgs {
        rp_id: Some("golden.example".into()),
        from: Some("2026-11-02T00:00:00Z".into()),
        to: Some("2026-11-04T00:00:00Z".into()),
        kpi: vec!["passkey_signin_success,coverage".into()],
        ..Default::default()
    };
    let text = keyshift::kpis_cmd::run_kpis(&cfg, &args)
        .await
        .expect("kpis");
    assert!(text.contains("passkey_signin_success"), "{text}");
    assert!(text.contains("33 / 49"), "{text}");
    assert!(text.contains("27 / 48"), "{text}");
    let json = keyshift::kpis_cmd::run_kpis(
        &cfg,
        &keyshift::kpis_cmd::KpisArgs {
            json: true,
            funnel: true,
            ..args
        },
    )
    .await
    .expect("funnel json");
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["funnels"][0]["totals"][0]["steps"][0]["count"], 27);
}

/// `(memory, disk, miss)` result-cache lookups so far.
async fn lookups(server: &Server) -> (f64, f64, f64) {
    let text = server.scrape().await;
    let n = |o: &str| {
        sample(
            &text,
            &format!("keyshift_query_cache_lookups_total{{outcome=\"{o}\"}}"),
        )
        .unwrap_or(0.0)
    };
    (n("memory"), n("disk"), n("miss"))
}

/// `[numerator, denominator]` of a KPI's total.
pub(crate) fn total(report: &Value, kpi: &str) -> [i64; 2] {
    let t = report["kpis"]
        .as_array()
        .expect("kpis")
        .iter()
        .find(|k| k["kpi"] == kpi)
        .map(|k| k["totals"][0].clone())
        .expect("kpi");
    [&t["numerator"], &t["denominator"]].map(|v| v.as_i64().expect("count"))
}

#[tokio::test]
async fn a_repeated_report_comes_from_the_cache_and_a_late_event_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = loaded(dir.path()).await;
    let exp: Value = serde_json::from_str(EXPECTED).expect("expected json");
    let url = format!("/v1/kpis?{}", exp["query"].as_str().expect("query"));
    let (status, first) = get(&server, &url, ADMIN).await;
    assert_eq!(status, 200, "{first}");
    let (_, _, ran) = lookups(&server).await;
    assert!(ran > 0.0, "the first report runs its statements");

    let (_, again) = get(&server, &url, ADMIN).await;
    assert_eq!(
        again["kpis"], first["kpis"],
        "the cached report is the same"
    );
    let (memory, _, miss) = lookups(&server).await;
    assert_eq!(miss, ran, "nothing ran again");
    assert!(memory > 0.0, "the statements came from memory");

    // A late sign-in for the first (closed) day: the days it lands in are
    // computed again, and it is counted.
    let mut late = crate::common::event("g-late-1", "p-late", "golden.example");
    late["occurred_at"] = "2026-11-02T15:00:00Z".into();
    store(&server, &[late.to_string()]).await;
    let (_, after) = get(&server, &url, ADMIN).await;
    assert_eq!(total(&first, "passkey_usage"), [33, 60], "{first}");
    assert_eq!(total(&after, "passkey_usage"), [34, 61], "{after}");
    let (_, _, miss_after) = lookups(&server).await;
    assert!(miss_after > miss, "the late event's days ran again");

    // A passkey created before the range: only what reads all of history
    // runs again — the users table `u` (one part for the range's only
    // week, one for the totals) and the four KPIs over it (enrollment rate,
    // coverage, recovery per 1,000 users, at-risk holders) — and coverage
    // counts it.
    let mut enrolled = crate::common::event("g-late-2", "p2-0", "golden.example");
    enrolled["event_type"] = "enrollment.succeeded".into();
    enrolled["occurred_at"] = "2026-10-30T12:00:00Z".into();
    enrolled["data"] =
        serde_json::json!({"credential": {"backup_eligible": true, "backup_state": true}});
    store(&server, &[enrolled.to_string()]).await;
    let (_, held) = get(&server, &url, ADMIN).await;
    let [num, den] = total(&after, "coverage");
    assert_eq!(total(&held, "coverage"), [num + 1, den], "{held}");
    assert_eq!(total(&held, "passkey_usage"), [34, 61]);
    let (_, _, miss_held) = lookups(&server).await;
    assert_eq!(
        miss_held - miss_after,
        6.0,
        "the users table and the KPIs over it only"
    );
    let after = held;
    server.stop().await;

    // A restart: the report comes from the files of the cache, unchanged.
    let server = Server::start(secured(dir.path())).await;
    let (_, restarted) = get(&server, &url, ADMIN).await;
    assert_eq!(restarted["kpis"], after["kpis"]);
    let (_, disk, miss) = lookups(&server).await;
    assert_eq!(miss, 0.0, "nothing ran after the restart");
    assert!(disk > 0.0, "the statements' results came from disk");
    server.stop().await;
}

#[test]
fn docs_kpis_md_is_generated_from_the_catalogue() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/kpis.md"))
        .expect("docs/kpis.md");
    assert!(
        doc.trim_end() == keyshift_metrics::kpi::catalog_markdown().trim_end(),
        "docs/kpis.md is stale: run `cargo run -- kpis --catalog > docs/kpis.md`"
    );
}
