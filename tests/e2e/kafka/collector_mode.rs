//! The collector in Kafka mode feeding a separate ingest process.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mode_collector_feeds_ingest_with_the_same_verdicts() {
    let Some(sc) = Scenario::new("ks-collector").await else {
        return;
    };
    let cdir = tempfile::tempdir().expect("tempdir");
    let mut cfg = crate::common::config(cdir.path());
    cfg.kafka.brokers = Some(sc.brokers.clone());
    cfg.kafka.topic = sc.topic.clone();
    cfg.auth.admin_tokens = vec!["admin-token-0123456789".to_owned()];
    cfg.auth.rp_tokens = vec![keyshift_http::RpToken {
        token: "rp-token-0123456789abc".to_owned(),
        rp_id: "login.example.com".to_owned(),
    }];
    let collector = keyshift::start_collector(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .expect("collector starts");
    let url = format!("http://{}/v1/events", collector.addr);
    let client = reqwest::Client::new();
    let post = |token: &'static str, lines: Vec<String>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/x-ndjson")
                .body(lines.join("\n"))
                .send()
                .await
                .expect("post");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };
    let run = &sc.topic;
    // The RP token: 500 of its own events, 2 re-sends, 3 invalid, 4 for
    // another rp_id (refused by scope).
    let mut lines: Vec<String> = (0..500)
        .map(|i| {
            event(
                &format!("{run}-rp-{i}"),
                &format!("u{i}"),
                "login.example.com",
            )
            .to_string()
        })
        .collect();
    lines.push(lines[0].clone());
    lines.push(lines[1].clone());
    lines.push("{not json".to_owned());
    lines.push(r#"{"schema_version":1}"#.to_owned());
    let mut future = event(&format!("{run}-future"), "u", "login.example.com");
    future["occurred_at"] = Value::from("2999-01-01T00:00:00Z");
    lines.push(future.to_string());
    for i in 0..4 {
        lines.push(event(&format!("{run}-other-{i}"), "u", "other.example.com").to_string());
    }
    let (status, body) = post("rp-token-0123456789abc", lines).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 502, "{body}");
    assert_eq!(body["forwarded"], 509, "{body}");
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(7), "{body}");
    // The admin token may write any rp_id.
    let admin_lines: Vec<String> = (0..300)
        .map(|i| {
            event(
                &format!("{run}-adm-{i}"),
                &format!("u{i}"),
                "other.example.com",
            )
            .to_string()
        })
        .collect();
    let (status, body) = post("admin-token-0123456789", admin_lines).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 300, "{body}");
    // A body that is not JSON at all: 400, and still recorded (one
    // rejected item), as the embedded collector does.
    let resp = client
        .post(&url)
        .bearer_auth("rp-token-0123456789abc")
        .header("content-type", "application/json")
        .body(r#"{"events": [ oops"#)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 400);
    // No token: 401, nothing produced.
    let resp = client.post(&url).body("{}").send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 401);
    let text = reqwest::get(format!("http://{}/metrics", collector.addr))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(text.contains("keyshift_kafka_produce_seconds_count"));
    crate::prometheus::assert_conforms(&text, &["login.example.com", "other.example.com"]);
    collector.stop().await.expect("collector stops cleanly");

    // Ingest stores what the embedded collector would have: 800 distinct
    // events; the 7 refusals, scope ones included, and the refused body in
    // rejected_events.
    let ingest = sc.ingest();
    let c = sc.wait_for(800, 8).await;
    ingest.stop();
    assert_eq!(c, (800, 800, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mode_collector_answers_503_when_the_broker_does_not_ack() {
    // No broker needed: nothing listens on this port.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = crate::common::config(dir.path());
    cfg.kafka.brokers = Some(format!("127.0.0.1:{}", free_port()));
    cfg.kafka.produce_timeout = Duration::from_secs(2);
    let collector = keyshift::start_collector(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .expect("collector starts");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/events", collector.addr))
        .json(&event("e-1", "u", "login.example.com"))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("retry with the same event ids")),
        "{body}"
    );
    collector.stop().await.expect("collector stops cleanly");
}
