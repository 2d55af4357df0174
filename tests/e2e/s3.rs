//! Tables on a real S3 API server (S3Proxy, started by scripts/s3.sh).
//!
//! The endpoint comes from `KEYSHIFT_TEST_S3` (scripts/test.sh starts the
//! server and sets it). Without it, or in a build without the `s3` feature,
//! the tests are skipped loudly, except under CI, where they fail.

use std::collections::HashMap;

use crate::common::{Server, config, event};

/// The bucket scripts/s3.sh creates, and its fixed test credentials.
const BUCKET: &str = "keyshift";
const ACCESS_KEY: &str = "keyshift";
const SECRET_KEY: &str = "keyshift-test-secret";

/// A fresh prefix in the test bucket: one test's table root.
pub(crate) struct S3Root {
    endpoint: String,
    /// `s3://keyshift/<prefix>`.
    pub uri: String,
}

/// `None` when the object-storage tests are skipped.
pub(crate) fn s3_root(prefix: &str) -> Option<S3Root> {
    let endpoint = match std::env::var("KEYSHIFT_TEST_S3") {
        Ok(e) if !e.is_empty() && cfg!(feature = "s3") => e,
        _ if std::env::var_os("CI").is_some() => panic!(
            "in CI the object-storage tests must run: build with --features s3 and set \
             KEYSHIFT_TEST_S3 (scripts/test.sh does both)"
        ),
        _ => {
            eprintln!(
                "\n*** SKIPPED: object-storage test — needs a build with --features s3 and \
                 KEYSHIFT_TEST_S3 (scripts/s3.sh start; KEYSHIFT_TEST_S3=http://127.0.0.1:9000). ***\n"
            );
            return None;
        }
    };
    Some(S3Root {
        endpoint,
        uri: format!("s3://{BUCKET}/{}", crate::kafka::unique(prefix)),
    })
}

impl S3Root {
    /// `store.storage_options` for a process started in the test.
    pub(crate) fn options(&self) -> HashMap<String, String> {
        HashMap::from([
            ("aws_endpoint".to_owned(), self.endpoint.clone()),
            ("aws_access_key_id".to_owned(), ACCESS_KEY.to_owned()),
            ("aws_secret_access_key".to_owned(), SECRET_KEY.to_owned()),
            ("aws_region".to_owned(), "us-east-1".to_owned()),
            ("aws_allow_http".to_owned(), "true".to_owned()),
        ])
    }

    /// The environment of a `keyshift` child writing here: the root in
    /// keyshift's config, the store in the variables delta-rs reads (what an
    /// operator would set).
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KEYSHIFT__STORE__URI", self.uri.clone()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    fn config(&self, dir: &std::path::Path) -> keyshift::config::Config {
        let mut c = config(dir);
        c.store.uri = Some(self.uri.clone());
        c.store.storage_options = self.options();
        c
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_writes_to_s3_and_keeps_every_acknowledged_event_across_a_restart() {
    let Some(s3) = s3_root("collector") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(s3.config(dir.path())).await;
    for batch in 0..10 {
        let lines: Vec<String> = (0..100)
            .map(|i| {
                event(
                    &format!("e-{batch}-{i}"),
                    &format!("u{i}"),
                    "login.example.com",
                )
                .to_string()
            })
            .collect();
        let (status, body) = server.post_ndjson(&lines).await;
        assert_eq!(status, 200, "{body}");
    }
    // A re-sent batch is deduplicated on object storage too.
    let again: Vec<String> = (0..100)
        .map(|i| event(&format!("e-0-{i}"), &format!("u{i}"), "login.example.com").to_string())
        .collect();
    let (status, body) = server.post_ndjson(&again).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server.scalar("SELECT count(*) FROM auth_events").await,
        1000
    );
    server.stop().await;

    assert!(
        !dir.path().join("tables").exists(),
        "the tables must be on S3, not under the data dir"
    );
    let server = Server::start(s3.config(dir.path())).await;
    assert_eq!(
        server
            .scalar("SELECT count(DISTINCT event_id) FROM auth_events")
            .await,
        1000
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_refused_at_start_with_the_reason() {
    let Some(s3) = s3_root("nobucket") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = s3.config(dir.path());
    c.store.uri = Some("s3://no-such-bucket/keyshift".to_owned());
    let started = keyshift::start_with(
        c,
        tokio_util::sync::CancellationToken::new(),
        keyshift::StartOptions::default(),
    )
    .await;
    let Err(err) = started else {
        panic!("a missing bucket must stop the start");
    };
    let text = format!("{err:#}");
    assert!(
        text.contains("s3://no-such-bucket/keyshift") && text.contains("conditional writes"),
        "{text}"
    );
}
