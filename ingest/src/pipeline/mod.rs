//! The ingest pipeline shared by every source.
//!
//! [`Pipeline::prepare`] is synchronous CPU work (decode, validate, scope,
//! pseudonymize, dedup); [`Pipeline::commit`] waits for the store. Dedup keys
//! are reserved in `prepare` and released if the commit fails, so a retry of a
//! failed request is never mistaken for a duplicate. Events whose key the
//! dedup index is unsure of (its memory is bounded, see [`crate::dedup`])
//! are checked against the table in `commit`, before they are written.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyshift_http::Principal;
use keyshift_schemas::{AuthEvent, Doc};
use keyshift_store::{
    EventRecord, QueryEngine, RejectedRecord, Source, StreamPosition, WriterHandle,
};
use tracing::info;

mod items;

pub use crate::check::{Checker, Refusal};
use crate::dedup::{DedupIndex, DedupKey, Seen, confirm, dedup_key};
use crate::metrics::IngestMetrics;
use crate::pseudonym::Pseudonymizer;
use crate::{IngestConfig, IngestError, Result};
pub use items::{IngestSummary, Input, Item, Prepared, Rejection, Unparsed};

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
    /// Checks the keys the dedup index is unsure of against the table;
    /// `None` for an unbounded index, which is never unsure.
    engine: Option<QueryEngine>,
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
        let dedup = Arc::new(DedupIndex::bounded(cfg.dedup_limits()));
        let window =
            chrono::Duration::from_std(cfg.dedup_window).unwrap_or(chrono::Duration::days(7));
        let loaded = dedup.rebuild(engine, Utc::now() - window).await?;
        metrics.dedup(&dedup);
        info!(
            keys = loaded,
            exact = dedup.len(),
            exact_since = ?dedup.hot_since(),
            window = ?cfg.dedup_window,
            "dedup index loaded"
        );
        Ok(Self::with_parts(cfg, pseudo, dedup, writer, metrics).with_query_engine(engine.clone()))
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
            engine: None,
            dedup_synced_at: std::sync::Mutex::new(Utc::now()),
        }
    }

    /// Checks the keys a bounded dedup index is unsure of against the
    /// table `engine` reads ([`Pipeline::start`] does this itself).
    pub fn with_query_engine(mut self, engine: QueryEngine) -> Self {
        self.engine = Some(engine);
        self
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
        let seen = self.dedup.reserve(&keys, now);
        let mut records = Vec::with_capacity(valid.len());
        let mut reserved = Vec::with_capacity(valid.len());
        let mut unsure = Vec::new();
        for ((ev, key, source), seen) in valid.into_iter().zip(seen) {
            if seen == Seen::Duplicate {
                summary.duplicates += 1;
                continue;
            }
            if seen == Seen::Unsure {
                unsure.push(records.len());
            }
            records.push(self.record(ev, now, source));
            reserved.push(key);
        }
        summary.accepted = records.len();
        Prepared {
            records,
            rejected,
            reserved,
            unsure,
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
        txns: Vec<StreamPosition>,
    ) -> Result<IngestSummary> {
        let Prepared {
            mut records,
            rejected,
            mut reserved,
            unsure,
            mut summary,
        } = prepared;
        if !unsure.is_empty()
            && let Err(e) = self
                .settle_unsure(&mut records, &mut reserved, &mut summary, &unsure)
                .await
        {
            self.dedup.release(&reserved);
            return Err(e);
        }
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
        self.metrics.dedup(&self.dedup);
        Ok(summary)
    }

    /// Asks the table about the records at `unsure`: those it holds (stored
    /// within the window) are dropped as duplicates. Their keys stay
    /// reserved: the table has them, so a later copy is a duplicate too.
    async fn settle_unsure(
        &self,
        records: &mut Vec<EventRecord>,
        reserved: &mut Vec<DedupKey>,
        summary: &mut IngestSummary,
        unsure: &[usize],
    ) -> Result<()> {
        let Some(engine) = &self.engine else {
            return Err(IngestError::DedupLoad(
                "the index is unsure of keys but the pipeline has no query engine".to_owned(),
            ));
        };
        let ids: Vec<(&str, &str)> = unsure
            .iter()
            .map(|i| {
                (
                    records[*i].event.rp_id.as_str(),
                    records[*i].event.event_id.as_str(),
                )
            })
            .collect();
        let found = confirm::stored(engine, self.dedup.window_start(), &ids).await?;
        let dropped = found.iter().filter(|f| **f).count();
        self.metrics
            .dedup_confirmed(unsure.len() - dropped, dropped);
        if dropped == 0 {
            return Ok(());
        }
        let mut duplicate = vec![false; records.len()];
        for (i, _) in unsure.iter().zip(&found).filter(|(_, f)| **f) {
            duplicate[*i] = true;
        }
        let mut at = duplicate.iter();
        records.retain(|_| !at.next().copied().unwrap_or(false));
        let mut at = duplicate.iter();
        reserved.retain(|_| !at.next().copied().unwrap_or(false));
        summary.accepted -= dropped;
        summary.duplicates += dropped;
        Ok(())
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
        self.metrics.dedup(&self.dedup);
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
        self.metrics.dedup(&self.dedup);
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
