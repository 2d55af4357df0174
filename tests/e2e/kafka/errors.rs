//! A batch that fails to commit: conflicts and I/O are re-read from the
//! table's position and end up stored exactly once; a bug or a fatal store
//! error stops the consumer with a clear error instead of re-reading the
//! same batch forever; reading positions on assignment is retried. Faults
//! are injected into the in-process writer.

use std::time::Duration;

use keyshift_store::AUTH_EVENTS;
use keyshift_store::writer::{Fault, Faults, REFRESH};

use super::*;
use crate::common::{Server, sample};

fn kafka_config(sc: &Scenario) -> keyshift::Config {
    let mut cfg = crate::common::config(sc.dir.path());
    cfg.kafka.brokers = Some(sc.brokers.clone());
    cfg.kafka.topic = sc.topic.clone();
    cfg.kafka.group_id = sc.group.clone();
    cfg
}

async fn start(sc: &Scenario, faults: &Faults) -> Server {
    Server::start_with_faults(kafka_config(sc), faults).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_io_errors_are_re_read_from_the_table() {
    let Some(sc) = Scenario::with_partitions("ks-retry", 1).await else {
        return;
    };
    let faults = Faults::default();
    // The store is away when the partition is assigned: the consumer waits
    // for it instead of stopping.
    faults.fail_next(Fault::Transient, REFRESH, 2);
    faults.fail_next(Fault::Conflict, AUTH_EVENTS, 1);
    faults.fail_next(Fault::Transient, AUTH_EVENTS, 1);
    let server = start(&sc, &faults).await;
    produce_valid(&sc.producer, &sc.topic, &sc.topic, 1_000).await;
    let c = wait_for(sc.dir.path(), 1_000, 0, Duration::from_secs(120)).await;
    assert_eq!((c.0, c.1), (1_000, 1_000), "stored exactly once");
    assert_eq!(faults.hits(), 4);
    let text = server.scrape().await;
    let errors = |kind: &str| {
        sample(
            &text,
            &format!("keyshift_kafka_batch_errors_total{{kind=\"{kind}\"}}"),
        )
    };
    assert_eq!(errors("conflict"), Some(1.0));
    assert_eq!(errors("transient"), Some(1.0));
    assert_eq!(errors("bug"), Some(0.0));
    assert_eq!(
        sample(&text, "keyshift_kafka_commit_conflicts_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "keyshift_kafka_position_retries_total{kind=\"transient\"}"
        ),
        Some(2.0)
    );
    server.stop().await;
}

/// Stops within the deadline with an error naming `kind` and an error id;
/// the injected fault was hit once (no re-read loop); a restart without the
/// fault stores every event exactly once.
async fn stops_on(fault: Fault, kind: &str) {
    let Some(sc) = Scenario::with_partitions(&format!("ks-stop-{kind}"), 1).await else {
        return;
    };
    let faults = Faults::default();
    let poison = format!("{}-50", sc.topic);
    match fault {
        Fault::Bug => faults.fail_rows_with(fault, AUTH_EVENTS, &poison),
        _ => faults.fail_next(fault, AUTH_EVENTS, usize::MAX),
    }
    let server = start(&sc, &faults).await;
    produce_valid(&sc.producer, &sc.topic, &sc.topic, 100).await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), server.running.wait())
        .await
        .expect("the consumer stops the process by itself");
    let err = format!("{:#}", outcome.expect_err("a failure, not a clean stop"));
    assert!(err.contains("kafka consumer failed"), "{err}");
    assert!(err.contains(&format!("({kind}, error id ")), "{err}");
    assert_eq!(faults.hits(), 1, "one attempt, no loop: {err}");
    let before = counts(sc.dir.path()).await;
    assert!(before.0 < 100, "{before:?}");

    let again = Server::start(kafka_config(&sc)).await;
    let c = wait_for(sc.dir.path(), 100, 0, Duration::from_secs(120)).await;
    assert_eq!(
        (c.0, c.1),
        (100, 100),
        "stored exactly once after the restart"
    );
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_stops_the_consumer_instead_of_looping() {
    stops_on(Fault::Bug, "bug").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_store_error_stops_the_consumer() {
    stops_on(Fault::Fatal, "fatal").await;
}
