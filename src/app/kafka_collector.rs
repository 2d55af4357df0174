//! `keyshift collector --brokers`: the collector alone, producing each
//! event to Kafka; no store in this process.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use keyshift_http::Authenticator;
use keyshift_ingest::collector::{self, CollectorState};
use keyshift_ingest::metrics::{IngestMetrics, KafkaMetrics};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::supervise::{Stage, Tasks, supervise};
use super::{Running, bind, healthz, with_fallbacks};
use crate::config::Config;

/// Runs the Kafka-mode collector until `shutdown` or a failure.
pub async fn run_collector(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let running = start_collector(config, shutdown).await?;
    running.wait().await
}

/// Starts the collector in Kafka mode: `POST /v1/events` produced to
/// `kafka.topic`, `/metrics`, `/healthz`; no store in this process.
pub async fn start_collector(
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let mut errors = config.validate();
    if config.kafka.brokers.is_none() {
        errors.push("the Kafka-mode collector needs kafka.brokers (--brokers)".to_owned());
    }
    if !errors.is_empty() {
        return Err(crate::config::ConfigErrors(errors).into());
    }
    let registry = Registry::new();
    let forwarder = Arc::new(keyshift_ingest::kafka::Forwarder::new(
        &config.kafka,
        &config.ingest,
        IngestMetrics::new(&registry)?,
        KafkaMetrics::new(&registry)?,
    )?);
    let auth = Arc::new(Authenticator::new(&config.auth));
    if auth.is_open() {
        warn!("no tokens configured: the API is open, on loopback only");
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .merge(collector::router(CollectorState::kafka(
            forwarder.clone(),
            auth,
        )))
        .merge(keyshift_metrics::metrics_router(registry));
    let app = with_fallbacks(app);
    let (listener, addr) = bind(config.server.listen).await?;
    info!(
        %addr,
        brokers = config.kafka.brokers.as_deref().unwrap_or_default(),
        topic = %config.kafka.topic,
        "keyshift collector listening (Kafka mode)"
    );
    let server_shutdown = shutdown.clone();
    let deadline = config.server.shutdown_timeout;
    let server = async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await;
        // Every answered request was acknowledged already; this only waits
        // for messages of requests cut short by the shutdown.
        let f = forwarder.clone();
        let _ = tokio::task::spawn_blocking(move || f.flush(deadline)).await;
        served
    };
    let mut tasks = Tasks::default();
    tasks.spawn("http server", Stage::Source, server);
    let task = tokio::spawn(supervise(
        tasks,
        CancellationToken::new(),
        shutdown.clone(),
        deadline,
    ));
    Ok(Running {
        addr,
        shutdown,
        controller: None,
        task,
    })
}
