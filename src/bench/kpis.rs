//! `keyshift bench kpis`: how fast the KPI API answers over a large table.
//!
//! Builds `--events` events of one relying party over `--days` days with
//! the seeded [`Population`] into the store (`--data-dir`, or `store.uri`
//! when set) through the same validation, pseudonymization and dedup as
//! live traffic, `--chunk` events per commit, day by day, unless the store
//! already holds the tables.
//! Then starts the embedded server on it and times `GET /v1/kpis` and
//! `GET /v1/funnel` for the whole range by day with a `platform`
//! breakdown: the first request on an empty result cache without the
//! rollup task (nothing made); then, after making the day rollups as the
//! rollup task does after commits (timed), the first request after start
//! (cold) and `--rounds` repeats (warm); the first after a restart; and
//! the first after one more commit. With `--emit-sql DIR` it also writes each KPI's statement for
//! `scripts/bench-kpis-duckdb.py`, which times the same SQL in DuckDB over
//! the same Parquet files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use keyshift_http::Principal;
use keyshift_ingest::metrics::IngestMetrics;
use keyshift_ingest::pipeline::{Input, Pipeline};
use keyshift_metrics::kpi::{self, RawParams};
use keyshift_store::metrics::StoreMetrics;
use keyshift_store::query::QueryLimits;
use keyshift_store::{QueryEngine, QueryExecutor, Source, Tables, Writer};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use super::population::Population;
use crate::config::Config;

/// `keyshift bench kpis`: KPI and funnel request times on a generated
/// table.
#[derive(Debug, Clone, clap::Args)]
pub struct KpiBench {
    /// Data dir; the tables go under it unless `store.uri` is set.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Days the events span.
    #[arg(long, default_value_t = 30)]
    pub days: i64,
    /// Users in the population [default: events / (1.1 × days): each is
    /// active on about three days in ten, with ~1.15 events a day on average].
    #[arg(long)]
    pub users: Option<usize>,
    /// Seed of the generated population.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Events per commit while building.
    #[arg(long, default_value_t = 250_000)]
    pub chunk: usize,
    /// Warm repeats of each request.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Write each KPI's SQL statement here (for the DuckDB comparison).
    #[arg(long)]
    pub emit_sql: Option<PathBuf>,
}

pub(super) const RP: &str = "bench.example";

/// The first day of the generated range: fixed, so runs compare.
pub(super) fn first_day() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// What `keyshift bench kpis` measured.
#[derive(Debug)]
pub struct KpiBenchReport {
    /// Events written and the time it took, when the table was built now.
    pub built: Option<(u64, Duration)>,
    /// Day rollups made before the first request, and the time it took
    /// (the rollup task's work after commits).
    pub rollups: (usize, Duration),
    /// The table version the requests read.
    pub version: Option<u64>,
    /// The request measured (query string of `/v1/kpis`).
    pub query: String,
    /// The KPI request's times.
    pub kpis: Timings,
    /// The funnel request's times.
    pub funnel: Timings,
}

/// One request's times in the bench's five situations.
#[derive(Debug, Default)]
pub struct Timings {
    /// The first request on an empty result cache, without the rollup
    /// task: the report makes every day's rollup itself.
    pub unmade: Duration,
    /// The first request after start on a result cache that holds only the
    /// day rollups, as the rollup task leaves it after commits.
    pub first: Duration,
    /// The repeats that followed.
    pub warm: Vec<Duration>,
    /// The first request after a restart (result cache on disk only).
    pub restart: Duration,
    /// The request after one more event was committed to the range's last day.
    pub after_commit: Duration,
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let warm: Vec<String> = self
            .warm
            .iter()
            .map(|d| format!("{}", d.as_millis()))
            .collect();
        write!(
            f,
            "nothing made {} ms, first {} ms, warm {} ms, after restart {} ms, \
             after a commit {} ms",
            self.unmade.as_millis(),
            self.first.as_millis(),
            warm.join(" / "),
            self.restart.as_millis(),
            self.after_commit.as_millis()
        )
    }
}

impl std::fmt::Display for KpiBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((n, t)) = self.built {
            writeln!(f, "built: {n} events in {:.1} s", t.as_secs_f64())?;
        }
        writeln!(f, "table version: {:?}", self.version)?;
        writeln!(
            f,
            "day rollups: {} made in {:.1} s",
            self.rollups.0,
            self.rollups.1.as_secs_f64()
        )?;
        writeln!(f, "query: {}", self.query)?;
        writeln!(f, "GET /v1/kpis   {}", self.kpis)?;
        write!(f, "GET /v1/funnel {}", self.funnel)
    }
}

/// Builds the table through the ingest pipeline, day by day.
async fn build(config: &Config, args: &KpiBench) -> anyhow::Result<u64> {
    let root = config.store_root();
    let tables = Tables::open_or_create(&root, &config.store.storage_options).await?;
    let registry = Registry::new();
    let stop = CancellationToken::new();
    let (writer, task) = Writer::spawn(
        tables,
        config.store.clone(),
        StoreMetrics::new(&registry)?,
        stop.clone(),
    )?;
    let engine = QueryEngine::live(
        writer.published(),
        QueryLimits::from(&config.store),
        QueryExecutor::standalone(&config.store)?,
    )?;
    let mut ingest = config.ingest.clone();
    // Backfill: every generated day lies in the past.
    ingest.dedup_window = Duration::from_secs(3600 * 24 * 400);
    let pipeline = Arc::new(
        Pipeline::start(
            ingest,
            &config.server.data_dir,
            writer.clone(),
            &engine,
            IngestMetrics::new(&registry)?,
        )
        .await?,
    );
    let users = args
        .users
        .unwrap_or_else(|| {
            let per_user = 1.1 * args.days.max(1) as f64;
            (args.events as f64 / per_user) as usize
        })
        .max(1);
    let mut population = Population::new(args.seed, RP, users);
    let mut total = 0u64;
    let mut lines = Vec::new();
    let mut day = 0;
    while total < args.events {
        // Short of events after the last day: that day gets more traffic.
        let d = day.min(args.days - 1);
        lines.clear();
        population.day(first_day() + chrono::Duration::days(d), &mut lines);
        let want = usize::try_from(args.events - total).unwrap_or(usize::MAX);
        lines.truncate(want);
        for chunk in lines.chunks(args.chunk) {
            let inputs: Vec<Input> = chunk.iter().map(|l| Input(l.as_bytes().to_vec())).collect();
            let p = pipeline.clone();
            let prepared = tokio::task::spawn_blocking(move || {
                p.prepare(&Principal::Admin, inputs, &Source::Http, Utc::now())
            })
            .await?;
            let summary = pipeline.commit(prepared, "http").await?;
            if !summary.rejected.is_empty() {
                bail!(
                    "generated events were rejected: {:?}",
                    summary.rejected.first()
                );
            }
            total += summary.accepted as u64;
        }
        tracing::info!(day = d, total, "generated");
        day += 1;
    }
    drop(pipeline);
    drop(engine);
    drop(writer);
    stop.cancel();
    task.await??;
    Ok(total)
}

async fn time_get(client: &reqwest::Client, url: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let resp = client.get(url).send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        bail!("{url}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(t0.elapsed())
}

/// Builds (or reuses) the table, then times the KPI and funnel requests.
pub async fn kpis(config: Config, args: &KpiBench) -> anyhow::Result<KpiBenchReport> {
    let mut config = config;
    config.server.data_dir.clone_from(&args.data_dir);
    config.server.listen = "127.0.0.1:0".parse()?;
    // The tables may be on object storage (`store.uri`): ask the store.
    let (root, options) = (config.store_root(), config.store.storage_options.clone());
    let exists = Tables::open(&root, &options).await.is_ok();
    let built = if exists {
        None
    } else {
        let t0 = Instant::now();
        let n = build(&config, args).await.context("building the table")?;
        Some((n, t0.elapsed()))
    };
    let to = first_day() + chrono::Duration::days(args.days);
    let query = format!(
        "rp_id={RP}&from={}&to={}&interval=day&by=platform",
        first_day().format("%Y-%m-%dT%H:%M:%SZ"),
        to.format("%Y-%m-%dT%H:%M:%SZ"),
    );
    if let Some(dir) = &args.emit_sql {
        std::fs::create_dir_all(dir)?;
        let req = RawParams::from_query(&query)?.check(to)?;
        let statements = kpi::engine::kpi_statements(&req, &req.kpis);
        let sql: Vec<&str> = statements
            .iter()
            .flat_map(|(_, parts)| parts.iter().map(|p| p.sql.as_str()))
            .collect();
        for stage in kpi::stages::stages(&req, &sql) {
            // DuckDB gets each shared table in one statement over the range.
            std::fs::write(dir.join(format!("_{}.sql", stage.name)), stage.whole)?;
        }
        // DuckDB gets each KPI in one statement over the whole range.
        for k in &req.kpis {
            std::fs::write(
                dir.join(format!("{}.sql", k.name)),
                kpi::engine::statement(&req, k.sql),
            )?;
        }
    }
    let client = reqwest::Client::new();
    let mut kpis = Timings::default();
    let mut funnel = Timings::default();
    // Nothing cached from an earlier run and no rollup task: the first
    // request computes all.
    empty_cache(&config)?;
    let mut unmade = config.clone();
    unmade.kpi_rollups.enabled = false;
    let running = crate::start(unmade, CancellationToken::new()).await?;
    let urls = Urls::new(&running.addr.to_string(), &query);
    kpis.unmade = time_get(&client, &urls.kpis).await?;
    funnel.unmade = time_get(&client, &urls.funnel).await?;
    running.stop().await?;
    // Then what a running keyshift has after commits: the rollups, and no
    // report cached.
    empty_cache(&config)?;
    let rollups = make_rollups(&config).await?;
    let running = crate::start(config.clone(), CancellationToken::new()).await?;
    let urls = Urls::new(&running.addr.to_string(), &query);
    kpis.first = time_get(&client, &urls.kpis).await?;
    funnel.first = time_get(&client, &urls.funnel).await?;
    for _ in 0..args.rounds {
        kpis.warm.push(time_get(&client, &urls.kpis).await?);
        funnel.warm.push(time_get(&client, &urls.funnel).await?);
    }
    running.stop().await?;
    let running = crate::start(config, CancellationToken::new()).await?;
    let urls = Urls::new(&running.addr.to_string(), &query);
    kpis.restart = time_get(&client, &urls.kpis).await?;
    funnel.restart = time_get(&client, &urls.funnel).await?;
    post_one(&client, &urls.events, to - chrono::Duration::hours(1)).await?;
    kpis.after_commit = time_get(&client, &urls.kpis).await?;
    funnel.after_commit = time_get(&client, &urls.funnel).await?;
    let version = Tables::open(&root, &options)
        .await
        .ok()
        .and_then(|t| t.events.version());
    running.stop().await?;
    Ok(KpiBenchReport {
        built,
        rollups,
        version,
        query,
        kpis,
        funnel,
    })
}

fn empty_cache(config: &Config) -> anyhow::Result<()> {
    let dir = config.result_cache_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    Ok(())
}

/// Makes the day rollups the rollup task keeps (`kpi_rollups.days`) into
/// the result cache's files.
async fn make_rollups(config: &Config) -> anyhow::Result<(usize, Duration)> {
    let tables = Tables::open(&config.store_root(), &config.store.storage_options).await?;
    let engine = crate::kpis_cmd::kpi_engine(config, tables)?;
    let t0 = Instant::now();
    let pass = kpi::make_rollups(&engine, config.kpi_rollups.days).await?;
    if let Some((day, e)) = pass.failed.first() {
        bail!("the rollup of {day} was not made: {e}");
    }
    Ok((pass.made, t0.elapsed()))
}

struct Urls {
    kpis: String,
    funnel: String,
    events: String,
}

impl Urls {
    fn new(addr: &str, query: &str) -> Self {
        Self {
            kpis: format!("http://{addr}/v1/kpis?{query}"),
            funnel: format!("http://{addr}/v1/funnel?{query}"),
            events: format!("http://{addr}/v1/events"),
        }
    }
}

/// Commits one successful passkey sign-in at `at` through the collector
/// (it answers once the event is committed).
async fn post_one(client: &reqwest::Client, url: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
    let event = serde_json::json!({
        "schema_version": 1,
        "event_id": format!("bench-late-{}", Utc::now().timestamp_micros()),
        "event_type": "auth.succeeded",
        "occurred_at": at.to_rfc3339(),
        "rp_id": RP,
        "user_id": "bench-one-more",
        "client": {"os": "iOS", "browser": "Safari", "form_factor": "mobile", "app_type": "web"},
        "data": {"method": "passkey", "duration_ms": 1200}
    });
    let resp = client
        .post(url)
        .header("content-type", "application/x-ndjson")
        .body(format!("{event}\n"))
        .send()
        .await?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() || !body.contains("\"accepted\":1") {
        bail!("{url}: {status} {body}");
    }
    Ok(())
}
