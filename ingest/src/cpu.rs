//! The threads that parse and validate ingest input: request bodies of the
//! HTTP collector and batches of the Kafka consumer.
//!
//! One thread per core, shared by the whole process, at a slightly lower
//! CPU priority ([`NICE`]) than the async workers and the store's writer.
//! When both cores are busy with ingest, the OS then runs a `/healthz`
//! probe, a `/metrics` scrape or the next commit first, and parsing takes
//! the time left; queries (`store.query_nice`, 19 by default) and table
//! maintenance (19) still come after ingest. Bounding the threads to the cores also
//! keeps sixteen request bodies from being parsed at once on two cores,
//! which only lengthens every one of them (tokio's blocking pool, used
//! before, has no such bound).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

/// Nice value of the ingest threads: above the query threads, below the
/// async workers.
pub const NICE: i32 = 5;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The job panicked (a bug); else the pool could not run it.
    pub panicked: bool,
    /// The panic message, or why the pool could not run the job.
    pub message: String,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.panicked {
            write!(f, "panicked: {}", self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

/// Hands `job` to an ingest thread at once and returns its result as a
/// future, so that the caller's runtime is never blocked (and several jobs
/// handed over in a row run side by side).
pub fn run<R, F>(job: F) -> impl Future<Output = Result<R, Lost>> + Send + 'static
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let wrapped: Job = Box::new(move || {
        let out = std::panic::catch_unwind(AssertUnwindSafe(job)).map_err(|p| Lost {
            panicked: true,
            message: panic_message(p.as_ref()),
        });
        // The caller may have gone (its request was cancelled): nothing to do.
        let _ = tx.send(out);
    });
    let handed = pool().and_then(|q| {
        q.send(wrapped).map_err(|_| Lost {
            panicked: false,
            message: "the ingest threads have stopped".to_owned(),
        })
    });
    async move {
        handed?;
        rx.await.unwrap_or_else(|_| {
            Err(Lost {
                panicked: false,
                message: "an ingest thread stopped before answering".to_owned(),
            })
        })
    }
}

/// The pool's queue, started on first use.
fn pool() -> Result<&'static mpsc::Sender<Job>, Lost> {
    static POOL: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    POOL.get_or_init(start).as_ref().map_err(|e| Lost {
        panicked: false,
        message: e.clone(),
    })
}

fn start() -> Result<mpsc::Sender<Job>, String> {
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("keyshift-ingest-{i}"))
            .spawn(move || {
                keyshift_store::priority::lower_priority(NICE);
                loop {
                    // The lock is held only while taking the next job.
                    let job = rx
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| format!("cannot start the ingest threads: {e}"))?;
    }
    Ok(tx)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_returns_its_result_and_a_panic_is_reported_as_one() {
        assert_eq!(run(|| 6 * 7).await, Ok(42));
        let lost = run(|| -> u8 { panic!("bad input handling") })
            .await
            .expect_err("panicked");
        assert!(lost.panicked, "{lost}");
        assert_eq!(lost.message, "bad input handling");
        // The thread that ran the panicking job still serves.
        let many = futures::future::join_all((0..32).map(|i| run(move || i))).await;
        assert_eq!(many.into_iter().map(Result::unwrap).sum::<i32>(), 496);
    }

    #[test]
    fn the_threads_run_at_the_ingest_priority() {
        #[cfg(target_os = "linux")]
        {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let nice = rt
                .block_on(run(|| {
                    rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                }))
                .expect("ran")
                .expect("getpriority");
            // A test process niced beyond NICE already cannot go back up.
            let own = rustix::process::getpriority_process(None).expect("getpriority");
            assert_eq!(nice, NICE.max(own));
        }
    }
}
