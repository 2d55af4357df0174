//! `keyshift bench isolation`: what heavy queries cost ingest.
//!
//! Starts an embedded server on a fresh data dir and loads `--events`
//! events. Then it posts events for `--rounds` rounds of two phases of
//! `--seconds` each: one alone, one while the cross join of the isolation
//! issue and `--queries` heavy aggregation loops run over the table (they
//! are cancelled when their phase ends). Every commit costs a little more
//! than the one before (one more file until compaction), so alternating
//! short phases keeps the comparison fair. Reported side by side: events/s,
//! request p50/p99 and `/healthz` p99/max, over all phases of each kind.
//! Last, the cross join runs alone until its time limit. Targets: loaded
//! throughput ≥ 70 % of unloaded, loaded request p99 < 500 ms, `/healthz`
//! < 100 ms, the cross join ending with a timeout within
//! `store.query_timeout` + 1 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::percentile;
use crate::config::Config;
use crate::synth::ndjson_batch;

/// The runaway query: a cross join of two 100-million-row series.
const CROSS_JOIN: &str = "SELECT count(*) FROM (SELECT * FROM generate_series(1,100000000) a \
                          CROSS JOIN generate_series(1,100000000) b)";

/// KPI-shaped aggregations over the whole table.
const HEAVY: [&str; 4] = [
    "SELECT client_os, client_browser, count(DISTINCT user_key) AS users, \
     sum(CASE WHEN event_type = 'auth.succeeded' THEN 1 ELSE 0 END) AS ok, count(*) AS n \
     FROM auth_events GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT user_key, count(*) AS n FROM auth_events GROUP BY 1 ORDER BY 2 DESC LIMIT 20",
    "SELECT count(DISTINCT session_key) AS sessions, count(DISTINCT attempt_id) AS attempts \
     FROM auth_events",
    "SELECT event_date, method, approx_percentile_cont(duration_ms, 0.95) AS p95, \
     avg(duration_ms) AS mean FROM auth_events GROUP BY 1, 2 ORDER BY 1, 2",
];

/// `keyshift bench isolation`: ingest and health latency with and without
/// heavy queries running.
#[derive(Debug, Clone, clap::Args)]
pub struct IsolationBench {
    /// Events loaded before the two runs (the table the queries read).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Length of each phase.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Rounds of (unloaded, loaded) phases.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Collector requests in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u64,
    /// Events per request.
    #[arg(long, default_value_t = 1_000)]
    pub batch: u64,
    /// Events per request while loading (large: few commits, so that the
    /// runs start on a table with few versions).
    #[arg(long, default_value_t = 5_000)]
    pub preload_batch: u64,
    /// Heavy aggregation loops in the loaded run.
    #[arg(long, default_value_t = 4)]
    pub queries: usize,
}

/// The collector load over all phases of one kind.
#[derive(Debug, Default)]
pub struct Run {
    pub events: u64,
    pub elapsed: Duration,
    /// Request latencies, sorted once complete.
    requests: Vec<Duration>,
    health: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn add(&mut self, other: Run) {
        self.events += other.events;
        self.elapsed += other.elapsed;
        self.requests.extend(other.requests);
        self.health.extend(other.health);
        self.requests.sort();
        self.health.sort();
    }

    pub fn p50(&self) -> Duration {
        percentile(&self.requests, 0.50)
    }

    pub fn p99(&self) -> Duration {
        percentile(&self.requests, 0.99)
    }

    pub fn health_p99(&self) -> Duration {
        percentile(&self.health, 0.99)
    }

    pub fn health_max(&self) -> Duration {
        self.health.last().copied().unwrap_or_default()
    }
}

/// What `keyshift bench isolation` measured.
#[derive(Debug)]
pub struct IsolationReport {
    /// Rounds of each run.
    pub rounds: u32,
    /// Ingest and health latencies with no queries running.
    pub unloaded: Run,
    /// The same while heavy queries run.
    pub loaded: Run,
    /// Heavy aggregation queries completed during the loaded run.
    pub aggregations: u64,
    /// HTTP status the runaway cross join was answered with.
    pub cross_join_status: u16,
    /// How long the cross join ran before it was stopped.
    pub cross_join_elapsed: Duration,
    /// The `store.query_timeout` in force.
    pub query_timeout: Duration,
}

impl std::fmt::Display for IsolationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let row = |f: &mut std::fmt::Formatter<'_>, name: &str, r: &Run| {
            writeln!(
                f,
                "{name:<9} {:>10.0} events/s   request p50 {:>6.1} ms  p99 {:>6.1} ms   healthz p99 {:>5.1} ms  max {:>5.1} ms",
                r.rate(),
                ms(r.p50()),
                ms(r.p99()),
                ms(r.health_p99()),
                ms(r.health_max())
            )
        };
        writeln!(f, "{} rounds of (unloaded, loaded) phases", self.rounds)?;
        row(f, "unloaded", &self.unloaded)?;
        row(f, "loaded", &self.loaded)?;
        let share = self.loaded.rate() / self.unloaded.rate().max(1e-9);
        writeln!(
            f,
            "loaded / unloaded throughput: {:.0} %; {} heavy aggregations finished in the loaded phases",
            share * 100.0,
            self.aggregations
        )?;
        writeln!(
            f,
            "cross join: HTTP {} after {:.2} s (query_timeout {:?})",
            self.cross_join_status,
            self.cross_join_elapsed.as_secs_f64(),
            self.query_timeout
        )?;
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        write!(
            f,
            "targets: throughput ≥ 70 % {}; p99 < 500 ms {}; healthz < 100 ms {}; timeout within limit + 1 s {}",
            verdict(share >= 0.7),
            verdict(self.loaded.p99() < Duration::from_millis(500)),
            verdict(
                self.loaded.health_max().max(self.unloaded.health_max())
                    < Duration::from_millis(100)
            ),
            verdict(
                self.cross_join_status == 504
                    && self.cross_join_elapsed < self.query_timeout + Duration::from_secs(1)
            ),
        )
    }
}

/// Runs the isolation benchmark on an embedded server.
pub async fn isolation(args: &IsolationBench) -> anyhow::Result<IsolationReport> {
    if args.batch == 0 || args.concurrency == 0 || args.seconds == 0 {
        bail!("--batch, --concurrency and --seconds must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("keyshift-bench-iso-{}", std::process::id()));
    // Defaults and KEYSHIFT__… environment variables (to try other settings).
    let mut config = Config::load(None, &crate::config::Overrides::default())?;
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.data_dir = dir.clone();
    // Every heavy query runs at once (not queued behind the cross join).
    config.store.query_concurrency = args.queries + 1;
    let query_timeout = config.store.query_timeout;
    let running = crate::start(config, CancellationToken::new()).await?;
    let url = format!("http://{}", running.addr);
    // The clients run on a thread and runtime of their own, as they would
    // in another process: building request bodies and reading answers must
    // not take the server's workers. They still share the two cores.
    let clients = {
        let args = args.clone();
        std::thread::Builder::new()
            .name("bench-clients".to_owned())
            .spawn(move || -> anyhow::Result<Clients> {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("bench-client")
                    .enable_all()
                    .build()?
                    .block_on(drive(&url, &args))
            })?
    };
    let clients = tokio::task::spawn_blocking(move || clients.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the bench clients panicked"));
    running.stop().await?;
    let _ = std::fs::remove_dir_all(dir);
    let clients = clients??;
    Ok(IsolationReport {
        rounds: args.rounds,
        unloaded: clients.unloaded,
        loaded: clients.loaded,
        aggregations: clients.aggregations,
        cross_join_status: clients.cross_join_status,
        cross_join_elapsed: clients.cross_join_elapsed,
        query_timeout,
    })
}

/// What the clients measured.
struct Clients {
    unloaded: Run,
    loaded: Run,
    aggregations: u64,
    cross_join_status: u16,
    cross_join_elapsed: Duration,
}

/// The load, the rounds and the lone cross join against the server at `url`.
async fn drive(url: &str, args: &IsolationBench) -> anyhow::Result<Clients> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()?;
    let prefix = format!("iso-{}", Utc::now().timestamp_micros());
    let loaded_rows = load_count(&client, url, &format!("{prefix}-pre"), args).await?;
    eprintln!("loaded {loaded_rows} events");
    let mut unloaded = Run::default();
    let mut loaded = Run::default();
    let finished = Arc::new(AtomicU64::new(0));
    for round in 0..args.rounds {
        eprintln!(
            "round {}: unloaded, then loaded ({} s each)",
            round + 1,
            args.seconds
        );
        unloaded.add(load_for(&client, url, &format!("{prefix}-a{round}"), args).await?);
        let queries = heavy_queries(&client, url, args.queries, &finished);
        loaded.add(load_for(&client, url, &format!("{prefix}-b{round}"), args).await?);
        // Dropping the requests cancels their queries at once.
        for q in queries {
            q.abort();
        }
    }
    eprintln!("the cross join alone, until its time limit");
    let started = Instant::now();
    let cross_join_status = client
        .post(format!("{url}/v1/sql"))
        .json(&json!({ "sql": CROSS_JOIN }))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    Ok(Clients {
        unloaded,
        loaded,
        aggregations: finished.load(Ordering::Relaxed),
        cross_join_status,
        cross_join_elapsed: started.elapsed(),
    })
}

/// The cross join and `n` loops of heavy aggregations, until aborted.
fn heavy_queries(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    finished: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let sql = |sql: &'static str| {
        client
            .post(format!("{url}/v1/sql"))
            .json(&json!({ "sql": sql }))
    };
    let cross = sql(CROSS_JOIN);
    let mut tasks = vec![tokio::spawn(async move {
        let _ = cross.send().await;
    })];
    for i in 0..n {
        let (client, url, finished) = (client.clone(), url.to_owned(), finished.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let sql = HEAVY[i % HEAVY.len()];
                let ok = client
                    .post(format!("{url}/v1/sql"))
                    .json(&json!({ "sql": sql }))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    eprintln!("a heavy query failed: {sql}");
                    return;
                }
                finished.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tasks
}

/// Posts one batch; its latency.
async fn post(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    start: u64,
    n: u64,
) -> anyhow::Result<Duration> {
    let body = ndjson_batch(prefix, start, n, "bench.example", Utc::now());
    let t0 = Instant::now();
    let resp = client
        .post(format!("{url}/v1/events"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .context("posting a batch")?;
    let status = resp.status();
    let summary: serde_json::Value = resp.json().await.context("reading the response")?;
    if !status.is_success() || summary["accepted"].as_u64() != Some(n) {
        bail!("batch at {start} was not fully accepted ({status}): {summary}");
    }
    Ok(t0.elapsed())
}

/// When the clients stop posting.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// Once this many events were posted.
    Events(u64),
    /// At this instant.
    Time(Instant),
}

/// `concurrency` clients posting `batch`-event requests until `until`; the
/// latency of every request.
async fn post_until(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    concurrency: u64,
    batch: u64,
    until: Until,
) -> anyhow::Result<Vec<Duration>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>> = Vec::new();
    for _ in 0..concurrency {
        let (client, url, prefix, next) = (
            client.clone(),
            url.to_owned(),
            prefix.to_owned(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                let n = match until {
                    Until::Events(total) if start >= total => return Ok(latencies),
                    Until::Events(total) => batch.min(total - start),
                    Until::Time(t) if Instant::now() >= t => return Ok(latencies),
                    Until::Time(_) => batch,
                };
                latencies.push(post(&client, &url, &prefix, start, n).await?);
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(latencies)
}

/// Loads `args.events` events as fast as the collector takes them.
async fn load_count(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    args: &IsolationBench,
) -> anyhow::Result<u64> {
    let batch = args.preload_batch.max(1);
    let until = Until::Events(args.events);
    post_until(client, url, prefix, args.concurrency, batch, until).await?;
    Ok(args.events)
}

/// Posts for `args.seconds`, probing `/healthz` every 50 ms meanwhile.
async fn load_for(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    args: &IsolationBench,
) -> anyhow::Result<Run> {
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let posting = post_until(
        client,
        url,
        prefix,
        args.concurrency,
        args.batch,
        Until::Time(until),
    );
    // The prober has its own thread and runtime: it measures the server's
    // answer, not how long the probe waited behind the posting clients.
    let health = {
        let url = url.to_owned();
        std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let client = reqwest::Client::new();
                let mut latencies = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                while Instant::now() < until {
                    tick.tick().await;
                    let t0 = Instant::now();
                    let ok = client
                        .get(format!("{url}/healthz"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        bail!("/healthz failed under load");
                    }
                    latencies.push(t0.elapsed());
                }
                Ok(latencies)
            })
        })
    };
    let mut latencies = posting.await?;
    let elapsed = started.elapsed();
    latencies.sort();
    let mut health = tokio::task::spawn_blocking(move || health.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the /healthz prober panicked"))??;
    health.sort();
    Ok(Run {
        events: latencies.len() as u64 * args.batch,
        elapsed,
        requests: latencies,
        health,
    })
}
