//! Supervision of a started process's tasks: one list of named tasks, each
//! with the stage at which shutdown stops it. The first task to end (or
//! shutdown) stops the sources, then the upkeep, then the writer, each
//! within the deadline; the first failure is what [`super::run`] returns.

use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// When shutdown stops a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Takes input or makes decisions (HTTP, Kafka, the controller): stops
    /// on the shutdown token and is drained first, in the order spawned, so
    /// that what it accepted reaches the writer.
    Source,
    /// Background upkeep: aborted once the sources are drained.
    Upkeep,
    /// The store writer: told to stop last (`writer_stop`), once nothing
    /// can hand it rows, and drained so it commits what it holds.
    Writer,
}

struct Task {
    name: &'static str,
    stage: Stage,
}

/// The process's tasks, in the order they were spawned.
#[derive(Default)]
pub(super) struct Tasks {
    tasks: Vec<Task>,
    handles: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Tasks {
    /// Spawns `fut` as the task `name`, stopped at `stage`.
    pub fn spawn<E>(
        &mut self,
        name: &'static str,
        stage: Stage,
        fut: impl Future<Output = Result<(), E>> + Send + 'static,
    ) where
        E: Into<anyhow::Error> + 'static,
    {
        self.tasks.push(Task { name, stage });
        self.handles
            .push(tokio::spawn(async move { fut.await.map_err(Into::into) }));
    }

    /// Spawns background upkeep that cannot fail (it ends on its own token).
    pub fn spawn_upkeep(
        &mut self,
        name: &'static str,
        fut: impl Future<Output = ()> + Send + 'static,
    ) {
        self.spawn(name, Stage::Upkeep, async move {
            fut.await;
            Ok::<(), std::convert::Infallible>(())
        });
    }

    /// Supervises a task spawned elsewhere (the store writer); a panic in it
    /// is reported as that task's panic.
    pub fn adopt<E>(&mut self, name: &'static str, stage: Stage, handle: JoinHandle<Result<(), E>>)
    where
        E: Into<anyhow::Error> + Send + 'static,
    {
        self.spawn(name, stage, async move {
            match handle.await {
                Ok(result) => result.map_err(Into::into),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(anyhow!("{e}")),
            }
        });
    }

    /// Removes and returns the tasks of `stage`, in spawn order.
    fn take(&mut self, stage: Stage) -> Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> {
        let mut taken = Vec::new();
        let mut kept = (Vec::new(), Vec::new());
        for (task, handle) in self.tasks.drain(..).zip(self.handles.drain(..)) {
            if task.stage == stage {
                taken.push((task.name, handle));
            } else {
                kept.0.push(task);
                kept.1.push(handle);
            }
        }
        (self.tasks, self.handles) = kept;
        taken
    }
}

/// Runs until shutdown or the first task that ends; then stops the tasks
/// stage by stage.
pub(super) async fn supervise(
    mut tasks: Tasks,
    writer_stop: CancellationToken,
    shutdown: CancellationToken,
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut failure: Option<anyhow::Error> = None;
    if !tasks.handles.is_empty() {
        let mut first = futures::future::select_all(std::mem::take(&mut tasks.handles));
        let ended = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            ended = &mut first => Some(ended),
        };
        match ended {
            None => {
                info!("shutting down: draining");
                tasks.handles = first.into_inner();
            }
            Some((res, i, rest)) => {
                let name = tasks.tasks.remove(i).name;
                tasks.handles = rest;
                // A task that ends cleanly after shutdown began is not a
                // failure: the sources drop their writer handles while
                // draining, which ends the writer.
                failure = flatten(res, name).or_else(|| {
                    (!shutdown.is_cancelled()).then(|| anyhow!("{name} stopped unexpectedly"))
                });
            }
        }
    }
    if let Some(e) = &failure {
        error!(error = %e, "a component failed; shutting down");
    }
    shutdown.cancel();
    for (name, handle) in tasks.take(Stage::Source) {
        merge(&mut failure, drain(handle, deadline, name).await);
    }
    for (_, handle) in tasks.take(Stage::Upkeep) {
        handle.abort();
    }
    writer_stop.cancel();
    for (name, handle) in tasks.take(Stage::Writer) {
        merge(&mut failure, drain(handle, deadline, name).await);
    }
    match failure {
        None => {
            info!("keyshift stopped");
            Ok(())
        }
        Some(e) => Err(e),
    }
}

/// Waits up to `deadline` for a stopping task; its failure, if any.
async fn drain(
    handle: JoinHandle<anyhow::Result<()>>,
    deadline: Duration,
    what: &str,
) -> Option<anyhow::Error> {
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

fn flatten(
    res: Result<anyhow::Result<()>, tokio::task::JoinError>,
    what: &str,
) -> Option<anyhow::Error> {
    match res {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.context(format!("{what} failed"))),
        Err(e) => Some(anyhow!("{what} panicked: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing source stops the process; the others are drained in their
    /// stages and the writer stops last.
    #[tokio::test]
    async fn the_first_failure_stops_every_stage_in_order() {
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (shutdown, writer_stop) = (CancellationToken::new(), CancellationToken::new());
        let mut tasks = Tasks::default();
        let stopped = |name: &'static str, token: CancellationToken| {
            let order = order.clone();
            async move {
                token.cancelled().await;
                order.lock().expect("lock").push(name);
                Ok::<(), std::io::Error>(())
            }
        };
        tasks.spawn(
            "http server",
            Stage::Source,
            stopped("http server", shutdown.clone()),
        );
        tasks.spawn(
            "store writer",
            Stage::Writer,
            stopped("store writer", writer_stop.clone()),
        );
        tasks.spawn(
            "upkeep",
            Stage::Upkeep,
            std::future::pending::<Result<(), std::io::Error>>(),
        );
        tasks.spawn("kafka consumer", Stage::Source, async {
            Err::<(), _>(std::io::Error::other("broker gone"))
        });
        let err = supervise(tasks, writer_stop, shutdown, Duration::from_secs(5))
            .await
            .expect_err("a failed task fails the process");
        assert_eq!(format!("{err:#}"), "kafka consumer failed: broker gone");
        assert_eq!(
            *order.lock().expect("lock"),
            vec!["http server", "store writer"]
        );
    }

    #[tokio::test]
    async fn a_task_that_ends_on_its_own_is_a_failure_and_a_stuck_one_is_named() {
        let shutdown = CancellationToken::new();
        let mut tasks = Tasks::default();
        tasks.spawn("rollout controller", Stage::Source, async {
            Ok::<(), std::io::Error>(())
        });
        let err = supervise(
            tasks,
            CancellationToken::new(),
            shutdown,
            Duration::from_secs(5),
        )
        .await
        .expect_err("ended unexpectedly");
        assert_eq!(err.to_string(), "rollout controller stopped unexpectedly");

        let shutdown = CancellationToken::new();
        let mut tasks = Tasks::default();
        tasks.spawn(
            "http server",
            Stage::Source,
            std::future::pending::<Result<(), std::io::Error>>(),
        );
        shutdown.cancel();
        let err = supervise(
            tasks,
            CancellationToken::new(),
            shutdown,
            Duration::from_millis(50),
        )
        .await
        .expect_err("stuck");
        assert_eq!(err.to_string(), "http server did not stop within 50ms");
    }
}
