//! Where simulated events go: the HTTP collector, a Kafka topic, or an
//! NDJSON file. Each sink returns only once the events are safe (200 from
//! the collector, acknowledged by the broker, written), so a stopped
//! simulation has lost nothing it reported as sent.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

/// Events per collector request (the collector accepts up to 10,000).
const HTTP_BATCH: usize = 5_000;

/// An open destination for simulated events (NDJSON lines).
pub enum Sink {
    /// A keyshift collector, posted to in requests of up to 5,000 events.
    Http {
        /// The HTTP client (60 s timeout per request).
        client: reqwest::Client,
        /// The collector's `/v1/events` URL.
        url: String,
        /// Bearer token sent with each request; `None` sends none.
        token: Option<String>,
    },
    /// A Kafka topic; each event is keyed by its `user_id`.
    Kafka {
        /// An idempotent producer (`acks=all`).
        producer: FutureProducer,
        /// The topic produced to.
        topic: String,
    },
    /// A file or standard output, one event per line.
    File(Box<dyn Write + Send>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Http { url, .. } => write!(f, "Sink::Http({url})"),
            Sink::Kafka { topic, .. } => write!(f, "Sink::Kafka({topic})"),
            Sink::File(_) => f.write_str("Sink::File"),
        }
    }
}

impl Sink {
    /// `http://host:port` (a keyshift collector), `kafka://b1:9092,b2:9092/topic`,
    /// `-` (standard output) or a file path.
    pub fn open(to: &str, token: Option<String>) -> anyhow::Result<Self> {
        if to.starts_with("http://") || to.starts_with("https://") {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?;
            return Ok(Sink::Http {
                client,
                url: format!("{}/v1/events", to.trim_end_matches('/')),
                token,
            });
        }
        if let Some(rest) = to.strip_prefix("kafka://") {
            let (brokers, topic) = rest
                .split_once('/')
                .filter(|(b, t)| !b.is_empty() && !t.is_empty())
                .ok_or_else(|| {
                    anyhow!("expected kafka://host:port[,host:port]/topic, got {to:?}")
                })?;
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "20")
                .set("compression.type", "lz4")
                .create()
                .with_context(|| format!("creating a Kafka producer for {brokers}"))?;
            return Ok(Sink::Kafka {
                producer,
                topic: topic.to_owned(),
            });
        }
        if to == "-" {
            return Ok(Sink::File(Box::new(std::io::stdout())));
        }
        let path = PathBuf::from(to);
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Sink::File(Box::new(std::io::BufWriter::new(file))))
    }

    /// Sends `lines`; returns once every one is safe.
    pub async fn send(&mut self, lines: &[String]) -> anyhow::Result<()> {
        match self {
            Sink::Http { client, url, token } => {
                for chunk in lines.chunks(HTTP_BATCH) {
                    post(client, url, token.as_deref(), chunk).await?;
                }
            }
            Sink::Kafka { producer, topic } => {
                let sends = lines.iter().map(|line| {
                    // Keyed by user: one user's events stay in order.
                    let key = serde_json::from_str::<Value>(line)
                        .ok()
                        .and_then(|v| v["user_id"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let producer = producer.clone();
                    let topic = topic.clone();
                    async move {
                        producer
                            .send(
                                FutureRecord::to(&topic).key(&key).payload(line),
                                Duration::from_secs(30),
                            )
                            .await
                            .map_err(|(e, _)| anyhow!("producing to {topic}: {e}"))
                    }
                });
                futures::future::try_join_all(sends).await?;
            }
            Sink::File(w) => {
                for line in lines {
                    writeln!(w, "{line}")?;
                }
                w.flush()?;
            }
        }
        Ok(())
    }
}

/// One collector request; retried on 429/503 with the same event ids
/// (duplicates are acknowledged, never stored twice).
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    chunk: &[String],
) -> anyhow::Result<()> {
    let body = chunk.join("\n");
    for attempt in 0..10u32 {
        let mut req = client
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("posting to {url}"))?;
        let status = resp.status();
        if status.as_u16() == 429 || status.as_u16() == 503 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
            continue;
        }
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{url} answered {status}: {answer}");
        }
        if let Some(first) = answer["rejected"].as_array().and_then(|r| r.first()) {
            bail!("the collector rejected a simulated event (a simulator bug): {first}");
        }
        return Ok(());
    }
    bail!("{url} stayed unavailable after 10 attempts")
}
