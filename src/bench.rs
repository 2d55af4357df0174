//! Benchmarks. `keyshift bench kafka` (end-to-end Kafka ingest) is in
//! [`kafka`], `keyshift bench isolation` in [`isolation`], `keyshift bench
//! kpis` in [`kpis`].
//!
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

mod dedup;
mod isolation;
mod kafka;
mod kpis;
pub mod population;
mod small_commits;
pub use dedup::{DedupBench, DedupReport, dedup};
pub use isolation::{IsolationBench, IsolationReport, isolation};
pub use kafka::{KafkaBench, KafkaReport, kafka};
pub use kpis::{KpiBench, KpiBenchReport, kpis};
pub use small_commits::{SmallCommitsBench, TableState, small_commits};

/// `keyshift bench collector`: events posted to `POST /v1/events` and
/// committed, end to end.
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

/// What `keyshift bench collector` measured.
#[derive(Debug)]
pub struct BenchReport {
    /// Events posted (and committed).
    pub events: u64,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Median request latency (post to committed answer).
    pub p50: Duration,
    /// 99th-percentile request latency.
    pub p99: Duration,
    /// Slowest request.
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

/// The `p` quantile of sorted latencies (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// Runs the collector benchmark against `--url` or an embedded server.
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
    let pct = |p: f64| percentile(&latencies, p);
    Ok(BenchReport {
        events: args.events,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}

/// `keyshift bench assign`: `GET /v1/assign` over loopback, and the hash
/// path alone.
#[derive(Debug, Clone, clap::Args)]
pub struct AssignBench {
    /// Requests to send.
    #[arg(long, default_value_t = 500_000)]
    pub requests: u64,
    /// Connections (each keeps one request in flight, keep-alive).
    #[arg(long, default_value_t = 64)]
    pub connections: u64,
}

/// What `keyshift bench assign` measured.
#[derive(Debug)]
pub struct AssignReport {
    /// Requests answered.
    pub requests: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Median request latency.
    pub p50: Duration,
    /// 99th-percentile request latency.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
    /// Nanoseconds per assignment on the hash path alone (no HTTP).
    pub hash_ns: f64,
}

impl std::fmt::Display for AssignReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests in {:.2}s = {:.0} requests/s; latency p50 {:.3} ms, p99 {:.3} ms, max {:.1} ms; \
             hash path {:.0} ns per assignment",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3,
            self.hash_ns,
        )
    }
}

/// The cost of one assignment's hashing and bucketing, averaged.
fn hash_path_ns() -> f64 {
    let users: Vec<String> = (0..1_000_000).map(|i| format!("user-{i:08}")).collect();
    let started = Instant::now();
    let mut acc = 0u64;
    for u in &users {
        acc = acc.wrapping_add(u64::from(keyshift_rollout::assign::bucket(
            "login-passkey-default",
            std::hint::black_box(u),
        )));
    }
    std::hint::black_box(acc);
    started.elapsed().as_nanos() as f64 / users.len() as f64
}

/// One keep-alive connection sending GETs and reading responses; a minimal
/// HTTP/1.1 client so the load generator costs little of the two cores.
async fn assign_connection(
    addr: std::net::SocketAddr,
    next: Arc<AtomicU64>,
    total: u64,
) -> anyhow::Result<Vec<Duration>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut latencies = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return Ok(latencies);
        }
        let req =
            format!("GET /v1/assign?rollout=bench&user=user-{i} HTTP/1.1\r\nHost: bench\r\n\r\n");
        let t0 = Instant::now();
        stream.write_all(req.as_bytes()).await?;
        let mut have = 0;
        let (head_end, body_len) = loop {
            let n = stream.read(&mut buf[have..]).await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            have += n;
            if let Some(pos) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..pos])?;
                if !head.starts_with("HTTP/1.1 200") {
                    bail!("unexpected response: {head}");
                }
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                break (pos + 4, len);
            }
        };
        while have < head_end + body_len {
            let n = stream.read(&mut buf[have..]).await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            have += n;
        }
        latencies.push(t0.elapsed());
    }
}

/// Runs the assignment benchmark against an embedded server.
pub async fn assign(args: &AssignBench) -> anyhow::Result<AssignReport> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let hash_ns = hash_path_ns();
    let dir = std::env::temp_dir().join(format!("keyshift-bench-assign-{}", std::process::id()));
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.data_dir = dir.clone();
    config.rollout.rollouts = vec![serde_json::from_value(serde_json::json!({
        "id": "bench",
        "rp_id": "bench.example",
        "stage": "passkey_default",
        "steps": [{"percent": 25}, {"percent": 100}],
        "evaluation_interval": "1h"
    }))?];
    let running = crate::start(config, CancellationToken::new()).await?;
    let addr = running.addr;
    let next = Arc::new(AtomicU64::new(0));
    // Warm-up: connections, allocator, caches.
    let warm = assign_connection(addr, Arc::new(AtomicU64::new(0)), 2000).await?;
    drop(warm);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        tasks.push(tokio::spawn(assign_connection(
            addr,
            next.clone(),
            args.requests,
        )));
    }
    let mut latencies = Vec::with_capacity(args.requests as usize);
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    running.stop().await?;
    let _ = std::fs::remove_dir_all(dir);
    latencies.sort();
    let pct = |p: f64| percentile(&latencies, p);
    Ok(AssignReport {
        requests: args.requests,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        hash_ns,
    })
}
