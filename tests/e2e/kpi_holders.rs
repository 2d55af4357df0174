//! At-risk holders and coverage on a small dataset of their own: each
//! condition of the at-risk definition pinned by a user who fails only it.

use serde_json::Value;

use crate::common::Server;
use crate::kpis::{ADMIN, get, secured, store, total};

/// At-risk holders, each condition pinned (the golden dataset has no
/// holder with two passkeys or with a recovery method): five users hold a
/// passkey created in October and sign in on 2026-11-02; only `r1` holds
/// exactly one, device-bound, with no recovery method seen.
#[tokio::test]
async fn at_risk_holders_need_one_device_bound_passkey_and_no_recovery_method() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(secured(dir.path())).await;
    let bound =
        serde_json::json!({"credential": {"backup_eligible": false, "backup_state": false}});
    let synced = serde_json::json!({"credential": {"backup_eligible": true, "backup_state": true}});
    let mut lines = Vec::new();
    let mut add = |user: &str, etype: &str, at: &str, data: &Value| {
        let mut e = crate::common::event(&format!("risk-{}", lines.len()), user, "golden.example");
        e["event_type"] = etype.into();
        e["occurred_at"] = at.into();
        e["data"] = data.clone();
        lines.push(e.to_string());
    };
    let (before, during) = ("2026-10-10T12:00:00Z", "2026-11-02T12:00:00Z");
    let passkey = serde_json::json!({"method": "passkey", "duration_ms": 2000});
    for (user, credentials) in [("r1", 1), ("r2", 2), ("r3", 1), ("r4", 1)] {
        for _ in 0..credentials {
            add(user, "enrollment.succeeded", before, &bound);
        }
    }
    add(
        "r3",
        "recovery.completed",
        before,
        &serde_json::json!({"channel": "email"}),
    );
    add(
        "r4",
        "auth.succeeded",
        before,
        &serde_json::json!({"method": "recovery_code"}),
    );
    add("r5", "enrollment.succeeded", before, &synced);
    for user in ["r1", "r2", "r3", "r4", "r5"] {
        add(user, "auth.succeeded", during, &passkey);
    }
    store(&server, &lines).await;
    let (status, report) = get(
        &server,
        "/v1/kpis?rp_id=golden.example&from=2026-11-02T00:00:00Z&to=2026-11-03T00:00:00Z\
         &kpi=at_risk_holders&kpi=coverage",
        ADMIN,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(total(&report, "at_risk_holders"), [1, 5], "{report}");
    assert_eq!(total(&report, "coverage"), [5, 5], "{report}");
    server.stop().await;
}
