//! The Kafka acceptance on object storage: two `keyshift ingest` members
//! committing to the same tables on the S3 server, SIGKILLs, rebalances and
//! `keyshift maintain` compacting while both write.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::*;

/// `keyshift maintain --json` on the scenario's tables, on a blocking
/// thread: it runs while the members commit; the summary once it is done.
fn maintain(sc: &Scenario) -> tokio::task::JoinHandle<Value> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyshift"));
    c.args(["maintain", "--json", "--data-dir"])
        .arg(sc.dir.path())
        .env("RUST_LOG", "warn")
        .envs(sc.store_env())
        .stderr(Stdio::inherit());
    tokio::task::spawn_blocking(move || {
        let out = c.output().expect("keyshift maintain");
        assert!(out.status.success(), "keyshift maintain failed: {out:?}");
        serde_json::from_slice(&out.stdout).expect("json summary")
    })
}

/// Each partition's position recorded in the Delta log, and the broker's
/// end offset of the partition.
async fn positions(sc: &Scenario, partitions: i32) -> Vec<(Option<i64>, i64)> {
    let (root, options) = sc.store();
    let tables = Tables::open(&root, &options).await.expect("open");
    let snapshot = tables.events.snapshot().expect("snapshot");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &sc.brokers)
        .set("group.id", unique("watermarks"))
        .create()
        .expect("consumer");
    let mut out = Vec::new();
    for p in 0..partitions {
        let stored = snapshot
            .transaction_version(
                tables.events.log_store().as_ref(),
                &keyshift_ingest::kafka::app_id(&sc.topic, p),
            )
            .await
            .expect("txn");
        let (_, high) = consumer
            .fetch_watermarks(&sc.topic, p, Duration::from_secs(10))
            .expect("watermarks");
        out.push((stored, high));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_on_s3_with_two_members_sigkills_rebalances_and_maintain() {
    let Some(sc) = Scenario::on_s3("ks-s3").await else {
        return;
    };
    let _heavy = crate::common::HEAVY.lock().await;
    // 200,000 events in five parts, each produced while the members run, so
    // that every step below happens with data flowing.
    const PART: usize = 40_000;
    let mut want = (0, 0);
    let mut add = |(valid, invalid): (usize, usize)| {
        want = (want.0 + valid as i64, want.1 + invalid as i64);
        want
    };

    let first = sc.ingest();
    let (n, _) = add(sc.produce("-a", PART).await);
    sc.wait_for(n, 0).await;

    // A second member joins: the group rebalances, and both commit to the
    // same tables while compaction commits between them.
    let second = sc.ingest();
    let compaction = maintain(&sc);
    let (n, _) = add(sc.produce("-b", PART).await);
    sc.wait_for(n, 0).await;
    let report = compaction.await.expect("maintain");
    assert_eq!(report[0]["table"], "auth_events", "{report}");
    assert!(
        report[0]["partitions_compacted"].as_i64().unwrap_or(0) > 0,
        "maintain compacted nothing: {report}"
    );

    // The first member crashes mid-stream; its partitions move to the
    // second after the session timeout.
    let (n, _) = add(sc.produce("-c", PART).await);
    sc.wait_for(n - PART as i64 * 3 / 4, 0).await;
    first.kill();
    sc.wait_for(n, 0).await;

    // It comes back (another rebalance) while compaction runs again.
    let first = sc.ingest();
    let compaction = maintain(&sc);
    let (n, _) = add(sc.produce("-d", PART).await);
    sc.wait_for(n, 0).await;
    compaction.await.expect("maintain");

    // Now the second one crashes mid-stream.
    let (n, invalid) = add(sc.produce("-e", PART).await);
    sc.wait_for(n - PART as i64 * 3 / 4, 0).await;
    second.kill();
    let c = sc.wait_for(n, invalid).await;
    let lag = wait_for_zero_lag(&sc.brokers, &sc.group, Duration::from_secs(120));
    assert_eq!(lag, Some(0), "kafka-consumer-groups should report no lag");
    first.stop();

    assert_eq!(c, (n, n, invalid), "rows lost or doubled");
    assert_eq!(
        sc.counts().await,
        c,
        "rows arrived after the counts settled"
    );
    for (p, (stored, high)) in positions(&sc, 4).await.into_iter().enumerate() {
        assert_eq!(
            stored,
            Some(high - 1),
            "partition {p}: the Delta log must record the last offset"
        );
    }
}
