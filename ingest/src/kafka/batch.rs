//! One batch of Kafka messages on its way into the table: parsed and
//! validated on the blocking pool, dead letters sent, then committed with
//! each partition's last offset, in the background while the loop reads the
//! next batch. A batch commits only after the one before it did, so the
//! stored positions never skip a batch.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use keyshift_http::Principal;
use keyshift_store::{Source, StreamPosition};
use rdkafka::producer::FutureProducer;
use tokio::sync::oneshot;

use super::dlq::send_dead_letters;
use crate::pipeline::{IngestSummary, Input, Item, Pipeline, Prepared};
use crate::{IngestError, Result};

/// One message as read from the broker.
pub(super) struct Buffered {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
    /// The rp_id the producing collector authenticated
    /// ([`SCOPE_HEADER`](super::SCOPE_HEADER)).
    pub scope: Option<String>,
    /// The message's timestamp (ms since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
}

/// A batch on its way into the table.
pub(super) struct InFlight {
    /// The partitions with dead letters in the batch, and the outcome.
    task: tokio::task::JoinHandle<(Vec<i32>, Result<IngestSummary>)>,
    /// Each partition's last offset in the batch.
    pub last: HashMap<i32, i64>,
    /// The newest message timestamp in the batch.
    pub newest_ms: Option<i64>,
    pub messages: usize,
    pub started: Instant,
}

/// What a batch task needs besides the messages.
pub(super) struct Batch {
    pub topic: String,
    /// Each partition's position after the batch (a `txn` app id and
    /// version), fenced by the one before it.
    pub txns: Vec<StreamPosition>,
    /// Per partition, the last offset whose dead letters are recorded.
    pub rejected_done: HashMap<i32, i64>,
    pub dlq: Option<(FutureProducer, String)>,
}

impl Batch {
    /// Starts the batch's task. It commits only once `previous` (the batch
    /// before it) reports that it committed; otherwise it gives up, so a
    /// refused batch is never overtaken.
    pub fn spawn(
        self,
        pipeline: Arc<Pipeline>,
        buffer: Vec<Buffered>,
        last: HashMap<i32, i64>,
        previous: Option<oneshot::Receiver<bool>>,
    ) -> (InFlight, oneshot::Receiver<bool>) {
        let messages = buffer.len();
        let newest_ms = buffer.iter().filter_map(|b| b.timestamp_ms).max();
        let (done_tx, done_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let (had_rejections, result) = match self.prepare(&pipeline, buffer).await {
                Ok((prepared, had_rejections)) => {
                    let before_ok = match previous {
                        None => true,
                        Some(rx) => rx.await.unwrap_or(false),
                    };
                    if before_ok {
                        (had_rejections, self.commit(&pipeline, prepared).await)
                    } else {
                        pipeline.abandon(prepared);
                        (
                            Vec::new(),
                            Err(IngestError::EarlierBatchFailed {
                                topic: self.topic.clone(),
                            }),
                        )
                    }
                }
                Err(e) => (Vec::new(), Err(e)),
            };
            let _ = done_tx.send(result.is_ok());
            (had_rejections, result)
        });
        let in_flight = InFlight {
            task,
            last,
            newest_ms,
            messages,
            started: Instant::now(),
        };
        (in_flight, done_rx)
    }

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
            tasks.push(crate::cpu::run(move || {
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
                    .map_err(|e| IngestError::lost(&self.topic, "batch worker", e))?,
            );
        }
        let mut prepared = Prepared::merge(parts);
        let done = &self.rejected_done;
        prepared.retain_rejected(|r| match &r.source {
            Source::Kafka {
                partition, offset, ..
            } => done.get(partition).is_none_or(|d| *offset > *d),
            Source::Http | Source::Import { .. } => true,
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
                Source::Http | Source::Import { .. } => None,
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
pub(super) async fn join_in_flight(
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
