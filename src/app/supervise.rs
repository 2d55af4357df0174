//! Supervision of a started process's tasks: the first one to end (or
//! shutdown) stops the sources, then the writer, each within the deadline;
//! the first failure is what [`super::run`] returns.

use std::time::Duration;

use anyhow::anyhow;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub(super) struct Tasks {
    pub server: Option<JoinHandle<std::io::Result<()>>>,
    pub consumer: Option<JoinHandle<keyshift_ingest::Result<()>>>,
    pub controller: Option<JoinHandle<keyshift_rollout::Result<()>>>,
    pub writer: Option<JoinHandle<keyshift_store::Result<()>>>,
    pub expiry: Option<JoinHandle<()>>,
}

async fn join_opt<T>(handle: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match handle {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

/// Runs until shutdown or the first task that ends; then stops the sources
/// (HTTP, Kafka) so they hand over what they hold, and the writer last.
pub(super) async fn supervise(
    mut t: Tasks,
    writer_stop: CancellationToken,
    shutdown: CancellationToken,
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut failure: Option<anyhow::Error> = None;
    // A task that ends cleanly after shutdown began is not a failure: the
    // sources drop their writer handles while draining, which ends the writer.
    let unexpected =
        |what: &str| (!shutdown.is_cancelled()).then(|| anyhow!("{what} stopped unexpectedly"));
    tokio::select! {
        biased;
        () = shutdown.cancelled() => info!("shutting down: draining"),
        res = join_opt(&mut t.server) => {
            t.server = None;
            failure = flatten(res, "http server").or_else(|| unexpected("http server"));
        }
        res = join_opt(&mut t.consumer) => {
            t.consumer = None;
            failure = flatten(res, "kafka consumer").or_else(|| unexpected("kafka consumer"));
        }
        res = join_opt(&mut t.controller) => {
            t.controller = None;
            failure = flatten(res, "rollout controller").or_else(|| unexpected("rollout controller"));
        }
        res = join_opt(&mut t.writer) => {
            t.writer = None;
            failure = flatten(res, "store writer").or_else(|| unexpected("store writer"));
        }
    }
    if let Some(e) = &failure {
        error!(error = %e, "a component failed; shutting down");
    }
    shutdown.cancel();
    merge(
        &mut failure,
        drain(t.server.take(), deadline, "http server").await,
    );
    merge(
        &mut failure,
        drain(t.consumer.take(), deadline, "kafka consumer").await,
    );
    merge(
        &mut failure,
        drain(t.controller.take(), deadline, "rollout controller").await,
    );
    if let Some(expiry) = t.expiry.take() {
        expiry.abort();
    }
    writer_stop.cancel();
    merge(
        &mut failure,
        drain(t.writer.take(), deadline, "store writer").await,
    );
    match failure {
        None => {
            info!("keyshift stopped");
            Ok(())
        }
        Some(e) => Err(e),
    }
}

/// Waits up to `deadline` for a stopping task; its failure, if any.
async fn drain<E: Into<anyhow::Error>>(
    handle: Option<JoinHandle<Result<(), E>>>,
    deadline: Duration,
    what: &str,
) -> Option<anyhow::Error> {
    let handle = handle?;
    match tokio::time::timeout(deadline, handle).await {
        Ok(res) => flatten(res, what),
        Err(_) => Some(anyhow!("{what} did not stop within {deadline:?}")),
    }
}

fn merge(failure: &mut Option<anyhow::Error>, new: Option<anyhow::Error>) {
    if let Some(e) = new {
        failure.get_or_insert(e);
    }
}

fn flatten<E: Into<anyhow::Error>>(
    res: Result<Result<(), E>, tokio::task::JoinError>,
    what: &str,
) -> Option<anyhow::Error> {
    match res {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.into().context(format!("{what} failed"))),
        Err(e) => Some(anyhow!("{what} panicked: {e}")),
    }
}
