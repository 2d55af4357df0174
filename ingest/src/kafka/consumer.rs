//! The consumer loop. Owns the per-partition positions; see the module docs
//! of `kafka` for the protocol.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use keyshift_http::Principal;
use keyshift_store::{QueryEngine, Source};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{KafkaConfig, OffsetPolicy, StartFrom, app_id};
use crate::metrics::KafkaMetrics;
use crate::pipeline::{Input, Pipeline};
use crate::{IngestError, Result};

enum RebalanceEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Receives librdkafka's callbacks: rebalances are queued for the loop,
/// statistics become lag gauges.
struct Ctx {
    topic: String,
    events: Mutex<Vec<RebalanceEvent>>,
    metrics: KafkaMetrics,
}

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        if let Some(topic) = stats.topics.get(&self.topic) {
            for (p, part) in &topic.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    self.metrics.lag(*p, part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let parts = |tpl: &TopicPartitionList| -> Vec<i32> {
            tpl.elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect()
        };
        let event = match rebalance {
            Rebalance::Assign(tpl) => RebalanceEvent::Assigned(parts(tpl)),
            Rebalance::Revoke(tpl) => RebalanceEvent::Revoked(parts(tpl)),
            Rebalance::Error(e) => {
                warn!(error = %e, "rebalance error");
                return;
            }
        };
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event);
    }
}

/// What the loop knows about one assigned partition.
#[derive(Debug, Default, Clone, Copy)]
struct Position {
    /// Last offset stored in `auth_events` (from the table's `txn`).
    stored: Option<i64>,
    /// Last offset whose rejections are recorded in `rejected_events`.
    rejected: Option<i64>,
    /// Whether the fetch position has been checked against `stored`.
    checked: bool,
    /// Next offset expected from the broker.
    next: Option<i64>,
}

struct Buffered {
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
}

struct Loop {
    cfg: KafkaConfig,
    consumer: StreamConsumer<Ctx>,
    dlq: Option<FutureProducer>,
    pipeline: Arc<Pipeline>,
    engine: QueryEngine,
    metrics: KafkaMetrics,
    positions: HashMap<i32, Position>,
    buffer: Vec<Buffered>,
    first_buffered_at: Option<tokio::time::Instant>,
}

/// librdkafka settings for one client: the brokers, then `ours`, then the
/// operator's `kafka.librdkafka` passthrough, which wins.
fn client_config(cfg: &KafkaConfig, brokers: &str, ours: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in ours {
        c.set(*k, *v);
    }
    for (k, v) in &cfg.librdkafka {
        c.set(k, v);
    }
    c
}

fn consumer_config(cfg: &KafkaConfig, brokers: &str) -> ClientConfig {
    let fetch_buffer = cfg.fetch_buffer_kib.to_string();
    let reset = match cfg.start_from {
        StartFrom::Earliest => "earliest",
        StartFrom::Latest => "latest",
    };
    client_config(
        cfg,
        brokers,
        &[
            ("group.id", &cfg.group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", reset),
            ("queued.max.messages.kbytes", &fetch_buffer),
            ("statistics.interval.ms", "5000"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "2000"),
        ],
    )
}

/// Consumes until `shutdown`, then commits what it holds and leaves the group.
pub async fn run_consumer(
    cfg: KafkaConfig,
    pipeline: Arc<Pipeline>,
    engine: QueryEngine,
    metrics: KafkaMetrics,
    shutdown: CancellationToken,
) -> Result<()> {
    let brokers = cfg.brokers.clone().unwrap_or_default();
    let kafka = |e: rdkafka::error::KafkaError| IngestError::Kafka {
        topic: cfg.topic.clone(),
        message: e.to_string(),
    };
    let ctx = Ctx {
        topic: cfg.topic.clone(),
        events: Mutex::new(Vec::new()),
        metrics: metrics.clone(),
    };
    let consumer: StreamConsumer<Ctx> = consumer_config(&cfg, &brokers)
        .create_with_context(ctx)
        .map_err(kafka)?;
    consumer.subscribe(&[&cfg.topic]).map_err(kafka)?;
    let dlq = match &cfg.dlq_topic {
        None => None,
        Some(_) => Some(
            client_config(
                &cfg,
                &brokers,
                &[("enable.idempotence", "true"), ("acks", "all")],
            )
            .create::<FutureProducer>()
            .map_err(kafka)?,
        ),
    };
    info!(topic = %cfg.topic, group = %cfg.group_id, %brokers, "kafka consumer started");
    let mut state = Loop {
        cfg,
        consumer,
        dlq,
        pipeline,
        engine,
        metrics,
        positions: HashMap::new(),
        buffer: Vec::new(),
        first_buffered_at: None,
    };
    let result = state.run(shutdown).await;
    if let Err(e) = &result {
        error!(error = %e, "kafka consumer stopped on error");
    }
    result
}

impl Loop {
    async fn run(&mut self, shutdown: CancellationToken) -> Result<()> {
        loop {
            let deadline = self.first_buffered_at.map(|t| t + self.cfg.max_batch_delay);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    self.apply_rebalances().await?;
                    self.flush().await?;
                    info!("kafka consumer stopped");
                    return Ok(());
                }
                () = sleep_until(deadline) => self.flush().await?,
                msg = self.consumer.recv() => {
                    let owned = match msg {
                        Ok(m) => Some((m.partition(), m.offset(), m.payload().map(<[u8]>::to_vec).unwrap_or_default())),
                        Err(e) => {
                            warn!(error = %e, "kafka receive error (librdkafka retries by itself)");
                            self.metrics.receive_error();
                            None
                        }
                    };
                    self.apply_rebalances().await?;
                    if let Some((partition, offset, payload)) = owned {
                        self.accept(partition, offset, payload)?;
                        if self.buffer.len() >= self.cfg.max_batch_messages {
                            self.flush().await?;
                        }
                    }
                }
            }
        }
    }

    /// Applies queued assignment changes. New partitions are positioned from
    /// the table; revoked ones lose their uncommitted messages (the new owner
    /// re-reads them from the table's position).
    async fn apply_rebalances(&mut self) -> Result<()> {
        let events = std::mem::take(
            &mut *self
                .consumer
                .context()
                .events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for event in events {
            match event {
                RebalanceEvent::Revoked(parts) => {
                    self.metrics.rebalance("revoke");
                    let before = self.buffer.len();
                    self.buffer.retain(|b| !parts.contains(&b.partition));
                    for p in &parts {
                        self.positions.remove(p);
                    }
                    info!(partitions = ?parts, dropped = before - self.buffer.len(), "partitions revoked");
                    if self.buffer.is_empty() {
                        self.first_buffered_at = None;
                    }
                }
                RebalanceEvent::Assigned(parts) => {
                    self.metrics.rebalance("assign");
                    self.position_from_table(&parts).await?;
                    info!(partitions = ?parts, "partitions assigned");
                }
            }
        }
        Ok(())
    }

    /// Reads the stored positions of `parts` from the tables and brings the
    /// dedup index up to date with what other writers stored.
    async fn position_from_table(&mut self, parts: &[i32]) -> Result<()> {
        let ids: Vec<String> = parts.iter().map(|p| app_id(&self.cfg.topic, *p)).collect();
        let versions = self.pipeline.writer().refresh(ids.clone()).await?;
        for (p, id) in parts.iter().zip(&ids) {
            let v = versions.get(id).copied().unwrap_or_default();
            self.positions.insert(
                *p,
                Position {
                    stored: v.events,
                    rejected: v.rejected,
                    checked: false,
                    next: None,
                },
            );
        }
        let synced = self.pipeline.sync_dedup(&self.engine).await?;
        debug!(keys = synced, "dedup index synced");
        Ok(())
    }

    fn seek(&self, partition: i32, offset: Offset) -> Result<()> {
        self.consumer
            .seek(&self.cfg.topic, partition, offset, Duration::from_secs(10))
            .map_err(|e| IngestError::Kafka {
                topic: self.cfg.topic.clone(),
                message: format!("seeking partition {partition} to {offset:?}: {e}"),
            })
    }

    /// Takes one message into the buffer, or drops it when it is at or below
    /// the stored position.
    fn accept(&mut self, partition: i32, offset: i64, payload: Vec<u8>) -> Result<()> {
        let Some(pos) = self.positions.get_mut(&partition) else {
            // A message of a partition we no longer own (fetched before the
            // revocation).
            return Ok(());
        };
        if !pos.checked {
            pos.checked = true;
            if let Some(stored) = pos.stored {
                let want = stored + 1;
                if offset != want && offset <= stored {
                    // The group's Kafka offset lags the table (crash between
                    // the Delta commit and the Kafka commit): skip ahead.
                    pos.next = Some(want);
                    self.metrics.replayed_dropped(1);
                    return self.seek(partition, Offset::Offset(want));
                }
                if offset > want + 1 {
                    // Messages we never stored are gone from the broker.
                    return self.gap(partition, want, offset);
                }
            }
        }
        if pos.stored.is_some_and(|s| offset <= s) || pos.next.is_some_and(|n| offset < n) {
            self.metrics.replayed_dropped(1);
            return Ok(());
        }
        pos.next = Some(offset + 1);
        if self.buffer.is_empty() {
            self.first_buffered_at = Some(tokio::time::Instant::now());
        }
        self.buffer.push(Buffered {
            partition,
            offset,
            payload,
        });
        Ok(())
    }

    fn gap(&mut self, partition: i32, want: i64, got: i64) -> Result<()> {
        self.metrics.offset_gap();
        let lost = got - want;
        error!(
            topic = %self.cfg.topic,
            partition,
            expected_offset = want,
            first_available = got,
            lost_messages = lost,
            policy = ?self.cfg.offset_out_of_range,
            "OFFSET OUT OF RANGE: messages keyshift never stored have left the broker (retention)"
        );
        match self.cfg.offset_out_of_range {
            OffsetPolicy::Earliest => Ok(()),
            OffsetPolicy::Latest => {
                if let Some(pos) = self.positions.get_mut(&partition) {
                    pos.next = None;
                }
                self.seek(partition, Offset::End)
            }
            OffsetPolicy::Stop => Err(IngestError::OffsetOutOfRange {
                topic: self.cfg.topic.clone(),
                partition,
                expected: want,
                available: got,
            }),
        }
    }

    /// Validates and commits the buffer with each partition's last offset.
    async fn flush(&mut self) -> Result<()> {
        self.first_buffered_at = None;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let buffer = std::mem::take(&mut self.buffer);
        let topic = self.cfg.topic.clone();
        let mut last: HashMap<i32, i64> = HashMap::new();
        for b in &buffer {
            let e = last.entry(b.partition).or_insert(b.offset);
            *e = (*e).max(b.offset);
        }
        let mut originals: HashMap<(i32, i64), Vec<u8>> = HashMap::new();
        let items: Vec<(Input, Source)> = buffer
            .into_iter()
            .map(|b| {
                let input = Input::parse(&b.payload);
                if self.dlq.is_some() {
                    originals.insert((b.partition, b.offset), b.payload);
                }
                let source = Source::Kafka {
                    topic: topic.clone(),
                    partition: b.partition,
                    offset: b.offset,
                };
                (input, source)
            })
            .collect();
        let n = items.len();
        let mut prepared = self
            .pipeline
            .prepare_sourced(&Principal::Admin, items, Utc::now());
        let positions = &self.positions;
        prepared.retain_rejected(|r| match &r.source {
            Source::Kafka {
                partition, offset, ..
            } => positions
                .get(partition)
                .and_then(|p| p.rejected)
                .is_none_or(|done| *offset > done),
            Source::Http => true,
        });
        if let Some(dlq) = &self.dlq {
            self.send_dead_letters(dlq, prepared.rejected(), &originals)
                .await?;
        }
        let txns: Vec<(String, i64)> = last.iter().map(|(p, o)| (app_id(&topic, *p), *o)).collect();
        let had_rejections: Vec<i32> = prepared
            .rejected()
            .iter()
            .filter_map(|r| match &r.source {
                Source::Kafka { partition, .. } => Some(*partition),
                Source::Http => None,
            })
            .collect();
        match self
            .pipeline
            .commit_with_txns(prepared, "kafka", txns)
            .await
        {
            Ok(summary) => {
                let mut tpl = TopicPartitionList::new();
                for (p, o) in &last {
                    if let Some(pos) = self.positions.get_mut(p) {
                        pos.stored = Some(*o);
                        if had_rejections.contains(p) {
                            pos.rejected = Some(*o);
                        }
                    }
                    let _ = tpl.add_partition_offset(&topic, *p, Offset::Offset(o + 1));
                }
                // Lag tools read the group's offsets; the table stays the truth.
                if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                    warn!(error = %e, "committing offsets to Kafka failed (the table holds them)");
                }
                self.metrics.commit(started.elapsed());
                debug!(
                    messages = n,
                    accepted = summary.accepted,
                    duplicates = summary.duplicates,
                    "kafka batch committed"
                );
                Ok(())
            }
            Err(e) if e.is_retryable() => {
                // Most likely another member committed these partitions
                // (a rebalance we have not seen yet): start over from the table.
                warn!(error = %e, "kafka batch not committed; repositioning from the table");
                self.metrics.commit_conflict();
                let parts: Vec<i32> = self.positions.keys().copied().collect();
                self.position_from_table(&parts).await?;
                for p in parts {
                    let target = match self.positions.get(&p).and_then(|pos| pos.stored) {
                        Some(stored) => Offset::Offset(stored + 1),
                        None => match self.cfg.start_from {
                            StartFrom::Earliest => Offset::Beginning,
                            StartFrom::Latest => Offset::End,
                        },
                    };
                    if let Some(pos) = self.positions.get_mut(&p) {
                        pos.checked = true;
                        pos.next = None;
                    }
                    if let Err(e) = self.seek(p, target) {
                        warn!(error = %e, partition = p, "seek after a failed commit");
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn send_dead_letters(
        &self,
        dlq: &FutureProducer,
        rejected: &[keyshift_store::RejectedRecord],
        originals: &HashMap<(i32, i64), Vec<u8>>,
    ) -> Result<()> {
        let Some(dlq_topic) = &self.cfg.dlq_topic else {
            return Ok(());
        };
        let mut sends = Vec::new();
        for r in rejected {
            let Source::Kafka {
                partition, offset, ..
            } = &r.source
            else {
                continue;
            };
            let Some(payload) = originals.get(&(*partition, *offset)) else {
                continue;
            };
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "keyshift-error",
                    value: Some(r.error.as_str()),
                })
                .insert(Header {
                    key: "keyshift-source-topic",
                    value: Some(self.cfg.topic.as_str()),
                })
                .insert(Header {
                    key: "keyshift-source-partition",
                    value: Some(&partition.to_string()),
                })
                .insert(Header {
                    key: "keyshift-source-offset",
                    value: Some(&offset.to_string()),
                });
            let record = FutureRecord::<(), [u8]>::to(dlq_topic)
                .payload(payload.as_slice())
                .headers(headers);
            sends.push(dlq.send(record, Duration::from_secs(30)));
        }
        for s in sends {
            s.await.map_err(|(e, _)| IngestError::Kafka {
                topic: dlq_topic.clone(),
                message: format!("producing a dead letter: {e}"),
            })?;
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
