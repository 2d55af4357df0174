//! The query limits against real DataFusion plans: plans that never finish
//! are cancelled on time and leave no work behind; plans that need too much
//! memory fail with the limit named.

use std::time::{Duration, Instant};

use crate::query::QueryLimits;
use crate::{QueryEngine, QueryExecutor, StoreConfig, StoreError, Tables};

async fn engine(timeout: Duration, memory_mib: usize) -> (tempfile::TempDir, QueryEngine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8").to_owned();
    let tables = Tables::open_or_create(&root, &Default::default())
        .await
        .expect("open");
    let config = StoreConfig {
        query_timeout: timeout,
        query_memory_mib: memory_mib,
        ..StoreConfig::default()
    };
    let executor = QueryExecutor::standalone(&config).expect("query runtime");
    let engine = QueryEngine::fixed(tables, QueryLimits::from(&config), executor).expect("engine");
    (dir, engine)
}

/// Plans whose operators emit many batches per input batch: before the
/// yield rule an abort took 20–35 s to land on each of the joins.
const RUNAWAY: [&str; 4] = [
    "SELECT count(*) FROM (SELECT * FROM generate_series(1,100000000) a \
     CROSS JOIN generate_series(1,100000000) b)",
    "SELECT count(*) FROM generate_series(1,1000000) a JOIN generate_series(1,1000000) b \
     ON a.value < b.value",
    "SELECT count(*) FROM generate_series(1,1000000) a JOIN generate_series(1,1000000) b \
     ON a.value % 3 = b.value % 3",
    "SELECT count(*) FROM generate_series(1,10000000000)",
];

#[tokio::test]
async fn runaway_plans_stop_at_the_time_limit_and_free_the_threads() {
    let limit = Duration::from_millis(500);
    let (_dir, engine) = engine(limit, 1024).await;
    for sql in RUNAWAY {
        let started = Instant::now();
        let r = engine.sql(sql).await;
        assert!(
            matches!(r, Err(StoreError::QueryTimeout(_))),
            "{sql}: {r:?}"
        );
        assert!(
            started.elapsed() < limit + Duration::from_secs(1),
            "{sql}: answered after {:?}",
            started.elapsed()
        );
        let cancelled = Instant::now();
        let runtime = engine.executor().handle().metrics();
        while runtime.num_alive_tasks() > 0 {
            assert!(
                cancelled.elapsed() < Duration::from_secs(1),
                "{sql}: {} query tasks still running 1 s after the timeout",
                runtime.num_alive_tasks()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn queries_over_the_memory_limit_fail_naming_it() {
    let (_dir, engine) = engine(Duration::from_secs(60), 32).await;
    for sql in [
        // Many groups.
        "SELECT count(*) FROM (SELECT value * 7919 % 20000003 AS k, count(*) \
         FROM generate_series(1, 5000000) GROUP BY k)",
        // A sort that must hold everything.
        "SELECT x FROM (SELECT value * 7919 % 1000003 AS x FROM generate_series(1, 5000000)) \
         ORDER BY x LIMIT 10 OFFSET 4000000",
        // Distinct values.
        "SELECT count(DISTINCT value * 7919 % 20000003) FROM generate_series(1, 5000000)",
        // Huge values from small arguments.
        "SELECT length(repeat('x', 2000000000))",
        "SELECT length(repeat(CAST(value AS VARCHAR), 1000000)) FROM generate_series(1, 100)",
        "SELECT length(lpad('x', 2000000000))",
        "SELECT cardinality(range(1, 1000000000))",
        "SELECT count(*) FROM unnest(range(1, 1000000000))",
        "SELECT cardinality(generate_series(DATE '1970-01-01', DATE '9999-01-01', INTERVAL '1 day'))",
        "SELECT cardinality(array_repeat(1, 500000000))",
        "SELECT length(replace(repeat('a', 1000000), 'a', repeat('b', 1000)))",
        "SELECT length(string_agg(repeat('x', 1000), ',')) FROM generate_series(1, 2000000)",
    ] {
        match engine.sql(sql).await {
            Err(e @ StoreError::QueryMemory { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains("32 MiB") && m.contains("store.query_memory_mib"),
                    "{m}"
                );
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    // Ordinary uses of the same functions still work.
    let out = engine
        .sql("SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS p, cardinality(range(1, 11)) AS n")
        .await
        .expect("small calls");
    assert_eq!(out.batches[0].num_rows(), 1);
}
