//! The query runtime: where every DataFusion query runs.
//!
//! DataFusion executes plans as CPU-bound futures. On the runtime that serves
//! ingest, the collector, `/healthz` and `/metrics`, one heavy query would take
//! every worker thread and stall them all (and SIGTERM with them). So queries
//! run on a dedicated tokio runtime whose threads have a lower OS priority
//! (`store.query_nice`), the way DataFusion's `thread_pools` example and
//! InfluxDB 3's dedicated executor do it; the tables' object-store I/O stays
//! on the main runtime (see `tables.rs`).
//!
//! This module also owns admission and cancellation:
//! - two lanes: [`Lane::Adhoc`] (SQL API, `keyshift sql`, KPIs) with
//!   `store.query_concurrency` slots and a queue of `store.query_queue`, and
//!   [`Lane::Control`] (the rollout controller, dedup and decision-log loads)
//!   with one slot of its own, so ad-hoc queries cannot starve evaluations;
//! - a time limit per query: the query's task is aborted, and because every
//!   operator yields (see `session.rs`) its threads are free again at once;
//! - shutdown: cancelling the executor's token aborts every query.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Cancel, QueryMetrics, Refusal};
use crate::{Result, StoreConfig, StoreError};

/// Which slots a query competes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// SQL API, `keyshift sql`, KPI queries.
    Adhoc,
    /// The rollout controller's evaluations and keyshift's own loads.
    Control,
}

impl Lane {
    /// The lane's label in metrics and messages: `adhoc` or `control`.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Adhoc => "adhoc",
            Lane::Control => "control",
        }
    }
}

/// How long a refused client should wait before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Most queries that may wait for the control slot (they are few: one
/// evaluation at a time, plus loads).
const CONTROL_QUEUE: usize = 64;

/// Sizes of the query runtime and its lanes.
#[derive(Debug, Clone, Copy)]
pub struct ExecutorSettings {
    /// Worker threads of the query runtime (at least 1 is started).
    pub threads: usize,
    /// Nice value of the query threads, 0–19 (higher: lower priority; set on
    /// Linux only).
    pub nice: i32,
    /// Ad-hoc queries that may run at once (at least 1).
    pub concurrency: usize,
    /// Ad-hoc queries that may wait for a slot; beyond that they are refused.
    pub queue: usize,
    /// Longest wait for a slot, in either lane, before the query is refused.
    pub queue_timeout: Duration,
}

impl From<&StoreConfig> for ExecutorSettings {
    fn from(c: &StoreConfig) -> Self {
        Self {
            threads: c.query_threads(),
            nice: c.query_nice,
            concurrency: c.query_concurrency(),
            queue: c.query_queue,
            queue_timeout: c.query_queue_timeout,
        }
    }
}

/// Runs queries on the query runtime. Cheap to clone.
#[derive(Debug, Clone)]
pub struct QueryExecutor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: Handle,
    /// Shut down in the background on drop: a query that is still running
    /// must not hold up the process exit.
    runtime: Mutex<Option<Runtime>>,
    adhoc: Admission,
    control: Admission,
    stop: CancellationToken,
    metrics: QueryMetrics,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(rt) = runtime {
            rt.shutdown_background();
        }
    }
}

impl QueryExecutor {
    /// Starts the query runtime. Cancelling `stop` cancels every query, running
    /// or waiting, and refuses new ones.
    pub fn new(
        settings: ExecutorSettings,
        metrics: QueryMetrics,
        stop: CancellationToken,
    ) -> Result<Self> {
        let nice = settings.nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.threads.max(1))
            .thread_name("keyshift-query")
            .on_thread_start(move || crate::priority::lower_priority(nice))
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                path: "query runtime".to_owned(),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                handle: runtime.handle().clone(),
                runtime: Mutex::new(Some(runtime)),
                adhoc: Admission::new(
                    Lane::Adhoc,
                    settings.concurrency.max(1),
                    settings.queue,
                    settings.queue_timeout,
                ),
                control: Admission::new(Lane::Control, 1, CONTROL_QUEUE, settings.queue_timeout),
                stop,
                metrics,
            }),
        })
    }

    /// An executor with the store configuration's sizes, private metrics and
    /// its own stop token (`keyshift sql`, tools, tests).
    pub fn standalone(config: &StoreConfig) -> Result<Self> {
        Self::new(
            ExecutorSettings::from(config),
            QueryMetrics::unregistered(),
            CancellationToken::new(),
        )
    }

    /// The query runtime's handle (to inspect its tasks, say).
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    fn lane(&self, lane: Lane) -> &Admission {
        match lane {
            Lane::Adhoc => &self.inner.adhoc,
            Lane::Control => &self.inner.control,
        }
    }

    /// Waits for a slot in `lane`, then runs `work` on the query runtime for
    /// at most `limit`. The work is aborted when the limit passes, when the
    /// executor stops, or when the returned future is dropped (a client that
    /// went away).
    pub async fn run<T, F>(&self, lane: Lane, limit: Duration, work: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        let name = lane.name();
        let _slot = self.lane(lane).admit(&inner.metrics, &inner.stop).await?;
        if inner.stop.is_cancelled() {
            return Err(StoreError::ShuttingDown);
        }
        let running = inner.metrics.running(name);
        running.inc();
        let started = Instant::now();
        let mut task = Task {
            handle: inner.handle.spawn(work),
            reason: Some(Cancel::Abandoned),
            metrics: &inner.metrics,
            lane: name,
        };
        let result = tokio::select! {
            biased;
            res = &mut task.handle => {
                task.reason = None;
                match res {
                    Ok(Err(e @ StoreError::QueryMemory { .. })) => {
                        inner.metrics.cancelled(name, Cancel::Memory);
                        Err(e)
                    }
                    Ok(r) => r,
                    Err(e) if e.is_panic() => Err(StoreError::QueryPanicked(panic_message(e))),
                    Err(_) => Err(StoreError::ShuttingDown),
                }
            }
            () = inner.stop.cancelled() => {
                task.reason = Some(Cancel::Shutdown);
                Err(StoreError::ShuttingDown)
            }
            () = tokio::time::sleep(limit) => {
                task.reason = Some(Cancel::Timeout);
                Err(StoreError::QueryTimeout(limit))
            }
        };
        running.dec();
        inner.metrics.ran(name, started.elapsed());
        result
    }
}

/// A query task that is aborted unless it finished.
struct Task<'a, T> {
    handle: JoinHandle<T>,
    /// Why it is being left, when it did not finish; `None` once it finished.
    reason: Option<Cancel>,
    metrics: &'a QueryMetrics,
    lane: &'static str,
}

impl<T> Drop for Task<'_, T> {
    fn drop(&mut self) {
        if let Some(reason) = self.reason
            && !self.handle.is_finished()
        {
            self.handle.abort();
            self.metrics.cancelled(self.lane, reason);
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// Slots of one lane and the queue in front of them.
#[derive(Debug)]
struct Admission {
    lane: Lane,
    slots: Arc<Semaphore>,
    size: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

/// Counts a waiter out when it stops waiting, however that happens.
struct Waiting<'a>(&'a AtomicUsize, prometheus::IntGauge);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.dec();
    }
}

impl Admission {
    fn new(lane: Lane, slots: usize, max_waiting: usize, wait: Duration) -> Self {
        Self {
            lane,
            slots: Arc::new(Semaphore::new(slots)),
            size: slots,
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait,
        }
    }

    async fn admit(
        &self,
        metrics: &QueryMetrics,
        stop: &CancellationToken,
    ) -> Result<OwnedSemaphorePermit> {
        let lane = self.lane.name();
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let queued = metrics.queued(lane);
        queued.inc();
        let _waiting = Waiting(&self.waiting, queued);
        if ahead >= self.max_waiting {
            metrics.rejected(lane, Refusal::QueueFull);
            return Err(StoreError::Busy {
                reason: format!("{} {lane} queries running and {ahead} waiting", self.size),
                retry_after: RETRY_AFTER,
            });
        }
        tokio::select! {
            () = stop.cancelled() => Err(StoreError::ShuttingDown),
            permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()) => match permit {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(_closed)) => Err(StoreError::ShuttingDown),
                Err(_elapsed) => {
                    metrics.rejected(lane, Refusal::QueueTimeout);
                    Err(StoreError::Busy {
                        reason: format!("no {lane} query slot free within {:?}", self.wait),
                        retry_after: RETRY_AFTER,
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(concurrency: usize, queue: usize, wait: Duration) -> ExecutorSettings {
        ExecutorSettings {
            threads: 2,
            nice: 10,
            concurrency,
            queue,
            queue_timeout: wait,
        }
    }

    fn executor(concurrency: usize, queue: usize, wait: Duration) -> QueryExecutor {
        QueryExecutor::new(
            settings(concurrency, queue, wait),
            QueryMetrics::unregistered(),
            CancellationToken::new(),
        )
        .expect("executor")
    }

    /// A query that runs until it is released.
    fn blocked(
        release: &Arc<tokio::sync::Notify>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let release = release.clone();
        async move {
            release.notified().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_a_long_wait_in_time() {
        let ex = executor(1, 1, Duration::from_millis(200));
        let release = Arc::new(tokio::sync::Notify::new());
        let long = Duration::from_secs(60);
        let first = tokio::spawn({
            let (ex, work) = (ex.clone(), blocked(&release));
            async move { ex.run(Lane::Adhoc, long, work).await }
        });
        while ex.inner.adhoc.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let second = tokio::spawn({
            let (ex, work) = (ex.clone(), blocked(&release));
            async move { ex.run(Lane::Adhoc, long, work).await }
        });
        while ex.inner.adhoc.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // Queue full: refused without waiting.
        let started = Instant::now();
        let third = ex.run(Lane::Adhoc, long, async { Ok(()) }).await;
        assert!(matches!(third, Err(StoreError::Busy { .. })), "{third:?}");
        assert!(started.elapsed() < Duration::from_millis(100));
        // The queued one gives up after the queue timeout.
        let second = second.await.expect("join");
        assert!(
            matches!(&second, Err(StoreError::Busy { reason, .. }) if reason.contains("within")),
            "{second:?}"
        );
        // The control lane is not affected by a full ad-hoc lane.
        ex.run(Lane::Control, long, async { Ok(()) })
            .await
            .expect("control slot");
        release.notify_waiters();
        first.await.expect("join").expect("first");
    }

    #[tokio::test]
    async fn time_limit_and_shutdown_abort_the_query_task() {
        let ex = executor(2, 2, Duration::from_secs(1));
        let release = Arc::new(tokio::sync::Notify::new());
        let r = ex
            .run(Lane::Adhoc, Duration::from_millis(50), blocked(&release))
            .await;
        assert!(matches!(r, Err(StoreError::QueryTimeout(_))), "{r:?}");
        wait_idle(&ex).await;

        let stop = CancellationToken::new();
        let ex = QueryExecutor::new(
            settings(2, 2, Duration::from_secs(1)),
            QueryMetrics::unregistered(),
            stop.clone(),
        )
        .expect("executor");
        let running = tokio::spawn({
            let (ex, work) = (ex.clone(), blocked(&release));
            async move { ex.run(Lane::Adhoc, Duration::from_secs(60), work).await }
        });
        while ex.handle().metrics().num_alive_tasks() == 0 {
            tokio::task::yield_now().await;
        }
        stop.cancel();
        let r = running.await.expect("join");
        assert!(matches!(r, Err(StoreError::ShuttingDown)), "{r:?}");
        wait_idle(&ex).await;
        let r = ex
            .run(Lane::Control, Duration::from_secs(1), async { Ok(()) })
            .await;
        assert!(matches!(r, Err(StoreError::ShuttingDown)), "{r:?}");
    }

    #[tokio::test]
    async fn a_dropped_caller_aborts_its_query() {
        let ex = executor(2, 2, Duration::from_secs(1));
        let release = Arc::new(tokio::sync::Notify::new());
        let call = ex.run(Lane::Adhoc, Duration::from_secs(60), blocked(&release));
        let cut = tokio::time::timeout(Duration::from_millis(50), call).await;
        assert!(cut.is_err());
        wait_idle(&ex).await;
    }

    #[tokio::test]
    async fn a_panicking_query_is_reported_not_retried() {
        let ex = executor(2, 2, Duration::from_secs(1));
        let r: Result<()> = ex
            .run(Lane::Adhoc, Duration::from_secs(5), async {
                panic!("boom");
            })
            .await;
        match r {
            Err(e @ StoreError::QueryPanicked(_)) => assert!(!e.is_retryable()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn query_threads_run_at_the_configured_nice_value() {
        let ex = executor(1, 1, Duration::from_secs(1));
        let (tx, rx) = std::sync::mpsc::channel();
        ex.handle().spawn(async move {
            let _ = tx.send(std::fs::read_to_string("/proc/thread-self/stat"));
        });
        let stat = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("task ran")
            .expect("thread stat");
        // Field 19 (nice) is the 17th after the parenthesised command name.
        let nice = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(16))
            .and_then(|f| f.parse::<i64>().ok());
        assert_eq!(nice, Some(10), "{stat}");
    }

    /// Waits until no task is left on the query runtime (the abort landed).
    async fn wait_idle(ex: &QueryExecutor) {
        let started = Instant::now();
        while ex.handle().metrics().num_alive_tasks() > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "a query task outlived its abort by 1 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
