//! The consumer loop. Owns the per-partition positions; see the module docs
//! of `kafka` for the protocol.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use keyshift_http::Principal;
use keyshift_store::{ErrorKind, QueryEngine, Source, StoreError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{
    KafkaConfig, OffsetPolicy, SCOPE_HEADER, StartFrom, app_id, client_config, kafka_kind,
};
use crate::metrics::KafkaMetrics;
use crate::pipeline::{IngestSummary, Input, Item, Pipeline, Prepared};
use crate::watermark::IngestWatermark;
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
    /// The rp_id the producing collector authenticated ([`SCOPE_HEADER`]).
    scope: Option<String>,
    /// The message's timestamp (ms since the epoch), when it has one.
    timestamp_ms: Option<i64>,
}

/// The message's [`SCOPE_HEADER`], if any. A header can only narrow what a
/// message may write, so an unauthenticated producer gains nothing by
/// setting one.
fn scope_of(m: &impl Message) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == SCOPE_HEADER)
        .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
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
    /// Batches being prepared or committed, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Resolves with whether the newest batch in flight committed; the next
    /// batch commits only after it did, so positions never skip a batch.
    last_done: Option<oneshot::Receiver<bool>>,
    watermark: IngestWatermark,
    /// Whether a message arrived since the last idle check.
    received_since_tick: bool,
}

fn consumer_config(cfg: &KafkaConfig, brokers: &str) -> ClientConfig {
    let fetch_buffer = cfg.fetch_buffer_kib.to_string();
    let queued_min = cfg.max_batch_messages.to_string();
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
            // Prefetch about one batch per partition, in large fetches: the
            // defaults (1 MiB per partition per fetch, 500 ms fetch wait,
            // 100,000 messages queued per partition) left the loop waiting
            // for data half the time, or held far more than a batch.
            ("queued.min.messages", &queued_min),
            ("max.partition.fetch.bytes", "4194304"),
            ("fetch.wait.max.ms", "100"),
            // librdkafka waits this long before fetching again for a
            // partition whose queue was full (default 1 s). A backlog drains
            // a 2 MiB queue in far less: with the default the loop starved,
            // and only a much larger (and costlier) queue hid it.
            ("fetch.queue.backoff.ms", "10"),
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
    watermark: IngestWatermark,
    shutdown: CancellationToken,
) -> Result<()> {
    let brokers = cfg.brokers.clone().unwrap_or_default();
    let kafka = |e: rdkafka::error::KafkaError| IngestError::Kafka {
        topic: cfg.topic.clone(),
        message: e.to_string(),
        kind: kafka_kind(&e),
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
        in_flight: VecDeque::new(),
        last_done: None,
        watermark,
        received_since_tick: false,
    };
    let result = state.run(shutdown).await;
    if let Err(e) = &result {
        error!(
            error_id = e.error_id(),
            kind = e.kind().as_str(),
            error = %e,
            "kafka consumer stopped on error"
        );
    }
    result
}

/// A batch on its way into the table: the CPU work and the commit run in
/// the background while the loop reads the next batch.
struct InFlight {
    /// The partitions with dead letters in the batch, and the outcome.
    task: tokio::task::JoinHandle<(Vec<i32>, Result<IngestSummary>)>,
    /// Each partition's last offset in the batch.
    last: HashMap<i32, i64>,
    /// The newest message timestamp in the batch.
    newest_ms: Option<i64>,
    messages: usize,
    started: Instant,
}

impl Loop {
    async fn run(&mut self, shutdown: CancellationToken) -> Result<()> {
        let mut idle = tokio::time::interval(self.cfg.max_batch_delay);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.first_buffered_at.map(|t| t + self.cfg.max_batch_delay);
            let busy = self.in_flight.len() >= self.cfg.max_batches_in_flight;
            // With a full buffer and no room in flight, stop reading.
            let full = self.buffer.len() >= self.cfg.max_batch_messages;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    self.finish_in_flight().await?;
                    self.apply_rebalances().await?;
                    self.start_flush();
                    self.finish_in_flight().await?;
                    info!("kafka consumer stopped");
                    return Ok(());
                }
                res = join_in_flight(&mut self.in_flight, &self.cfg.topic) => {
                    self.settle(res).await?;
                    let due = deadline.is_some_and(|d| d <= tokio::time::Instant::now());
                    if full || due {
                        self.start_flush();
                    }
                }
                () = sleep_until(deadline), if !busy => self.start_flush(),
                _ = idle.tick() => {
                    // Nothing arrived for a whole tick and nothing is pending:
                    // every message up to now is in the table.
                    let caught_up = !self.received_since_tick
                        && self.buffer.is_empty()
                        && self.in_flight.is_empty()
                        && !self.positions.is_empty();
                    if caught_up {
                        self.watermark.advance_to(Utc::now() - chrono::Duration::from_std(self.cfg.max_batch_delay).unwrap_or_default());
                    }
                    self.received_since_tick = false;
                }
                msg = self.consumer.recv(), if !full => {
                    self.received_since_tick = true;
                    let owned = match msg {
                        Ok(m) => Some(Buffered {
                            partition: m.partition(),
                            offset: m.offset(),
                            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                            scope: scope_of(&m),
                            timestamp_ms: m.timestamp().to_millis(),
                        }),
                        Err(e) => {
                            warn!(error = %e, "kafka receive error (librdkafka retries by itself)");
                            self.metrics.receive_error();
                            None
                        }
                    };
                    self.apply_rebalances().await?;
                    if let Some(message) = owned {
                        self.accept(message)?;
                        if self.buffer.len() >= self.cfg.max_batch_messages {
                            self.start_flush();
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
        let pending = !self
            .consumer
            .context()
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty();
        if pending {
            // Positions must be settled before they are dropped or re-read.
            self.finish_in_flight().await?;
        }
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
        match self.pipeline.sync_dedup(&self.engine).await {
            Ok(synced) => debug!(keys = synced, "dedup index synced"),
            // Partitions assigned while the process stops are not consumed:
            // the index need not catch up.
            Err(IngestError::Store(StoreError::ShuttingDown)) => {
                debug!("dedup sync cancelled by the shutdown");
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn seek(&self, partition: i32, offset: Offset) -> Result<()> {
        self.consumer
            .seek(&self.cfg.topic, partition, offset, Duration::from_secs(10))
            .map_err(|e| IngestError::Kafka {
                topic: self.cfg.topic.clone(),
                message: format!("seeking partition {partition} to {offset:?}: {e}"),
                kind: kafka_kind(&e),
            })
    }

    /// Takes one message into the buffer, or drops it when it is at or below
    /// the stored position.
    fn accept(&mut self, message: Buffered) -> Result<()> {
        let (partition, offset) = (message.partition, message.offset);
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
                // Messages we never stored are gone from the broker; the
                // policy says whether this first retained one is taken.
                if offset > want + 1 && !self.gap(partition, want, offset)? {
                    return Ok(());
                }
            }
        }
        let Some(pos) = self.positions.get_mut(&partition) else {
            return Ok(());
        };
        if pos.stored.is_some_and(|s| offset <= s) || pos.next.is_some_and(|n| offset < n) {
            self.metrics.replayed_dropped(1);
            return Ok(());
        }
        pos.next = Some(offset + 1);
        if self.buffer.is_empty() {
            self.first_buffered_at = Some(tokio::time::Instant::now());
        }
        self.buffer.push(message);
        Ok(())
    }

    /// Reports a retention gap and applies the policy; whether the message
    /// at `got` is to be kept.
    fn gap(&mut self, partition: i32, want: i64, got: i64) -> Result<bool> {
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
            OffsetPolicy::Earliest => Ok(true),
            OffsetPolicy::Latest => {
                if let Some(pos) = self.positions.get_mut(&partition) {
                    pos.next = None;
                }
                self.seek(partition, Offset::End).map(|()| false)
            }
            OffsetPolicy::Stop => Err(IngestError::OffsetOutOfRange {
                topic: self.cfg.topic.clone(),
                partition,
                expected: want,
                available: got,
            }),
        }
    }

    /// Hands the buffer to a background task that validates it and commits
    /// it with each partition's last offset.
    fn start_flush(&mut self) {
        self.first_buffered_at = None;
        if self.buffer.is_empty() || self.in_flight.len() >= self.cfg.max_batches_in_flight {
            return;
        }
        let buffer = std::mem::take(&mut self.buffer);
        let mut last: HashMap<i32, i64> = HashMap::new();
        for b in &buffer {
            let e = last.entry(b.partition).or_insert(b.offset);
            *e = (*e).max(b.offset);
        }
        let done: HashMap<i32, i64> = self
            .positions
            .iter()
            .filter_map(|(p, pos)| pos.rejected.map(|r| (*p, r)))
            .collect();
        let batch = Batch {
            topic: self.cfg.topic.clone(),
            txns: last
                .iter()
                .map(|(p, o)| (app_id(&self.cfg.topic, *p), *o))
                .collect(),
            rejected_done: done,
            dlq: self.dlq.clone().zip(self.cfg.dlq_topic.clone()),
        };
        let messages = buffer.len();
        let newest_ms = buffer.iter().filter_map(|b| b.timestamp_ms).max();
        let pipeline = self.pipeline.clone();
        let previous = self.last_done.take();
        let (done_tx, done_rx) = oneshot::channel();
        self.last_done = Some(done_rx);
        let task = tokio::spawn(async move {
            let (had_rejections, result) = match batch.prepare(&pipeline, buffer).await {
                Ok((prepared, had_rejections)) => {
                    let before_ok = match previous {
                        None => true,
                        Some(rx) => rx.await.unwrap_or(false),
                    };
                    if before_ok {
                        (had_rejections, batch.commit(&pipeline, prepared).await)
                    } else {
                        pipeline.abandon(prepared);
                        (
                            Vec::new(),
                            Err(IngestError::EarlierBatchFailed {
                                topic: batch.topic.clone(),
                            }),
                        )
                    }
                }
                Err(e) => (Vec::new(), Err(e)),
            };
            let _ = done_tx.send(result.is_ok());
            (had_rejections, result)
        });
        self.in_flight.push_back(InFlight {
            task,
            last,
            newest_ms,
            messages,
            started: Instant::now(),
        });
    }

    /// Waits for every batch in flight and settles them in order.
    async fn finish_in_flight(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            let res = join_in_flight(&mut self.in_flight, &self.cfg.topic).await;
            self.settle(res).await?;
        }
        Ok(())
    }

    /// Records a finished batch: positions, Kafka offsets, metrics; or, when
    /// the table refused it, repositions every partition from the table.
    async fn settle(&mut self, res: (InFlight, Vec<i32>, Result<IngestSummary>)) -> Result<()> {
        let (done, had_rejections, result) = res;
        let topic = self.cfg.topic.clone();
        match result {
            Ok(summary) => {
                let mut tpl = TopicPartitionList::new();
                for (p, o) in &done.last {
                    if let Some(pos) = self.positions.get_mut(p) {
                        pos.stored = Some(*o);
                        if had_rejections.contains(p) {
                            pos.rejected = Some(*o);
                        }
                        let _ = tpl.add_partition_offset(&topic, *p, Offset::Offset(o + 1));
                    }
                }
                // Lag tools read the group's offsets; the table stays the truth.
                if tpl.count() > 0
                    && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
                {
                    warn!(error = %e, "committing offsets to Kafka failed (the table holds them)");
                }
                self.metrics.commit(done.started.elapsed());
                if let Some(ms) = done.newest_ms {
                    self.watermark.advance_to_ms(ms);
                }
                debug!(
                    messages = done.messages,
                    accepted = summary.accepted,
                    duplicates = summary.duplicates,
                    "kafka batch committed"
                );
                Ok(())
            }
            Err(e) => {
                let kind = e.kind();
                self.metrics.batch_error(kind);
                match on_batch_error(kind) {
                    BatchAction::Reposition => {
                        // Most likely another member committed these
                        // partitions (a rebalance we have not seen yet), or
                        // the store was away: start over from the table.
                        warn!(kind = kind.as_str(), error = %e, "kafka batch not committed; repositioning from the table");
                        self.reposition().await
                    }
                    BatchAction::Stop => {
                        error!(
                            error_id = e.error_id(),
                            kind = kind.as_str(),
                            error = %e,
                            "kafka batch failed and retrying cannot help: stopping the consumer"
                        );
                        Err(e)
                    }
                }
            }
        }
    }

    /// Drops everything read after the last committed batch and seeks every
    /// partition back to the table's position.
    async fn reposition(&mut self) -> Result<()> {
        // Later batches wait for the failed one and give up without
        // committing; collect them before re-reading.
        while !self.in_flight.is_empty() {
            let _ = join_in_flight(&mut self.in_flight, &self.cfg.topic).await;
        }
        self.last_done = None;
        self.buffer.clear();
        self.first_buffered_at = None;
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
}

/// What the loop does about a batch that did not commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchAction {
    /// Re-read from the table's position: the retry can succeed.
    Reposition,
    /// Stop with the error: re-reading would fail the same way, forever.
    Stop,
}

fn on_batch_error(kind: ErrorKind) -> BatchAction {
    if kind.is_retryable() {
        BatchAction::Reposition
    } else {
        BatchAction::Stop
    }
}

/// What a batch task needs besides the messages.
struct Batch {
    topic: String,
    txns: Vec<(String, i64)>,
    /// Per partition, the last offset whose dead letters are recorded.
    rejected_done: HashMap<i32, i64>,
    dlq: Option<(FutureProducer, String)>,
}

impl Batch {
    /// Parses and prepares the messages on the blocking pool, in one chunk
    /// per core, then drops dead letters recorded before a crash and sends
    /// the rest to the DLQ topic. Returns the partitions with dead letters.
    async fn prepare(
        &self,
        pipeline: &Arc<Pipeline>,
        buffer: Vec<Buffered>,
    ) -> Result<(Prepared, Vec<i32>)> {
        let mut originals: HashMap<(i32, i64), Vec<u8>> = HashMap::new();
        let chunks = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let per_chunk = buffer.len().div_ceil(chunks).max(1);
        let mut tasks = Vec::with_capacity(chunks);
        let mut buffer = buffer.into_iter().peekable();
        let now = Utc::now();
        while buffer.peek().is_some() {
            let chunk: Vec<Buffered> = buffer.by_ref().take(per_chunk).collect();
            if self.dlq.is_some() {
                for b in &chunk {
                    originals.insert((b.partition, b.offset), b.payload.clone());
                }
            }
            let (pipeline, topic) = (pipeline.clone(), Arc::<str>::from(self.topic.as_str()));
            tasks.push(tokio::task::spawn_blocking(move || {
                let items = chunk.into_iter().map(|b| Item {
                    input: Input(b.payload),
                    source: Source::Kafka {
                        topic: topic.clone(),
                        partition: b.partition,
                        offset: b.offset,
                    },
                    principal: b.scope.map_or(Principal::Admin, Principal::Rp),
                });
                pipeline.prepare_items(items, now)
            }));
        }
        let mut parts = Vec::with_capacity(tasks.len());
        for t in tasks {
            parts.push(
                t.await
                    .map_err(|e| IngestError::task(&self.topic, "batch worker", &e))?,
            );
        }
        let mut prepared = Prepared::merge(parts);
        let done = &self.rejected_done;
        prepared.retain_rejected(|r| match &r.source {
            Source::Kafka {
                partition, offset, ..
            } => done.get(partition).is_none_or(|d| *offset > *d),
            Source::Http => true,
        });
        if let Some((producer, dlq_topic)) = &self.dlq {
            send_dead_letters(
                producer,
                dlq_topic,
                &self.topic,
                prepared.rejected(),
                &originals,
            )
            .await?;
        }
        let mut had_rejections: Vec<i32> = prepared
            .rejected()
            .iter()
            .filter_map(|r| match &r.source {
                Source::Kafka { partition, .. } => Some(*partition),
                Source::Http => None,
            })
            .collect();
        had_rejections.sort_unstable();
        had_rejections.dedup();
        Ok((prepared, had_rejections))
    }

    async fn commit(&self, pipeline: &Pipeline, prepared: Prepared) -> Result<IngestSummary> {
        pipeline
            .commit_with_txns(prepared, "kafka", self.txns.clone())
            .await
    }
}

/// The oldest batch in flight, once finished (pending when there is none).
async fn join_in_flight(
    slot: &mut VecDeque<InFlight>,
    topic: &str,
) -> (InFlight, Vec<i32>, Result<IngestSummary>) {
    let Some(f) = slot.front_mut() else {
        return std::future::pending().await;
    };
    let (had_rejections, res) = match (&mut f.task).await {
        Ok(r) => r,
        Err(e) => (Vec::new(), Err(IngestError::task(topic, "batch task", &e))),
    };
    let Some(done) = slot.pop_front() else {
        unreachable!("the queue was checked above")
    };
    (done, had_rejections, res)
}

async fn send_dead_letters(
    dlq: &FutureProducer,
    dlq_topic: &str,
    source_topic: &str,
    rejected: &[keyshift_store::RejectedRecord],
    originals: &HashMap<(i32, i64), Vec<u8>>,
) -> Result<()> {
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
                value: Some(source_topic),
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
    for res in futures::future::join_all(sends).await {
        res.map_err(|(e, _)| IngestError::Kafka {
            topic: dlq_topic.to_owned(),
            message: format!("producing a dead letter: {e}"),
            kind: kafka_kind(&e),
        })?;
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_a_retry_can_fix_are_re_read() {
        assert_eq!(on_batch_error(ErrorKind::Conflict), BatchAction::Reposition);
        assert_eq!(
            on_batch_error(ErrorKind::Transient),
            BatchAction::Reposition
        );
        assert_eq!(on_batch_error(ErrorKind::Fatal), BatchAction::Stop);
        assert_eq!(on_batch_error(ErrorKind::Bug), BatchAction::Stop);
    }
}
