//! Failed commits answer by what a retry can do: conflicts and I/O are 503
//! "retry with the same event ids", fatal store errors and bugs are a 500
//! with an error id and no advice to retry. Faults are injected into the
//! real writer (`StartOptions::writer_faults`); the Kafka side is in
//! `kafka_errors.rs`.

use keyshift_store::AUTH_EVENTS;
use keyshift_store::writer::{Fault, Faults};
use serde_json::Value;

use crate::common::{Server, config, event, sample};

fn lines(round: usize) -> Vec<String> {
    (0..3)
        .map(|i| {
            event(
                &format!("r{round}-e{i}"),
                &format!("user-{i}"),
                "login.example.com",
            )
            .to_string()
        })
        .collect()
}

/// A server whose writer fails when the returned `Faults` say so.
async fn start_with_faults(dir: &std::path::Path) -> (Server, Faults) {
    let faults = Faults::default();
    (
        Server::start_with_faults(config(dir), &faults).await,
        faults,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_failures_answer_by_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, faults) = start_with_faults(dir.path()).await;
    let cases = [
        (Fault::Conflict, 503, "conflict"),
        (Fault::Transient, 503, "transient"),
        (Fault::Fatal, 500, "fatal"),
        (Fault::Bug, 500, "bug"),
    ];
    for (round, (fault, status, kind)) in cases.into_iter().enumerate() {
        faults.fail_next(fault, AUTH_EVENTS, 1);
        let (got, body) = server.post_ndjson(&lines(round)).await;
        assert_eq!(got, status, "{kind}: {body}");
        let error = body["error"].as_str().expect("error text");
        if status == 503 {
            assert!(error.contains("retry with the same event ids"), "{error}");
            assert!(body.get("error_id").is_none(), "{body}");
        } else {
            let id = body["error_id"].as_str().expect("a 500 names its error id");
            assert_eq!(id.len(), 16, "{body}");
            assert!(error.contains(id), "{error}");
            assert!(!error.contains("retry with the same"), "{error}");
        }
        // Nothing was stored and the dedup reservations were released: the
        // same events are accepted once the fault is gone.
        let (got, body) = server.post_ndjson(&lines(round)).await;
        assert_eq!(got, 200, "{kind} re-post: {body}");
        assert_eq!(body["accepted"], 3, "{kind} re-post: {body}");
    }
    assert_eq!(faults.hits(), 4);
    assert_eq!(
        server
            .scalar("SELECT count(DISTINCT event_id) FROM auth_events")
            .await,
        12
    );
    assert_eq!(server.scalar("SELECT count(*) FROM auth_events").await, 12);

    let text = server.scrape().await;
    let outcome = |o: &str| {
        sample(
            &text,
            &format!("keyshift_collector_requests_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(outcome("unavailable"), Some(2.0));
    assert_eq!(outcome("bug"), Some(1.0));
    assert_eq!(outcome("error"), Some(1.0));
    assert_eq!(outcome("ok"), Some(4.0));
    for (_, _, kind) in cases {
        let series =
            format!("keyshift_store_commit_errors_total{{kind=\"{kind}\",table=\"auth_events\"}}");
        assert_eq!(sample(&text, &series), Some(1.0), "{series}");
    }
    crate::prometheus::assert_conforms(&text, &["login.example.com"]);
    // Failed requests do not stop the server.
    server.stop().await;
}

/// A bug in one request of a group fails that request only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_fails_only_its_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, faults) = start_with_faults(dir.path()).await;
    faults.fail_rows_with(Fault::Bug, AUTH_EVENTS, "r1-e1");
    let posts: Vec<_> = (0..4).map(lines).collect();
    let answers = futures::future::join_all(posts.iter().map(|l| server.post_ndjson(l))).await;
    for (round, (status, body)) in answers.iter().enumerate() {
        let want = if round == 1 { 500 } else { 200 };
        assert_eq!(*status, want, "request {round}: {body}");
    }
    let (_, poisoned): &(u16, Value) = &answers[1];
    assert!(poisoned["error_id"].is_string(), "{poisoned}");
    assert_eq!(server.scalar("SELECT count(*) FROM auth_events").await, 9);
    server.stop().await;
}
