//! The pipeline with a bounded dedup index over a real table: keys evicted
//! from the exact tier are checked against `auth_events`, so a repeat of an
//! old event is still a duplicate and a new event is still stored, whatever
//! the filters say.

use std::sync::Arc;

use chrono::{Duration, Utc};
use keyshift_http::Principal;
use keyshift_store::metrics::{QueryMetrics, StoreMetrics};
use keyshift_store::query::QueryLimits;
use keyshift_store::{
    ExecutorSettings, QueryEngine, QueryExecutor, Source, StoreConfig, Tables, Writer,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::IngestConfig;
use crate::dedup::{DedupIndex, DedupLimits, HOT_BYTES_PER_KEY};
use crate::metrics::IngestMetrics;
use crate::pipeline::{Input, Pipeline};
use crate::pseudonym::Pseudonymizer;

fn event(id: usize) -> Input {
    Input::from(&json!({
        "schema_version": 1,
        "event_id": format!("ev-{id}"),
        "event_type": "auth.succeeded",
        "occurred_at": Utc::now().to_rfc3339(),
        "rp_id": "shop.example",
        "user_id": format!("user-{id}"),
        "data": {"method": "passkey"}
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_keys_are_checked_against_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tables").display().to_string();
    let store = StoreConfig::default();
    let tables = Tables::open_or_create(&root, &Default::default())
        .await
        .expect("tables");
    let stop = CancellationToken::new();
    let (writer, _task) = Writer::spawn(
        tables,
        store.clone(),
        StoreMetrics::unregistered(),
        stop.clone(),
    )
    .expect("writer");
    let executor = QueryExecutor::new(
        ExecutorSettings::from(&store),
        QueryMetrics::unregistered(),
        stop.clone(),
    )
    .expect("executor");
    let engine =
        QueryEngine::live(writer.published(), QueryLimits::from(&store), executor).expect("engine");
    let cfg = IngestConfig::default();
    // 200 exact keys, no filters: every key the exact tier lost is checked.
    let dedup = Arc::new(DedupIndex::bounded(DedupLimits {
        window: cfg.dedup_window,
        hot_bytes: 200 * HOT_BYTES_PER_KEY,
        filter_bytes: 0,
    }));
    let t0 = Utc::now() - Duration::hours(12);
    dedup.expire(t0 - Duration::days(1));
    let metrics = IngestMetrics::unregistered();
    let pipeline = Pipeline::with_parts(
        cfg,
        Pseudonymizer::new(&[7; 32]),
        dedup.clone(),
        writer,
        metrics,
    )
    .with_query_engine(engine.clone());
    let ingest = |ids: std::ops::Range<usize>, at| {
        let prepared = pipeline.prepare(
            &Principal::Open,
            ids.map(event).collect(),
            &Source::Http,
            at,
        );
        pipeline.commit(prepared, "http")
    };

    // Ten batches of 100, an hour apart: the exact tier keeps the newest.
    for batch in 0..10 {
        let s = ingest(
            batch * 100..batch * 100 + 100,
            t0 + Duration::hours(batch as i64),
        )
        .await
        .expect("commit");
        assert_eq!((s.accepted, s.duplicates), (100, 0), "batch {batch}");
    }
    assert!(dedup.len() <= 200, "exact tier holds {}", dedup.len());
    assert!(dedup.hot_since().is_some(), "the oldest keys were evicted");

    // The first batch again: the table says it is there.
    let later = t0 + Duration::hours(11);
    let s = ingest(0..100, later).await.expect("repeat");
    assert_eq!((s.accepted, s.duplicates), (0, 100));
    // New ids: unsure (no filters), the table says new.
    let s = ingest(1000..1100, later).await.expect("fresh");
    assert_eq!((s.accepted, s.duplicates), (100, 0));
    // Once confirmed, a repeat is known without asking.
    let s = ingest(0..100, later).await.expect("repeat again");
    assert_eq!((s.accepted, s.duplicates), (0, 100));

    let rows = engine
        .run(keyshift_store::Lane::Adhoc, |ctx| async move {
            let df = keyshift_store::query::plan(
                &ctx,
                "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM auth_events",
            )
            .await?;
            keyshift_store::query::collect(&ctx, df).await
        })
        .await
        .expect("count");
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
        .expect("format")
        .to_string();
    assert!(text.contains("| 1100 | 1100 |"), "{text}");
    stop.cancel();
}
