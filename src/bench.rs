//! `keyshift bench collector`: collector throughput over loopback.
//!
//! Posts `events` synthetic events in NDJSON batches of `batch` from
//! `concurrency` concurrent clients, each waiting for its 200 (so every
//! counted event is durable), and reports events/s and request latency. By
//! default it starts an embedded server on a fresh data dir in the same
//! process; `--url` measures a running server instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::synth::ndjson_batch;

#[derive(Debug, Clone, clap::Args)]
pub struct CollectorBench {
    /// Total events to post.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events per request.
    #[arg(long, default_value_t = 1_000)]
    pub batch: u64,
    /// Concurrent clients (requests in flight).
    #[arg(long, default_value_t = 32)]
    pub concurrency: u64,
    /// Post to this running server instead of an embedded one.
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token for `--url`.
    #[arg(long)]
    pub token: Option<String>,
}

#[derive(Debug)]
pub struct BenchReport {
    pub events: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} events in {:.2}s = {:.0} events/s; request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.events,
            secs,
            self.events as f64 / secs,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3,
        )
    }
}

pub async fn collector(args: &CollectorBench) -> anyhow::Result<BenchReport> {
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    let mut embedded = None;
    let url = match &args.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let dir = std::env::temp_dir().join(format!("keyshift-bench-{}", std::process::id()));
            let mut config = Config::default();
            config.server.listen = "127.0.0.1:0".parse()?;
            config.server.data_dir = dir.clone();
            let running = crate::start(config, CancellationToken::new()).await?;
            let url = format!("http://{}", running.addr);
            embedded = Some((running, dir));
            url
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .timeout(Duration::from_secs(120))
        .build()?;
    let prefix = format!("bench-{}", Utc::now().timestamp_micros());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, next, url, prefix) =
            (client.clone(), next.clone(), url.clone(), prefix.clone());
        let (total, batch, token) = (args.events, args.batch, args.token.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                if start >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let n = batch.min(total - start);
                let body = ndjson_batch(&prefix, start, n, "bench.example", Utc::now());
                let mut req = client
                    .post(format!("{url}/v1/events"))
                    .header("content-type", "application/x-ndjson")
                    .body(body);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let t0 = Instant::now();
                let resp = req.send().await.context("posting a batch")?;
                let status = resp.status();
                let summary: serde_json::Value =
                    resp.json().await.context("reading the response")?;
                latencies.push(t0.elapsed());
                if !status.is_success() || summary["accepted"].as_u64() != Some(n) {
                    bail!("batch at {start} was not fully accepted ({status}): {summary}");
                }
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    if let Some((running, dir)) = embedded {
        running.stop().await?;
        let _ = std::fs::remove_dir_all(dir);
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Ok(BenchReport {
        events: args.events,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}
