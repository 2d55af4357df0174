//! `keyshift bench kafka`: end-to-end Kafka ingest throughput and memory.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;

use crate::child::{Child, free_port};

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

/// What `keyshift bench kafka` measured.
#[derive(Debug)]
pub struct KafkaReport {
    /// Events produced and committed.
    pub events: u64,
    /// Whether the events were produced before ingest started (a backlog).
    pub preload: bool,
    /// Time to produce every event.
    pub produce: Duration,
    /// From the first message produced (or, with a backlog, from the ingest
    /// process's start) until every event was committed to the table.
    pub end_to_end: Duration,
    /// Peak resident memory of the ingest process, KiB.
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
    child: Child,
    base: String,
}

impl IngestChild {
    fn spawn(brokers: &str, topic: &str, dir: &std::path::Path) -> anyhow::Result<Self> {
        // A free port for the child's API, where its metrics are read.
        let port = free_port()?;
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .args(["ingest", "--brokers", brokers, "--topic", topic])
            .args(["--group", &format!("{topic}-ingest")])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        Ok(Self {
            child: Child::spawn(command)?,
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
        self.child.peak_rss_kib().unwrap_or(0)
    }

    fn stop(self) -> anyhow::Result<()> {
        self.child.stop().context("keyshift ingest")
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

/// Runs the Kafka benchmark: a fresh topic, a `keyshift ingest` child.
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
