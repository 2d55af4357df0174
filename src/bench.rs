//! Benchmarks. `keyshift bench kafka` (end-to-end Kafka ingest) is at the
//! end of this file; `keyshift bench isolation` in [`isolation`].
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

mod isolation;
mod kpis;
mod population;
pub use isolation::{IsolationBench, IsolationReport, isolation};
pub use kpis::{KpiBench, KpiBenchReport, kpis};

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

/// The `p` quantile of sorted latencies (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or_default()
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
    let pct = |p: f64| percentile(&latencies, p);
    Ok(BenchReport {
        events: args.events,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}

/// `keyshift bench kafka`: end-to-end Kafka ingest throughput and memory.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaBench {
    /// Kafka bootstrap servers.
    #[arg(long)]
    pub brokers: String,
    /// Events to produce.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Partitions of the (fresh) bench topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Produce everything before the ingest process starts (a backlog);
    /// otherwise produce while it runs.
    #[arg(long)]
    pub preload: bool,
    /// Keep the topic and the data dir afterwards.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug)]
pub struct KafkaReport {
    pub events: u64,
    pub preload: bool,
    pub produce: Duration,
    /// From the first message produced (or, with a backlog, from the ingest
    /// process's start) until every event was committed to the table.
    pub end_to_end: Duration,
    pub peak_rss_kib: u64,
}

impl std::fmt::Display for KafkaReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = |d: Duration| self.events as f64 / d.as_secs_f64().max(1e-9);
        write!(
            f,
            "{} events ({}): produced in {:.2}s ({:.0}/s); all committed after {:.2}s = {:.0} events/s \
             end to end; ingest peak RSS {:.0} MiB",
            self.events,
            if self.preload {
                "backlog: produced first, then ingested"
            } else {
                "produced while ingesting"
            },
            self.produce.as_secs_f64(),
            rate(self.produce),
            self.end_to_end.as_secs_f64(),
            rate(self.end_to_end),
            self.peak_rss_kib as f64 / 1024.0,
        )
    }
}

/// A `keyshift ingest` child process (the measured one).
struct IngestChild {
    child: std::process::Child,
    base: String,
}

impl Drop for IngestChild {
    /// A bench that failed half-way must not leave a consumer running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl IngestChild {
    fn spawn(brokers: &str, topic: &str, dir: &std::path::Path) -> anyhow::Result<Self> {
        // A free port for the child's API, where its metrics are read.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["ingest", "--brokers", brokers, "--topic", topic])
            .args(["--group", &format!("{topic}-ingest")])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting keyshift ingest")?;
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn ready(&self, client: &reqwest::Client) -> bool {
        client
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Events committed so far, from the child's metrics.
    async fn committed(&self, client: &reqwest::Client) -> Option<u64> {
        let text = client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| {
                l.starts_with("keyshift_ingest_events_total{")
                    && l.contains(r#"outcome="accepted""#)
                    && l.contains(r#"source="kafka""#)
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("keyshift ingest exited with {status}");
        }
        Ok(())
    }
}

async fn produce_synthetic(
    brokers: &str,
    topic: &str,
    events: u64,
    at: chrono::DateTime<Utc>,
) -> anyhow::Result<Duration> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let started = Instant::now();
    let prefix = format!("kb-{}", at.timestamp_micros());
    let mut line = String::with_capacity(1024);
    let mut pending = std::collections::VecDeque::new();
    for i in 0..events {
        line.clear();
        crate::synth::event_line(&mut line, &prefix, i, "bench.example", at);
        let key = format!("user-{}", i % 50_000);
        let mut record = FutureRecord::to(topic).key(&key).payload(line.as_str());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    // Make room: wait for the oldest acknowledgement.
                    if let Some(d) = pending.pop_front() {
                        d.await?.map_err(|(e, _)| e)?;
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        while pending.len() > 400_000 {
            if let Some(d) = pending.pop_front() {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(started.elapsed())
}

pub async fn kafka(args: &KafkaBench) -> anyhow::Result<KafkaReport> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let topic = format!("keyshift-bench-{}", Utc::now().timestamp_micros());
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    for r in admin
        .create_topics(
            &[NewTopic::new(
                &topic,
                args.partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    let dir = std::env::temp_dir().join(&topic);
    let client = reqwest::Client::new();
    let now = Utc::now();
    let (child, produce, started) = if args.preload {
        let produce = produce_synthetic(&args.brokers, &topic, args.events, now).await?;
        let started = Instant::now();
        (
            IngestChild::spawn(&args.brokers, &topic, &dir)?,
            produce,
            started,
        )
    } else {
        let child = IngestChild::spawn(&args.brokers, &topic, &dir)?;
        // Produce once the child's API answers (it has joined the group).
        let wait = Instant::now();
        while !child.ready(&client).await {
            if wait.elapsed() > Duration::from_secs(60) {
                bail!("keyshift ingest did not come up within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = Instant::now();
        let produce = produce_synthetic(&args.brokers, &topic, args.events, now).await?;
        (child, produce, started)
    };
    loop {
        if child.committed(&client).await.unwrap_or(0) >= args.events {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("not all events were committed within an hour");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end_to_end = started.elapsed();
    let peak_rss_kib = child.peak_rss_kib();
    child.stop()?;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    }
    Ok(KafkaReport {
        events: args.events,
        preload: args.preload,
        produce,
        end_to_end,
        peak_rss_kib,
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

#[derive(Debug)]
pub struct AssignReport {
    pub requests: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
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
