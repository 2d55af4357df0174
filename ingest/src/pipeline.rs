//! The ingest pipeline shared by every source.
//!
//! [`Pipeline::prepare`] is synchronous CPU work (decode, validate, scope,
//! pseudonymize, dedup); [`Pipeline::commit`] waits for the store. Dedup keys
//! are reserved in `prepare` and released if the commit fails, so a retry of a
//! failed request is never mistaken for a duplicate.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyshift_http::Principal;
use keyshift_schemas::{AuthEvent, Doc};
use keyshift_store::{EventRecord, QueryEngine, RejectedRecord, Source, WriterHandle};
use serde::Serialize;
use serde_json::Value;
use tracing::info;

pub use crate::check::{Checker, Refusal};
use crate::dedup::{DedupIndex, DedupKey, dedup_key};
use crate::metrics::IngestMetrics;
use crate::pseudonym::Pseudonymizer;
use crate::{IngestConfig, Result};

/// One input item as a source hands it over: the bytes of one event (an
/// NDJSON line, an element of a JSON array body, a Kafka message). The
/// pipeline parses it; bytes that are not JSON become a rejected item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input(pub Vec<u8>);

impl From<&Value> for Input {
    fn from(value: &Value) -> Self {
        Input(serde_json::to_vec(value).unwrap_or_default())
    }
}

/// One refused item in a response.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rejection {
    /// Position of the item in the request (0-based; blank NDJSON lines are
    /// not counted).
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The item's `event_id`, cut to 256 characters; `None` when the item was not JSON or
    /// had no string `event_id`.
    pub event_id: Option<String>,
    /// What is wrong with the item.
    pub error: String,
}

/// What became of a request.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IngestSummary {
    /// Events stored: valid, and new within the dedup window.
    pub accepted: usize,
    /// Valid events dropped as repeats of an `event_id` (same `rp_id`) stored within the
    /// dedup window or earlier in the same request.
    pub duplicates: usize,
    /// One entry per refused item.
    pub rejected: Vec<Rejection>,
}

/// A request after the CPU work, ready to commit.
#[derive(Debug)]
pub struct Prepared {
    records: Vec<EventRecord>,
    rejected: Vec<RejectedRecord>,
    reserved: Vec<DedupKey>,
    summary: IngestSummary,
}

impl Prepared {
    /// Keeps only the rejections `keep` accepts (a stream source drops the
    /// dead letters it already recorded before a crash).
    pub fn retain_rejected(&mut self, keep: impl Fn(&RejectedRecord) -> bool) {
        self.rejected.retain(keep);
    }

    /// The records the commit will write to `rejected_events`.
    pub fn rejected(&self) -> &[RejectedRecord] {
        &self.rejected
    }

    /// Joins parts prepared in parallel into one commit. Rejection indices
    /// stay those of each part (stream sources do not report them).
    pub fn merge(parts: Vec<Prepared>) -> Prepared {
        let mut all = Prepared {
            records: Vec::new(),
            rejected: Vec::new(),
            reserved: Vec::new(),
            summary: IngestSummary::default(),
        };
        for p in parts {
            all.records.extend(p.records);
            all.rejected.extend(p.rejected);
            all.reserved.extend(p.reserved);
            all.summary.accepted += p.summary.accepted;
            all.summary.duplicates += p.summary.duplicates;
            all.summary.rejected.extend(p.summary.rejected);
        }
        all
    }
}

/// An input refused before parsing (a line too long to take, say).
#[derive(Debug)]
pub struct Unparsed<'a> {
    /// Its position, as in [`Rejection::index`].
    pub index: usize,
    /// What is kept of it (cut again to `max_rejected_payload_bytes`).
    pub head: &'a [u8],
    /// Its full length in bytes.
    pub size: usize,
    /// Why it is refused.
    pub error: String,
    /// Where it came from.
    pub source: &'a Source,
}

/// One item for [`Pipeline::prepare_items`]: the input, where it came from
/// and who may vouch for it.
#[derive(Debug)]
pub struct Item {
    /// The item's bytes.
    pub input: Input,
    /// Where it came from: HTTP, or a Kafka topic, partition and offset.
    pub source: Source,
    /// Who submitted it; decides which `rp_id`s it may write.
    pub principal: Principal,
}

/// The ingest pipeline: checks, pseudonymizes and deduplicates items, then commits them
/// through the store's writer.
#[derive(Debug)]
pub struct Pipeline {
    cfg: IngestConfig,
    checker: Checker,
    pseudo: Pseudonymizer,
    dedup: Arc<DedupIndex>,
    writer: WriterHandle,
    metrics: IngestMetrics,
    /// When the dedup index last caught up with the table.
    dedup_synced_at: std::sync::Mutex<DateTime<Utc>>,
}

impl Pipeline {
    /// Loads the secret (creating it under `data_dir` on first run) and
    /// rebuilds the dedup index from the store.
    pub async fn start(
        cfg: IngestConfig,
        data_dir: &Path,
        writer: WriterHandle,
        engine: &QueryEngine,
        metrics: IngestMetrics,
    ) -> Result<Self> {
        let pseudo = Pseudonymizer::load_or_create(&cfg.secret_path(data_dir))?;
        let dedup = Arc::new(DedupIndex::new());
        let window =
            chrono::Duration::from_std(cfg.dedup_window).unwrap_or(chrono::Duration::days(7));
        let loaded = dedup.load(engine, Utc::now() - window).await?;
        metrics.dedup_keys(dedup.len());
        info!(keys = loaded, window = ?cfg.dedup_window, "dedup index loaded");
        Ok(Self::with_parts(cfg, pseudo, dedup, writer, metrics))
    }

    /// A pipeline from ready parts, loading nothing: `dedup` is used as it is.
    pub fn with_parts(
        cfg: IngestConfig,
        pseudo: Pseudonymizer,
        dedup: Arc<DedupIndex>,
        writer: WriterHandle,
        metrics: IngestMetrics,
    ) -> Self {
        Self {
            checker: Checker::new(&cfg),
            cfg,
            pseudo,
            dedup,
            writer,
            metrics,
            dedup_synced_at: std::sync::Mutex::new(Utc::now()),
        }
    }

    /// The ingest settings it runs with.
    pub fn config(&self) -> &IngestConfig {
        &self.cfg
    }

    /// The metrics it counts in.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// Decodes, validates, scopes, pseudonymizes and deduplicates a request.
    pub fn prepare(
        &self,
        principal: &Principal,
        inputs: Vec<Input>,
        source: &Source,
        now: DateTime<Utc>,
    ) -> Prepared {
        self.prepare_items(
            inputs.into_iter().map(|input| Item {
                input,
                source: source.clone(),
                principal: principal.clone(),
            }),
            now,
        )
    }

    /// Like [`Pipeline::prepare`], each input with its own source (a stream
    /// offset, say) and principal.
    pub fn prepare_items(
        &self,
        items: impl IntoIterator<Item = Item>,
        now: DateTime<Utc>,
    ) -> Prepared {
        let mut summary = IngestSummary::default();
        let mut rejected = Vec::new();
        let mut valid: Vec<(AuthEvent, DedupKey, Source)> = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let Item {
                input,
                source,
                principal,
            } = item;
            let source = &source;
            let raw = input.0;
            let doc = match Doc::parse(&raw) {
                Ok(doc) => doc,
                Err(e) => {
                    let error = format!("malformed JSON: {e}");
                    rejected.push(self.rejection(
                        &raw,
                        None,
                        None,
                        error.clone(),
                        None,
                        source,
                        now,
                    ));
                    summary.rejected.push(Rejection {
                        index,
                        event_id: None,
                        error,
                    });
                    continue;
                }
            };
            let refusal = match self.checker.check(&principal, &doc, now) {
                Ok(ev) => {
                    if !ev.extra.is_empty() {
                        self.metrics.unknown_fields(source.kind(), ev.extra.len());
                    }
                    let key = dedup_key(&ev.rp_id, &ev.event_id);
                    valid.push((ev, key, source.clone()));
                    continue;
                }
                Err(r) => r,
            };
            let event_id = doc.get("event_id").and_then(Doc::as_str).map(clip);
            let rp_id = doc.get("rp_id").and_then(Doc::as_str).map(clip);
            rejected.push(self.rejection(
                &raw,
                rp_id,
                event_id.clone(),
                refusal.error.clone(),
                refusal.pointer,
                source,
                now,
            ));
            summary.rejected.push(Rejection {
                index,
                event_id,
                error: refusal.error,
            });
        }

        let keys: Vec<DedupKey> = valid.iter().map(|(_, k, _)| *k).collect();
        let fresh = self.dedup.reserve(&keys, now);
        let mut records = Vec::with_capacity(valid.len());
        let mut reserved = Vec::with_capacity(valid.len());
        for ((ev, key, source), new) in valid.into_iter().zip(fresh) {
            if new {
                records.push(self.record(ev, now, source));
                reserved.push(key);
            } else {
                summary.duplicates += 1;
            }
        }
        summary.accepted = records.len();
        Prepared {
            records,
            rejected,
            reserved,
            summary,
        }
    }

    /// Waits until the prepared rows are durable.
    pub async fn commit(
        &self,
        prepared: Prepared,
        source_kind: &'static str,
    ) -> Result<IngestSummary> {
        self.commit_with_txns(prepared, source_kind, Vec::new())
            .await
    }

    /// Like [`Pipeline::commit`], recording stream positions (`txn` actions)
    /// in the same commits.
    pub async fn commit_with_txns(
        &self,
        prepared: Prepared,
        source_kind: &'static str,
        txns: Vec<(String, i64)>,
    ) -> Result<IngestSummary> {
        let Prepared {
            records,
            rejected,
            reserved,
            summary,
        } = prepared;
        let tally = self.metrics.tally(&records, Utc::now());
        if (!records.is_empty() || !rejected.is_empty() || !txns.is_empty())
            && let Err(e) = self.writer.write_with_txns(records, rejected, txns).await
        {
            self.dedup.release(&reserved);
            return Err(e.into());
        }
        self.metrics.stored(tally);
        self.metrics
            .events(source_kind, "accepted", summary.accepted);
        self.metrics
            .events(source_kind, "duplicate", summary.duplicates);
        self.metrics
            .events(source_kind, "rejected", summary.rejected.len());
        self.metrics.dedup_keys(self.dedup.len());
        Ok(summary)
    }

    /// Adds `input`, refused before parsing, to `prepared`.
    pub fn refuse_unparsed(
        &self,
        prepared: &mut Prepared,
        input: Unparsed<'_>,
        now: DateTime<Utc>,
    ) {
        let Unparsed {
            index,
            head,
            size,
            error,
            source,
        } = input;
        let mut record = self.rejection(head, None, None, error.clone(), None, source, now);
        record.raw_size = i64::try_from(size).unwrap_or(i64::MAX);
        record.raw_truncated |= size > head.len();
        prepared.rejected.push(record);
        prepared.summary.rejected.push(Rejection {
            index,
            event_id: None,
            error,
        });
    }

    /// Gives up on a prepared batch without committing it: its dedup keys are
    /// released so a retry is not mistaken for a duplicate.
    pub fn abandon(&self, prepared: Prepared) {
        self.dedup.release(&prepared.reserved);
    }

    /// Loads the keys other writers committed since the last sync, so that a
    /// partition taken over from another process is deduplicated against
    /// what that process stored.
    pub async fn sync_dedup(&self, engine: &QueryEngine) -> Result<usize> {
        let now = Utc::now();
        let since = {
            let last = self
                .dedup_synced_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Clock skew between writers: look a little further back.
            *last - chrono::Duration::minutes(5)
        };
        let n = self.dedup.load(engine, since).await?;
        *self
            .dedup_synced_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        self.metrics.dedup_keys(self.dedup.len());
        Ok(n)
    }

    /// The store writer its commits go through.
    pub fn writer(&self) -> &WriterHandle {
        &self.writer
    }

    /// Forgets dedup keys older than the window.
    pub fn expire_dedup(&self, now: DateTime<Utc>) -> usize {
        let window =
            chrono::Duration::from_std(self.cfg.dedup_window).unwrap_or(chrono::Duration::days(7));
        let n = self.dedup.expire(now - window);
        self.metrics.dedup_keys(self.dedup.len());
        n
    }

    fn record(&self, mut event: AuthEvent, now: DateTime<Utc>, source: Source) -> EventRecord {
        let rp = event.rp_id.as_str();
        let user_key = event
            .user_id
            .take()
            .map(|id| self.pseudo.key("user", rp, &id));
        let device_key = event
            .device_id
            .take()
            .map(|id| self.pseudo.key("device", rp, &id));
        let session_key = event
            .session_id
            .take()
            .map(|id| self.pseudo.key("session", rp, &id));
        EventRecord {
            event,
            user_key,
            device_key,
            session_key,
            received_at: now,
            source,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rejection(
        &self,
        raw: &[u8],
        rp_id: Option<String>,
        event_id: Option<String>,
        error: String,
        error_pointer: Option<String>,
        source: &Source,
        now: DateTime<Utc>,
    ) -> RejectedRecord {
        let (text, truncated) = self.pseudo.redact(raw, self.cfg.max_rejected_payload_bytes);
        RejectedRecord {
            received_at: now,
            source: source.clone(),
            rp_id,
            event_id,
            error,
            error_pointer,
            raw: text,
            raw_truncated: truncated,
            raw_size: i64::try_from(raw.len()).unwrap_or(i64::MAX),
        }
    }
}

/// Ids echoed from invalid input are cut so one bad field cannot bloat rows.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(256).collect()
}
