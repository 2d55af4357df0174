//! The single writer task: group commit into both tables.
//!
//! Callers hand over records through a bounded channel (the bound is the
//! backpressure) and, when they ask for it, wait for the commit that made them
//! durable. Requests that wait are committed as soon as the writer is free,
//! together with everything that arrived meanwhile; requests that do not wait
//! (stream sources that track their own progress) are held for at most
//! `flush_max_delay` or until `flush_max_rows` rows are pending.

mod append;
mod faults;
mod group;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::kernel::Transaction;
use deltalake::writer::RecordBatchWriter;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use self::append::{Known, append, txn_version};
#[doc(hidden)]
pub use self::faults::{Fault, Faults, REFRESH};
use crate::decisions::{DecisionRecord, decision_app_id, decisions_to_batch};
use crate::metrics::StoreMetrics;
use crate::records::{EventRecord, RejectedRecord};
use crate::{
    AUTH_EVENTS, REJECTED_EVENTS, ROLLOUT_DECISIONS, Result, StoreConfig, StoreError, Tables,
};

/// Table versions created by the commit that made a request durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitReceipt {
    /// The `auth_events` version the commit created; `None` when it wrote
    /// nothing there.
    pub events_version: Option<u64>,
    /// The `rejected_events` version the commit created; `None` when it
    /// wrote nothing there.
    pub rejected_version: Option<u64>,
}

/// What readers see: the tables as of the last commit.
#[derive(Debug, Clone)]
pub struct Published {
    /// The tables at the versions of the last commit.
    pub tables: Tables,
    /// When the last commit that added rows finished (the ingest watermark).
    pub last_commit_at: Option<DateTime<Utc>>,
}

struct Request {
    events: Vec<EventRecord>,
    rejected: Vec<RejectedRecord>,
    /// Stream positions (`txn` actions) to commit with the events.
    txns: Vec<StreamPosition>,
    ack: Option<oneshot::Sender<Result<CommitReceipt>>>,
}

impl Request {
    fn rows(&self) -> usize {
        self.events.len() + self.rejected.len()
    }
}

/// A stream position to record with a commit (a `txn` action): everything
/// of the stream `app_id` up to `version` is in the commit or before it.
///
/// It is fenced by `after`, the position the writer believes the table
/// holds: when the table holds another one, someone else recorded the stream
/// since the writer last read it (a partition that moved to another member
/// in a rebalance), so the rows may be stored already, and the commit is
/// refused with [`StoreError::PositionMoved`] (a conflict: re-read from the
/// table). Delta's own conflict check only covers commits that land while
/// this one is being made; the fence also covers those the writer's
/// snapshot has picked up since the position was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    /// The `txn` application id (one per topic partition).
    pub app_id: String,
    /// The position this commit records.
    pub version: i64,
    /// The position the table must hold before this commit; `None`: none.
    pub after: Option<i64>,
}

impl StreamPosition {
    /// `app_id` moves from `after` to `version`.
    pub fn new(app_id: impl Into<String>, after: Option<i64>, version: i64) -> Self {
        Self {
            app_id: app_id.into(),
            version,
            after,
        }
    }
}

/// Stream positions recorded in the tables for one application id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnVersions {
    /// In `auth_events`: everything up to here is stored.
    pub events: Option<i64>,
    /// In `rejected_events`: every rejection up to here is recorded.
    pub rejected: Option<i64>,
}

enum Msg {
    Write(Request),
    /// Append one rollout decision as the next in its sequence.
    Decision {
        record: Box<DecisionRecord>,
        reply: oneshot::Sender<Result<u64>>,
    },
    /// Commit what is pending, reload both tables from storage (picking up
    /// other writers' commits) and report the `txn` versions of `app_ids`.
    Refresh {
        app_ids: Vec<String>,
        reply: oneshot::Sender<Result<HashMap<String, TxnVersions>>>,
    },
}

/// Cheap, clonable handle for submitting writes.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    published: watch::Receiver<Arc<Published>>,
}

impl WriterHandle {
    /// Writes and waits until the rows are committed.
    pub async fn write(
        &self,
        events: Vec<EventRecord>,
        rejected: Vec<RejectedRecord>,
    ) -> Result<CommitReceipt> {
        self.write_with_txns(events, rejected, Vec::new()).await
    }

    /// Like [`WriterHandle::write`], committing the given stream positions
    /// (`txn` actions, e.g. an offset per topic partition) atomically with
    /// the events, fenced as [`StreamPosition`] says.
    pub async fn write_with_txns(
        &self,
        events: Vec<EventRecord>,
        rejected: Vec<RejectedRecord>,
        txns: Vec<StreamPosition>,
    ) -> Result<CommitReceipt> {
        let (ack, done) = oneshot::channel();
        let req = Request {
            events,
            rejected,
            txns,
            ack: Some(ack),
        };
        self.tx
            .send(Msg::Write(req))
            .await
            .map_err(|_| StoreError::WriterClosed)?;
        done.await.map_err(|_| StoreError::WriterClosed)?
    }

    /// Reloads the tables and returns the recorded stream positions of
    /// `app_ids` (see [`TxnVersions`]). Anything submitted before is
    /// committed first.
    pub async fn refresh(&self, app_ids: Vec<String>) -> Result<HashMap<String, TxnVersions>> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Msg::Refresh { app_ids, reply })
            .await
            .map_err(|_| StoreError::WriterClosed)?;
        done.await.map_err(|_| StoreError::WriterClosed)?
    }

    /// Appends a rollout decision in its own commit, fenced: refused with
    /// [`StoreError::Fenced`] unless `record.seq` follows the last recorded
    /// sequence number of its rollout (see [`crate::decisions`]).
    pub async fn append_decision(&self, record: DecisionRecord) -> Result<u64> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Msg::Decision {
                record: Box::new(record),
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterClosed)?;
        done.await.map_err(|_| StoreError::WriterClosed)?
    }

    /// Hands rows over without waiting for the commit.
    pub async fn submit(
        &self,
        events: Vec<EventRecord>,
        rejected: Vec<RejectedRecord>,
    ) -> Result<()> {
        let req = Request {
            events,
            rejected,
            txns: Vec::new(),
            ack: None,
        };
        self.tx
            .send(Msg::Write(req))
            .await
            .map_err(|_| StoreError::WriterClosed)
    }

    /// The latest committed state of the tables.
    pub fn published(&self) -> watch::Receiver<Arc<Published>> {
        self.published.clone()
    }
}

/// The writer task's state.
pub struct Writer {
    tables: Tables,
    events_writer: RecordBatchWriter,
    rejected_writer: RecordBatchWriter,
    /// `auth_events`' stream positions as the fence last read them.
    events_known: Known,
    cfg: StoreConfig,
    metrics: StoreMetrics,
    published: watch::Sender<Arc<Published>>,
    faults: Faults,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// Queue depth, in requests, before submitters wait.
const QUEUE_REQUESTS: usize = 256;

impl Writer {
    /// Starts the writer task over opened tables.
    ///
    /// The task ends when `cancel` fires or every handle is dropped; either
    /// way it commits what it holds first. It returns an error only for a
    /// failure it could not report to a waiting caller.
    pub fn spawn(
        tables: Tables,
        cfg: StoreConfig,
        metrics: StoreMetrics,
        cancel: CancellationToken,
    ) -> Result<(WriterHandle, tokio::task::JoinHandle<Result<()>>)> {
        Self::spawn_with(tables, cfg, metrics, cancel, Faults::default())
    }

    /// [`Writer::spawn`] with injected faults (tests only).
    #[doc(hidden)]
    pub fn spawn_with(
        tables: Tables,
        cfg: StoreConfig,
        metrics: StoreMetrics,
        cancel: CancellationToken,
        faults: Faults,
    ) -> Result<(WriterHandle, tokio::task::JoinHandle<Result<()>>)> {
        let events_writer =
            RecordBatchWriter::for_table(&tables.events).map_err(StoreError::delta(AUTH_EVENTS))?;
        let rejected_writer = RecordBatchWriter::for_table(&tables.rejected)
            .map_err(StoreError::delta(REJECTED_EVENTS))?;
        let (published, published_rx) = watch::channel(Arc::new(Published {
            tables: tables.clone(),
            last_commit_at: None,
        }));
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
        let writer = Writer {
            tables,
            events_writer,
            rejected_writer,
            events_known: Known::default(),
            cfg,
            metrics,
            published,
            faults,
        };
        let task = tokio::spawn(writer.run(rx, cancel));
        Ok((
            WriterHandle {
                tx,
                published: published_rx,
            },
            task,
        ))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, cancel: CancellationToken) -> Result<()> {
        let mut pending: Vec<Request> = Vec::new();
        let mut rows = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let mut closed = false;
            let mut refreshes = Vec::new();
            let mut decisions = Vec::new();
            let mut take = |msg: Msg, pending: &mut Vec<Request>, rows: &mut usize| match msg {
                Msg::Write(req) => {
                    *rows += req.rows();
                    pending.push(req);
                }
                Msg::Refresh { app_ids, reply } => refreshes.push((app_ids, reply)),
                Msg::Decision { record, reply } => decisions.push((record, reply)),
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    rx.close();
                    while let Some(msg) = rx.recv().await {
                        take(msg, &mut pending, &mut rows);
                    }
                    closed = true;
                }
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        if pending.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + self.cfg.flush_max_delay);
                        }
                        take(msg, &mut pending, &mut rows);
                        while rows < self.cfg.flush_max_rows {
                            match rx.try_recv() {
                                Ok(msg) => take(msg, &mut pending, &mut rows),
                                Err(_) => break,
                            }
                        }
                    }
                    None => closed = true,
                },
                () = sleep_until(deadline) => {}
            }
            let due = deadline.is_some_and(|d| d <= tokio::time::Instant::now());
            let waited_on = pending.iter().any(|r| r.ack.is_some());
            if !pending.is_empty()
                && (closed
                    || due
                    || waited_on
                    || !refreshes.is_empty()
                    || rows >= self.cfg.flush_max_rows)
            {
                let batch = std::mem::take(&mut pending);
                rows = 0;
                deadline = None;
                self.flush(batch).await?;
            }
            if pending.is_empty() {
                deadline = None;
            }
            for (app_ids, reply) in refreshes {
                let _ = reply.send(self.refresh(&app_ids).await);
            }
            for (record, reply) in decisions {
                let _ = reply.send(self.append_decision(*record).await);
            }
            if closed {
                info!("store writer stopped");
                return Ok(());
            }
        }
    }

    async fn append_decision(&mut self, record: DecisionRecord) -> Result<u64> {
        let Some(table) = self.tables.decisions.as_mut() else {
            return Err(StoreError::Location {
                uri: ROLLOUT_DECISIONS.to_owned(),
                reason: "the decisions table was not opened".to_owned(),
            });
        };
        let app_id = decision_app_id(&record.rollout_id);
        // What this check reads, `append`'s fence then finds without
        // replaying the log again.
        let mut known = Known::default();
        let found = known.get(table, &app_id, ROLLOUT_DECISIONS).await?;
        let expected_before = (record.seq > 1).then_some(record.seq - 1);
        if found != expected_before {
            // Someone else appended (or our view is stale): reload once
            // before refusing, so a restarted controller sees its own past.
            table
                .update_state()
                .await
                .map_err(StoreError::delta(ROLLOUT_DECISIONS))?;
            let found = known.get(table, &app_id, ROLLOUT_DECISIONS).await?;
            if found != expected_before {
                return Err(StoreError::Fenced {
                    app_id,
                    expected: record.seq,
                    found,
                });
            }
        }
        let batch = decisions_to_batch(std::slice::from_ref(&record))?;
        let mut writer =
            RecordBatchWriter::for_table(table).map_err(StoreError::delta(ROLLOUT_DECISIONS))?;
        let txn = Transaction::new_with_last_update(
            app_id.clone(),
            record.seq,
            Some(Utc::now().timestamp_millis()),
        );
        let fence = [(app_id.clone(), expected_before)];
        let version = match append(
            &mut writer,
            table,
            batch,
            vec![txn],
            &fence,
            &mut known,
            ROLLOUT_DECISIONS,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                // `append` reloaded the table: if the sequence number is
                // taken now, another controller won the race.
                let found = txn_version(table, &app_id, ROLLOUT_DECISIONS).await?;
                if found.is_some_and(|v| v >= record.seq) {
                    return Err(StoreError::Fenced {
                        app_id,
                        expected: record.seq,
                        found,
                    });
                }
                return Err(e);
            }
        };
        let last_commit_at = self.published.borrow().last_commit_at;
        self.published.send_replace(Arc::new(Published {
            tables: self.tables.clone(),
            last_commit_at,
        }));
        Ok(version)
    }

    async fn refresh(&mut self, app_ids: &[String]) -> Result<HashMap<String, TxnVersions>> {
        self.faults.check(REFRESH, std::iter::empty())?;
        self.tables
            .events
            .update_state()
            .await
            .map_err(StoreError::delta(AUTH_EVENTS))?;
        self.tables
            .rejected
            .update_state()
            .await
            .map_err(StoreError::delta(REJECTED_EVENTS))?;
        let mut out = HashMap::with_capacity(app_ids.len());
        for app in app_ids {
            let events = txn_version(&self.tables.events, app, AUTH_EVENTS).await?;
            let rejected = txn_version(&self.tables.rejected, app, REJECTED_EVENTS).await?;
            out.insert(app.clone(), TxnVersions { events, rejected });
        }
        // Read before send_replace: holding the borrow across it deadlocks.
        let last_commit_at = self.published.borrow().last_commit_at;
        self.published.send_replace(Arc::new(Published {
            tables: self.tables.clone(),
            last_commit_at,
        }));
        Ok(out)
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
