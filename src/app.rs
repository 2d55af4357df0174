//! The embedded default: collector + store + API in one process.
//!
//! Start-up order: tables, writer, query engine, pipeline (secret, dedup
//! index), then the listener. Shutdown order is the reverse: stop accepting,
//! drain in-flight requests, then let the writer commit what it holds, all
//! within `server.shutdown_timeout`. A task that fails cancels the others and
//! makes [`run`] return an error (non-zero exit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::routing::get;
use axum::{Json, Router};
use keyshift_http::{ApiError, Authenticator};
use keyshift_ingest::Pipeline;
use keyshift_ingest::collector::{self, CollectorState};
use keyshift_ingest::metrics::IngestMetrics;
use keyshift_metrics::SqlState;
use keyshift_metrics::metrics::ApiMetrics;
use keyshift_store::metrics::StoreMetrics;
use keyshift_store::query::QueryLimits;
use keyshift_store::{QueryEngine, Tables, Writer};
use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;

/// A started server.
#[derive(Debug)]
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Cancel to shut down.
    pub shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the server has stopped, returning its outcome.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task
            .await
            .map_err(|e| anyhow!("server task panicked: {e}"))?
    }

    /// Shuts down and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Runs until `shutdown` is cancelled or a component fails.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let running = start(config, shutdown).await?;
    running.wait().await
}

/// Starts every component and returns once the listener is bound.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let errors = config.validate();
    if !errors.is_empty() {
        return Err(crate::config::ConfigErrors(errors).into());
    }
    let data_dir = &config.server.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;

    let registry = Registry::new();
    let store_metrics = StoreMetrics::new(&registry)?;
    let ingest_metrics = IngestMetrics::new(&registry)?;
    let api_metrics = ApiMetrics::new(&registry)?;

    let root = config.store_root();
    let tables = Tables::open_or_create(&root, &config.store.storage_options)
        .await
        .with_context(|| format!("opening tables under {root}"))?;
    // The writer outlives the listener: it is stopped only after requests
    // have drained, so nothing accepted is left uncommitted.
    let writer_stop = CancellationToken::new();
    let (writer, writer_task) = Writer::spawn(
        tables,
        config.store.clone(),
        store_metrics,
        writer_stop.clone(),
    )?;
    let engine = QueryEngine::live(writer.published(), QueryLimits::from(&config.store))?;
    let pipeline = Arc::new(
        Pipeline::start(
            config.ingest.clone(),
            data_dir,
            writer.clone(),
            &engine,
            ingest_metrics,
        )
        .await?,
    );
    let auth = Arc::new(Authenticator::new(&config.auth));
    if auth.is_open() {
        warn!("no tokens configured: the API is open, on loopback only");
    }

    let app = Router::new()
        .route("/healthz", get(healthz))
        .merge(collector::router(CollectorState::new(
            pipeline.clone(),
            auth.clone(),
        )))
        .merge(keyshift_metrics::router(SqlState {
            engine,
            auth,
            registry,
            metrics: api_metrics,
        }))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    info!(%addr, data_dir = %data_dir.display(), tables = %root, "keyshift listening");

    let expiry = tokio::spawn(expire_dedup(pipeline, shutdown.child_token()));
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await
    });
    let deadline = config.server.shutdown_timeout;
    let task = tokio::spawn(supervise(
        server,
        writer_task,
        expiry,
        writer_stop,
        shutdown.clone(),
        deadline,
    ));
    drop(writer);
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

async fn supervise(
    mut server: JoinHandle<std::io::Result<()>>,
    mut writer: JoinHandle<keyshift_store::Result<()>>,
    expiry: JoinHandle<()>,
    writer_stop: CancellationToken,
    shutdown: CancellationToken,
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut failure: Option<anyhow::Error> = None;
    tokio::select! {
        res = &mut server => {
            if let Some(e) = flatten(res, "http server") {
                failure = Some(e);
            }
            shutdown.cancel();
        }
        res = &mut writer => {
            let e = flatten(res, "store writer").unwrap_or_else(|| anyhow!("store writer stopped unexpectedly"));
            error!(error = %e, "store writer failed; shutting down");
            shutdown.cancel();
            let _ = tokio::time::timeout(deadline, &mut server).await;
            expiry.abort();
            return Err(e);
        }
        () = shutdown.cancelled() => {
            info!("shutting down: draining requests");
            match tokio::time::timeout(deadline, &mut server).await {
                Ok(res) => failure = flatten(res, "http server"),
                Err(_) => failure = Some(anyhow!("requests did not drain within {deadline:?}")),
            }
        }
    }
    expiry.abort();
    writer_stop.cancel();
    match tokio::time::timeout(deadline, &mut writer).await {
        Ok(res) => {
            if let Some(e) = flatten(res, "store writer") {
                failure.get_or_insert(e);
            }
        }
        Err(_) => {
            failure.get_or_insert(anyhow!("store writer did not finish within {deadline:?}"));
        }
    }
    match failure {
        None => {
            info!("keyshift stopped");
            Ok(())
        }
        Some(e) => Err(e),
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

async fn expire_dedup(pipeline: Arc<Pipeline>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                let n = pipeline.expire_dedup(chrono::Utc::now());
                if n > 0 {
                    info!(expired = n, "dedup keys past the window forgotten");
                }
            }
        }
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
