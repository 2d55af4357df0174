//! Group commit: the rows of every request in a group as one commit per
//! table, and what each waiting request is told when that fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use deltalake::kernel::Transaction;
use tracing::{debug, warn};

use super::append::{Known, append, check_fence};
use super::{CommitReceipt, Published, Request, StreamPosition, Writer};
use crate::metrics::CommitFailure;
use crate::records::{EventRecord, RejectedRecord};
use crate::schema::{events_to_batch, rejected_to_batch};
use crate::{AUTH_EVENTS, ErrorKind, REJECTED_EVENTS, Result, StoreError, new_error_id};

/// The rows of one commit: one request's, or a whole group's.
#[derive(Default)]
struct Part {
    events: Vec<EventRecord>,
    rejected: Vec<RejectedRecord>,
    /// Each stream's highest position, and the position the table must
    /// hold before the commit.
    txns: HashMap<String, (i64, Option<i64>)>,
}

impl Part {
    fn add_txns(&mut self, txns: impl IntoIterator<Item = StreamPosition>) {
        for p in txns {
            let (version, after) = self.txns.entry(p.app_id).or_insert((p.version, p.after));
            // Requests of one stream follow each other: the merged commit
            // moves it from the first one's start to the last one's end.
            if p.version < *version {
                *after = p.after;
            }
            *version = (*version).max(p.version);
        }
    }
}

/// A failed commit as every waiting request is told about it.
#[derive(Debug, Clone)]
struct Failed {
    table: &'static str,
    kind: ErrorKind,
    error_id: String,
    message: String,
}

impl From<Failed> for StoreError {
    fn from(f: Failed) -> Self {
        StoreError::CommitFailed {
            table: f.table,
            kind: f.kind,
            error_id: f.error_id,
            message: f.message,
        }
    }
}

impl Writer {
    /// Commits one group. Failures go to the callers that wait, with the
    /// kind of their cause; a failure nobody waits for is returned, which
    /// stops the writer.
    ///
    /// A bug (say, a row that cannot be encoded) fails the same way however
    /// often it is retried and its callers are told not to retry, so the
    /// group is then committed request by request: one request's poison row
    /// must not take the others' rows with it.
    pub(super) async fn flush(&mut self, group: Vec<Request>) -> Result<()> {
        // The group's rows are moved into one part; each request's shape is
        // kept to cut it back into requests if need be.
        let mut merged = Part::default();
        let mut shapes = Vec::with_capacity(group.len());
        let mut acks = Vec::with_capacity(group.len());
        for req in group {
            shapes.push((req.events.len(), req.rejected.len(), req.txns.clone()));
            merged.events.extend(req.events);
            merged.rejected.extend(req.rejected);
            merged.add_txns(req.txns);
            acks.push(req.ack);
        }
        let results = match self.commit_part(&merged).await {
            Err(failed) if failed.kind == ErrorKind::Bug && shapes.len() > 1 => {
                warn!(
                    error_id = failed.error_id,
                    requests = shapes.len(),
                    "committing the requests of the failed group one by one"
                );
                // A failure on auth_events comes after rejected_events was
                // committed: those rows are stored already.
                let rejected_stored = failed.table == AUTH_EVENTS;
                let mut events = merged.events.into_iter();
                let mut rejected = merged.rejected.into_iter();
                let mut results = Vec::with_capacity(shapes.len());
                for (n_events, n_rejected, txns) in shapes {
                    let mut part = Part {
                        events: events.by_ref().take(n_events).collect(),
                        rejected: rejected.by_ref().take(n_rejected).collect(),
                        txns: HashMap::new(),
                    };
                    part.add_txns(txns);
                    if rejected_stored {
                        part.rejected.clear();
                    }
                    results.push(self.commit_part(&part).await);
                }
                results
            }
            result => vec![result; shapes.len()],
        };
        if acks.iter().all(Option::is_none) {
            return match results.into_iter().find_map(Result::err) {
                Some(failed) => Err(failed.into()),
                None => Ok(()),
            };
        }
        for (ack, result) in acks.into_iter().zip(results) {
            if let Some(ack) = ack {
                let _ = ack.send(result.map_err(StoreError::from));
            }
        }
        Ok(())
    }

    /// Commits one part and records the outcome; a failure is logged with
    /// its kind, its table and a new error id.
    async fn commit_part(&mut self, part: &Part) -> std::result::Result<CommitReceipt, Failed> {
        let started = Instant::now();
        let result = self.commit(&part.events, &part.rejected, &part.txns).await;
        let elapsed = started.elapsed();
        self.metrics.observe_commit(elapsed, result.is_ok());
        let (events, rejected) = (part.events.len(), part.rejected.len());
        match result {
            Ok(receipt) => {
                debug!(
                    events,
                    rejected,
                    ?receipt,
                    ms = elapsed.as_millis() as u64,
                    "committed"
                );
                self.metrics.rows_written(AUTH_EVENTS, events);
                self.metrics.rows_written(REJECTED_EVENTS, rejected);
                self.published.send_replace(Arc::new(Published {
                    tables: self.tables.clone(),
                    last_commit_at: Some(Utc::now()),
                }));
                Ok(receipt)
            }
            Err(e) => {
                let failed = Failed {
                    table: e.table().unwrap_or(AUTH_EVENTS),
                    kind: e.kind(),
                    error_id: new_error_id(),
                    message: e.to_string(),
                };
                self.metrics.commit_failed(CommitFailure {
                    table: failed.table,
                    kind: failed.kind,
                    error_id: &failed.error_id,
                    error: &e,
                    events,
                    rejected,
                });
                Err(failed)
            }
        }
    }

    async fn commit(
        &mut self,
        events: &[EventRecord],
        rejected: &[RejectedRecord],
        positions: &HashMap<String, (i64, Option<i64>)>,
    ) -> Result<CommitReceipt> {
        let mut receipt = CommitReceipt::default();
        let now = Some(Utc::now().timestamp_millis());
        let txns: Vec<Transaction> = positions
            .iter()
            .map(|(app, (v, _))| Transaction::new_with_last_update(app.clone(), *v, now))
            .collect();
        // `auth_events` holds the positions (the rejected table may be a
        // commit ahead after a crash). Its append checks them; with
        // rejections they are checked before those too, so that a writer
        // whose partitions moved records no rejections either.
        let fence: Vec<(String, Option<i64>)> = positions
            .iter()
            .map(|(app, (_, after))| (app.clone(), *after))
            .collect();
        if !rejected.is_empty() {
            check_fence(
                &self.tables.events,
                &fence,
                &mut self.events_known,
                AUTH_EVENTS,
            )
            .await?;
        }
        // Rejections first, carrying the same stream positions: after a crash
        // between the two commits, the rejected table is ahead, so replayed
        // dead letters are recognised and not recorded twice.
        if !rejected.is_empty() {
            self.faults.check(REJECTED_EVENTS, std::iter::empty())?;
            let batch = rejected_to_batch(rejected)?;
            receipt.rejected_version = Some(
                append(
                    &mut self.rejected_writer,
                    &mut self.tables.rejected,
                    batch,
                    txns.clone(),
                    &[],
                    &mut Known::default(),
                    REJECTED_EVENTS,
                )
                .await?,
            );
        }
        if !events.is_empty() || !txns.is_empty() {
            self.faults.check(
                AUTH_EVENTS,
                events.iter().map(|e| e.event.event_id.as_str()),
            )?;
            let batch = events_to_batch(events)?;
            receipt.events_version = Some(
                append(
                    &mut self.events_writer,
                    &mut self.tables.events,
                    batch,
                    txns,
                    &fence,
                    &mut self.events_known,
                    AUTH_EVENTS,
                )
                .await?,
            );
        }
        Ok(receipt)
    }
}
