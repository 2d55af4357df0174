//! The rollout API over HTTP, against a real server with a configured
//! rollout (the controller's decisions themselves are covered by
//! rollout/tests/scenarios.rs with a controllable clock).

use keyshift_http::RpToken;
use serde_json::{Value, json};

use crate::common::{Server, config};

pub(crate) const ADMIN: &str = "admin-token-0123456789";
const RP_TOKEN: &str = "rp-token-0123456789abcd";
const OTHER_RP: &str = "rp-token-other-98765432";

pub(crate) fn rollout_config(dir: &std::path::Path) -> keyshift::Config {
    let mut c = config(dir);
    c.auth.admin_tokens = vec![ADMIN.to_owned()];
    c.auth.rp_tokens = vec![
        RpToken {
            token: RP_TOKEN.to_owned(),
            rp_id: "login.example.com".to_owned(),
        },
        RpToken {
            token: OTHER_RP.to_owned(),
            rp_id: "other.example.com".to_owned(),
        },
    ];
    c.rollout.rollouts = vec![
        serde_json::from_value(json!({
            "id": "pk-default",
            "rp_id": "login.example.com",
            "stage": "passkey_default",
            "group_id": "AB12A",
            "steps": [{"percent": 50}, {"percent": 100}]
        }))
        .expect("rollout"),
    ];
    c
}

async fn get(s: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = s.client.get(format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("get");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(s: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = s
        .client
        .post(format!("{}{path}", s.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn assignment_listing_and_operations_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(rollout_config(dir.path())).await;

    // Unleash's specification vectors at 50 %: user 122 in, 155 out.
    let (status, a) = get(&s, "/v1/assign?rollout=pk-default&user=122", Some(RP_TOKEN)).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["enabled"], true);
    assert_eq!(a["variant"], "treatment");
    assert_eq!(a["percent"], 50.0);
    assert_eq!(a["rollout"], "pk-default");
    assert!(a["bucket"].as_u64().expect("bucket") < 5000);
    let (_, a) = get(&s, "/v1/assign?rollout=pk-default&user=155", Some(RP_TOKEN)).await;
    assert_eq!(
        (a["enabled"].clone(), a["variant"].clone()),
        (json!(false), json!("control"))
    );

    // Batch form.
    let users: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
    let (status, b) = post(
        &s,
        "/v1/assign",
        RP_TOKEN,
        json!({"rollout": "pk-default", "users": users}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let list = b["assignments"].as_array().expect("assignments");
    assert_eq!(list.len(), 1000);
    let exposed = list.iter().filter(|a| a["enabled"] == true).count();
    assert!((400..600).contains(&exposed), "{exposed} of 1000 at 50%");

    // Scoping: another RP's token, unknown rollouts, no token.
    let (status, _) = get(&s, "/v1/assign?rollout=pk-default&user=1", Some(OTHER_RP)).await;
    assert_eq!(status, 403);
    let (status, e) = get(&s, "/v1/assign?rollout=nope&user=1", Some(ADMIN)).await;
    assert_eq!(status, 404);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("nope")),
        "{e}"
    );
    let (status, _) = get(&s, "/v1/assign?rollout=pk-default&user=1", None).await;
    assert_eq!(status, 401);

    // Listing and details need an admin token.
    let (status, _) = get(&s, "/v1/rollouts", Some(RP_TOKEN)).await;
    assert_eq!(status, 403);
    let (status, l) = get(&s, "/v1/rollouts", Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert_eq!(l["rollouts"][0]["id"], "pk-default");
    let (_, r) = get(&s, "/v1/rollouts/pk-default", Some(ADMIN)).await;
    assert_eq!(r["state"]["phase"], "running");
    assert_eq!(r["last_decision"]["action"], "start");

    // Operations: admin only, with a reason.
    let (status, _) = post(
        &s,
        "/v1/rollouts/pk-default/pause",
        RP_TOKEN,
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(&s, "/v1/rollouts/pk-default/pause", ADMIN, json!({})).await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &s,
        "/v1/rollouts/pk-default/explode",
        ADMIN,
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, d) = post(
        &s,
        "/v1/rollouts/pk-default/promote",
        ADMIN,
        json!({"reason": "all good"}),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["decision"]["to_percent"], 100.0);
    assert_eq!(d["decision"]["from_percent"], 50.0);
    let (_, a) = get(&s, "/v1/assign?rollout=pk-default&user=155", Some(RP_TOKEN)).await;
    assert_eq!(a["enabled"], true, "at 100% everyone is exposed");

    let (_, log) = get(&s, "/v1/rollouts/pk-default/decisions", Some(ADMIN)).await;
    let decisions = log["decisions"].as_array().expect("decisions");
    // The running controller evaluates on its own too (a `no_traffic`
    // hold here: nobody sends events); the operator's promote is last.
    let actions: Vec<&str> = decisions
        .iter()
        .filter_map(|d| d["action"].as_str())
        .filter(|a| *a != "hold")
        .collect();
    assert_eq!(actions, vec!["start", "promote"]);
    let last = decisions.last().expect("a decision");
    assert_eq!(
        (last["actor"].clone(), last["reason"].clone()),
        (json!("admin"), json!("all good"))
    );

    // The decision log is a table like the others.
    let rows = s
        .sql("SELECT action, actor FROM rollout_decisions ORDER BY seq")
        .await;
    assert_eq!(rows.len(), decisions.len());

    let text = s.scrape().await;
    assert!(
        text.contains("keyshift_rollout_percent{rollout=\"pk-default\"} 100"),
        "{text}"
    );
    assert!(
        text.contains(
            "keyshift_rollout_decisions_total{action=\"promote\",rollout=\"pk-default\"} 1"
        )
    );
    s.stop().await;
}

#[tokio::test]
async fn one_controller_per_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Server::start(rollout_config(dir.path())).await;
    let second = keyshift::start(
        rollout_config(dir.path()),
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let err = second.expect_err("the data dir is locked");
    assert!(
        err.to_string().contains("held by another process"),
        "{err:#}"
    );
    first.stop().await;
    // Released on shutdown.
    let again = Server::start(rollout_config(dir.path())).await;
    again.stop().await;
}
