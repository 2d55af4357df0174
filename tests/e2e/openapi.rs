//! The OpenAPI document against the server: every route the code registers
//! is documented, and every documented route answers (it is not the
//! router's "not found" or "method not allowed").

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::common::Server;
use crate::rollout::{ADMIN, rollout_config};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `(METHOD, path)` of every `.route("…", …)` in the crates' sources.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = BTreeSet::new();
    let mut stack: Vec<_> = [
        "src",
        "http/src",
        "ingest/src",
        "metrics/src",
        "rollout/src",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for (i, _) in text.match_indices(".route(\"") {
                let rest = &text[i + 8..];
                let Some(end) = rest.find('"') else { continue };
                let route = &rest[..end];
                // The handlers of this route: up to the next route or the
                // end of the builder chain.
                let tail = &rest[end..];
                let stop = [".route(", ".with_state", ".merge", ";"]
                    .iter()
                    .filter_map(|s| tail.find(s))
                    .min()
                    .unwrap_or(tail.len());
                let chain = &tail[..stop];
                for m in METHODS {
                    let called = chain
                        .match_indices(&format!("{m}("))
                        .any(|(j, _)| j == 0 || !chain.as_bytes()[j - 1].is_ascii_alphanumeric());
                    if called {
                        out.insert((m.to_uppercase(), route.to_owned()));
                    }
                }
            }
        }
    }
    out
}

fn routes_in_document(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_is_documented_and_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(rollout_config(dir.path())).await;
    let served: Value = server
        .client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(served["openapi"], "3.1.0");
    let file: Value = serde_json::from_str(keyshift_metrics::openapi::DOCUMENT).expect("document");
    assert_eq!(served, file, "the server serves the checked-in document");

    let documented = routes_in_document(&served);
    let in_code = routes_in_source();
    assert!(
        in_code.len() >= 10,
        "the source scan found the routes: {in_code:?}"
    );
    let undocumented: Vec<_> = in_code.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(&in_code).collect();
    assert!(
        unknown.is_empty(),
        "documented routes the code lacks: {unknown:?}"
    );

    // Each documented route answers from its handler, not from the router's
    // fallbacks (404 "not found" / 405).
    for (method, path) in &documented {
        let url = format!(
            "{}{}",
            server.base,
            path.replace("{id}", "pk-default").replace("{op}", "pause")
        );
        let req = match method.as_str() {
            "GET" => server.client.get(&url),
            "POST" => server.client.post(&url).json(&serde_json::json!({})),
            other => panic!("no {other} routes expected"),
        };
        let resp = req.bearer_auth(ADMIN).send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("body");
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404 && body.contains("\"not found\"")),
            "{method} {path} is not routed: {body}"
        );
    }
    server.stop().await;
}
