//! The background maintenance task: a pass every `interval`, on a thread of
//! its own at the lowest CPU priority, so that compaction's Parquet decoding
//! and encoding never competes with ingest or the API on their runtime.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Maintainer, PassOptions};
use crate::{StoreError, WriterHandle};

/// Nice value of the maintenance thread: the OS runs everything else first.
const NICE: i32 = 19;

/// Starts passes every `interval` (the first one `interval` after start)
/// until `stop` is cancelled. After each pass the writer reloads the tables,
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
                .on_thread_start(|| crate::executor::lower_priority(NICE))
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
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match maintainer.pass(&PassOptions::scheduled(), stop).await {
            Ok(_) => {
                if let Some(w) = writer
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
    }
}
