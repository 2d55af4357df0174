//! Exact counts: re-sends, invalid messages, SIGKILLs, a rebalance, a
//! broker restart.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_with_resends_and_invalid_messages() {
    let Some(sc) = Scenario::new("ks-exact").await else {
        return;
    };
    // After the broker lock: the demo tests take this one alone.
    let _heavy = crate::common::HEAVY.lock().await;
    let (valid, invalid) = sc.produce("", 200_000).await;
    let ingest = sc.ingest();
    let c = sc.wait_for(valid as i64, invalid as i64).await;
    // Offsets reach Kafka after the Delta commit: standard tooling
    // (kafka-consumer-groups) sees the group catch up.
    let lag = wait_for_zero_lag(&sc.brokers, &sc.group, Duration::from_secs(60));
    assert_eq!(lag, Some(0), "kafka-consumer-groups should report no lag");
    ingest.stop();
    let c2 = counts(sc.dir.path()).await;
    assert_eq!(c, c2, "nothing arrived after the counts settled");
    assert_eq!(c, (valid as i64, valid as i64, invalid as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_through_five_sigkills() {
    let Some(sc) = Scenario::new("ks-kill").await else {
        return;
    };
    // After the broker lock: the demo tests take this one alone.
    let _heavy = crate::common::HEAVY.lock().await;
    let (valid, invalid) = sc.produce("", 200_000).await;
    // Kill at five points spread over the run: whenever the table has grown
    // past the next threshold, SIGKILL and restart.
    for k in 1..=5 {
        let ingest = sc.ingest();
        sc.wait_for((valid as i64) * k / 7, 0).await;
        ingest.kill();
    }
    let ingest = sc.ingest();
    let c = sc.wait_for(valid as i64, invalid as i64).await;
    ingest.stop();
    assert_eq!(c, (valid as i64, valid as i64, invalid as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_through_a_rebalance_and_a_killed_member() {
    let Some(sc) = Scenario::new("ks-rebalance").await else {
        return;
    };
    // After the broker lock: the demo tests take this one alone.
    let _heavy = crate::common::HEAVY.lock().await;
    let (valid, invalid) = sc.produce("", 200_000).await;
    let first = sc.ingest();
    sc.wait_for(valid as i64 / 5, 0).await;
    // A second member joins mid-stream: the group rebalances.
    let second = sc.ingest();
    sc.wait_for(valid as i64 * 3 / 5, 0).await;
    // The first dies without leaving the group; its partitions move after
    // the session timeout.
    first.kill();
    let c = sc.wait_for(valid as i64, invalid as i64).await;
    second.stop();
    assert_eq!(c, (valid as i64, valid as i64, invalid as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_resumes_after_a_broker_restart() {
    let Some(mut sc) = Scenario::new("ks-restart").await else {
        return;
    };
    let (first_half, invalid_a) = sc.produce("-a", 100_000).await;
    let ingest = sc.ingest();
    sc.wait_for(first_half as i64 / 3, 0).await;

    let stop = kafka_sh(&sc.brokers, &["stop"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let start = kafka_sh(&sc.brokers, &["start"]);
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );

    // More data after the restart, from a new producer; the same ingest
    // process must pick it up.
    sc.producer = producer(&sc.brokers);
    let (second_half, invalid_b) = sc.produce("-b", 100_000).await;
    let want = (first_half + second_half) as i64;
    let c = sc.wait_for(want, (invalid_a + invalid_b) as i64).await;
    ingest.stop();
    assert_eq!(c, (want, want, (invalid_a + invalid_b) as i64));
}
