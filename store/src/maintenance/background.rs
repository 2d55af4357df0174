//! The background maintenance task: a pass every `interval`, and a quick
//! compaction in between whenever the writer has added
//! `compact_after_files` data files since the last pass, on a thread of its
//! own at the lowest CPU priority, so that compaction's Parquet decoding and
//! encoding never competes with ingest or the API on their runtime.
//!
//! The file count is what the trigger watches because a commit costs more
//! the more files the table's snapshot holds (measured in
//! docs/benchmarks.md, "Query isolation"): a writer committing every 100 ms
//! would otherwise gather tens of thousands of files between hourly passes.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Maintainer, PassOptions, plan};
use crate::metrics::Trigger;
use crate::writer::Published;
use crate::{StoreError, WriterHandle};

/// Nice value of the maintenance thread: the OS runs everything else first.
const NICE: i32 = 19;

/// Starts passes every `interval` (the first one `interval` after start),
/// and quick compactions by the file count in between, until `stop` is
/// cancelled. After each pass on the clock the writer reloads the tables,
/// so queries read the compacted files. Returns a future that ends when the
/// task has stopped (at once if the thread cannot be started).
///
/// A failed pass is logged and counted, and the next one tries again:
/// upkeep never stops ingest.
pub fn spawn(
    maintainer: Arc<Maintainer>,
    writer: Option<WriterHandle>,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
    let interval = maintainer.config().interval;
    let started = std::thread::Builder::new()
        .name("keyshift-maintain".to_owned())
        .spawn(move || {
            // Multi-threaded, with one worker and tokio's default blocking
            // pool: deltalake's vacuum and checkpoint wait synchronously
            // (`block_in_place`) for work they spawn, which a current-thread
            // runtime never runs, and a small blocking pool deadlocks.
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("keyshift-maintain")
                .on_thread_start(|| crate::priority::lower_priority(NICE))
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "cannot start the maintenance runtime; no table upkeep");
                    return;
                }
            };
            runtime.block_on(passes(&maintainer, writer.as_ref(), interval, &stop));
            drop(done_tx);
        });
    if let Err(e) = started {
        warn!(error = %e, "cannot start the maintenance thread; no table upkeep");
    }
    async move {
        let _ = done.await;
    }
}

async fn passes(
    maintainer: &Maintainer,
    writer: Option<&WriterHandle>,
    interval: Duration,
    stop: &CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut growth = writer.map(|w| Growth::new(w.published()));
    let after = maintainer.config().compact_after_files;
    loop {
        let trigger = tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => Trigger::Interval,
            () = grown(growth.as_mut(), after) => Trigger::Files,
        };
        maintainer.metrics.pass_started(trigger);
        let opts = match trigger {
            Trigger::Interval => PassOptions::scheduled(),
            Trigger::Files => PassOptions::quick_compaction(maintainer.config()),
        };
        match maintainer.pass(&opts, stop).await {
            Ok(_) => {
                // A quick compaction ran because the writer is busy: its
                // next commit loads the compacted version anyway, and a
                // reload now would hold that commit up. (Readers of the
                // version before still find every file: the vacuum keeps
                // replaced files for `vacuum_grace`.)
                if trigger == Trigger::Interval
                    && let Some(w) = writer
                    && let Err(e) = w.refresh(Vec::new()).await
                {
                    warn!(error = %e, "reloading the tables after maintenance failed");
                }
            }
            Err(StoreError::Locked { path }) => {
                info!(%path, "another maintainer is running; pass skipped");
                maintainer.metrics.pass_locked();
            }
            // Logged and counted where it failed.
            Err(_) => {}
        }
        // Counted from here, whatever the pass did: a failing compaction
        // waits for as many new files again instead of retrying at once.
        if let Some(g) = growth.as_mut() {
            g.restart();
        }
    }
}

/// The data files of the writer's tables, as published after each commit.
struct Growth {
    published: tokio::sync::watch::Receiver<Arc<Published>>,
    /// The count after the last pass, or the lowest seen since.
    base: usize,
}

impl Growth {
    /// Counting from zero: a table that holds many files at start (a
    /// server down for a while, maintenance off until now) gets its quick
    /// compaction with the first commit.
    fn new(published: tokio::sync::watch::Receiver<Arc<Published>>) -> Self {
        Self { published, base: 0 }
    }

    fn restart(&mut self) {
        self.base = files(&self.published.borrow_and_update());
    }
}

/// Ends once `after` files were added since the last pass; never without a
/// writer, with `after` = 0 or once the writer has stopped.
async fn grown(growth: Option<&mut Growth>, after: usize) {
    let Some(g) = growth.filter(|_| after > 0) else {
        return std::future::pending().await;
    };
    while g.published.changed().await.is_ok() {
        let now = files(&g.published.borrow_and_update());
        // Another process's compaction lowers the count: start from there.
        g.base = g.base.min(now);
        if plan::compaction_due(now, g.base, after) {
            return;
        }
    }
    std::future::pending().await
}

fn files(published: &Published) -> usize {
    [&published.tables.events, &published.tables.rejected]
        .into_iter()
        .filter_map(|t| t.snapshot().ok())
        .map(|s| s.log_data().num_files())
        .sum()
}
