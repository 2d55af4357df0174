//! The consumer loop: reads messages, applies rebalances, starts batches
//! and settles them in order. It carries out what `positions` decides
//! (seek, buffer, drop, commit offsets); see the module docs of `kafka` for
//! the protocol.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use keyshift_store::{ErrorKind, QueryEngine, StoreError, StreamPosition};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::batch::{Batch, Buffered, InFlight, join_in_flight};
use super::context::{Ctx, RebalanceEvent, consumer_config};
use super::positions::{GapAction, Partitions, Seek, Verdict, last_offsets};
use super::{KafkaConfig, app_id, client_config, kafka_kind, scope_of};
use crate::metrics::{KafkaEvent, KafkaMetrics, Rebalance};
use crate::pipeline::{IngestSummary, Pipeline};
use crate::watermark::IngestWatermark;
use crate::{IngestError, Result};

struct Loop {
    cfg: KafkaConfig,
    consumer: StreamConsumer<Ctx>,
    dlq: Option<FutureProducer>,
    pipeline: Arc<Pipeline>,
    engine: QueryEngine,
    metrics: KafkaMetrics,
    partitions: Partitions,
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
    /// The consumer's stop signal.
    shutdown: CancellationToken,
}

/// First and longest wait before reading partition positions again.
const POSITION_RETRY_FIRST: Duration = Duration::from_millis(500);
const POSITION_RETRY_MAX: Duration = Duration::from_secs(30);

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
                &brokers,
                &[("enable.idempotence", "true"), ("acks", "all")],
                &cfg.librdkafka,
            )
            .create::<FutureProducer>()
            .map_err(kafka)?,
        ),
    };
    info!(topic = %cfg.topic, group = %cfg.group_id, %brokers, "kafka consumer started");
    let partitions = Partitions::new(cfg.offset_out_of_range, cfg.start_from);
    let mut state = Loop {
        cfg,
        consumer,
        dlq,
        pipeline,
        engine,
        metrics,
        partitions,
        buffer: Vec::new(),
        first_buffered_at: None,
        in_flight: VecDeque::new(),
        last_done: None,
        watermark,
        received_since_tick: false,
        shutdown,
    };
    let result = state.run().await;
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

impl Loop {
    async fn run(&mut self) -> Result<()> {
        let shutdown = self.shutdown.clone();
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
                        && !self.partitions.is_empty();
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
                        Err(error) => {
                            self.metrics.emit(KafkaEvent::Received { error: &error });
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
                    let before = self.buffer.len();
                    self.buffer.retain(|b| !parts.contains(&b.partition));
                    self.partitions.revoke(&parts);
                    self.metrics.emit(KafkaEvent::Rebalanced {
                        kind: Rebalance::Revoke,
                        partitions: &parts,
                        dropped: before - self.buffer.len(),
                    });
                    if self.buffer.is_empty() {
                        self.first_buffered_at = None;
                    }
                }
                RebalanceEvent::Assigned(parts) => {
                    self.position_from_table(&parts).await?;
                    self.metrics.emit(KafkaEvent::Rebalanced {
                        kind: Rebalance::Assign,
                        partitions: &parts,
                        dropped: 0,
                    });
                }
            }
        }
        Ok(())
    }

    /// [`Self::try_position_from_table`], retried with backoff while it
    /// fails in a way a retry can fix (a slow or unreachable store, a query
    /// over its time limit): the partitions wait unconsumed, where stopping
    /// would hand them to another member facing the same store. Given up,
    /// without an error, when the consumer stops meanwhile.
    async fn position_from_table(&mut self, parts: &[i32]) -> Result<()> {
        let mut retry_in = POSITION_RETRY_FIRST;
        loop {
            let error = match self.try_position_from_table(parts).await {
                Err(e) if e.kind().is_retryable() => e,
                done => return done,
            };
            if self.shutdown.is_cancelled() {
                debug!(error = %error, "partitions not positioned: the consumer is stopping");
                return Ok(());
            }
            self.metrics.emit(KafkaEvent::PositionRetry {
                error: &error,
                partitions: parts,
                retry_in,
            });
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(retry_in) => {}
            }
            retry_in = (retry_in * 2).min(POSITION_RETRY_MAX);
        }
    }

    /// Reads the stored positions of `parts` from the tables and brings the
    /// dedup index up to date with what other writers stored.
    async fn try_position_from_table(&mut self, parts: &[i32]) -> Result<()> {
        let ids: Vec<String> = parts.iter().map(|p| app_id(&self.cfg.topic, *p)).collect();
        let versions = self.pipeline.writer().refresh(ids.clone()).await?;
        for (p, id) in parts.iter().zip(&ids) {
            let v = versions.get(id).copied().unwrap_or_default();
            self.partitions.assign(*p, v.events, v.rejected);
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

    /// Does what [`Partitions::accept`] says with one message.
    fn accept(&mut self, message: Buffered) -> Result<()> {
        let (partition, offset) = (message.partition, message.offset);
        match self.partitions.accept(partition, offset) {
            Verdict::Take => self.buffer_push(message),
            Verdict::Replayed => self.metrics.emit(KafkaEvent::Replayed),
            Verdict::NotOwned => {}
            Verdict::SkipTo(want) => {
                self.metrics.emit(KafkaEvent::Replayed);
                self.seek(partition, Offset::Offset(want))?;
            }
            Verdict::Gap {
                expected,
                got,
                then,
            } => {
                self.metrics.emit(KafkaEvent::OffsetGap {
                    topic: &self.cfg.topic,
                    partition,
                    expected,
                    got,
                    policy: self.cfg.offset_out_of_range,
                });
                match then {
                    GapAction::Take => self.buffer_push(message),
                    GapAction::SeekEnd => self.seek(partition, Offset::End)?,
                    GapAction::Stop => {
                        return Err(IngestError::OffsetOutOfRange {
                            topic: self.cfg.topic.clone(),
                            partition,
                            expected,
                            available: got,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn buffer_push(&mut self, message: Buffered) {
        if self.buffer.is_empty() {
            self.first_buffered_at = Some(tokio::time::Instant::now());
        }
        self.buffer.push(message);
    }

    /// Hands the buffer to a background task that validates it and commits
    /// it with each partition's last offset.
    fn start_flush(&mut self) {
        self.first_buffered_at = None;
        if self.buffer.is_empty() || self.in_flight.len() >= self.cfg.max_batches_in_flight {
            return;
        }
        let buffer = std::mem::take(&mut self.buffer);
        let last = last_offsets(buffer.iter().map(|b| (b.partition, b.offset)));
        let batch = Batch {
            topic: self.cfg.topic.clone(),
            txns: self
                .partitions
                .hand_over(&last)
                .into_iter()
                .map(|h| StreamPosition::new(app_id(&self.cfg.topic, h.partition), h.after, h.last))
                .collect(),
            rejected_done: self.partitions.rejected_done(),
            dlq: self.dlq.clone().zip(self.cfg.dlq_topic.clone()),
        };
        let previous = self.last_done.take();
        let (in_flight, done) = batch.spawn(self.pipeline.clone(), buffer, last, previous);
        self.last_done = Some(done);
        self.in_flight.push_back(in_flight);
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
                for (p, next) in self.partitions.committed(&done.last, &had_rejections) {
                    let _ = tpl.add_partition_offset(&topic, p, Offset::Offset(next));
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
                let action = on_batch_error(e.kind());
                self.metrics.emit(KafkaEvent::BatchFailed {
                    error: &e,
                    stopping: action == BatchAction::Stop,
                });
                match action {
                    // Most likely another member committed these
                    // partitions (a rebalance we have not seen yet), or the
                    // store was away: start over from the table.
                    BatchAction::Reposition => self.reposition().await,
                    BatchAction::Stop => Err(e),
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
        let parts = self.partitions.owned();
        self.position_from_table(&parts).await?;
        for (p, seek) in self.partitions.reposition() {
            let target = match seek {
                Seek::Offset(o) => Offset::Offset(o),
                Seek::Beginning => Offset::Beginning,
                Seek::End => Offset::End,
            };
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
