//! The keyshift process: collector + store + API, and the Kafka consumer when
//! `kafka.brokers` is set (`keyshift run --kafka-brokers`, `keyshift ingest`);
//! or, with [`start_collector`], the collector alone producing to Kafka
//! (`keyshift collector --brokers`).
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
use keyshift_ingest::IngestWatermark;
use keyshift_ingest::Pipeline;
use keyshift_ingest::collector::{self, CollectorState};
use keyshift_ingest::metrics::{IngestMetrics, KafkaMetrics};
use keyshift_metrics::SqlState;
use keyshift_metrics::kpi_gauges::KpiGauges;
use keyshift_metrics::metrics::ApiMetrics;
use keyshift_rollout::Controller;
use keyshift_rollout::kafka::DecisionPublisher;
use keyshift_rollout::lock::ControllerLock;
use keyshift_rollout::metrics::RolloutMetrics;
use keyshift_store::metrics::{QueryMetrics, StoreMetrics};
use keyshift_store::query::QueryLimits;
use keyshift_store::{ExecutorSettings, QueryEngine, QueryExecutor, Tables, Writer};
use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;

mod supervise;
use supervise::{Tasks, supervise};

/// The controller's clock.
pub type Clock = Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

/// How [`start_with`] runs the process; [`StartOptions::default`] is
/// `keyshift run`: wall clock, the collector's live watermark, the
/// controller evaluating on its own schedule.
#[derive(Clone)]
pub struct StartOptions {
    /// The time the controller records its start decisions at.
    pub clock: Clock,
    /// The ingest watermark of the embedded collector. Default: live (the
    /// collector commits before it answers). A simulation that holds
    /// events back sets a tracked one and moves it itself.
    pub watermark: Option<IngestWatermark>,
    /// `false`: the controller is not run on a timer; the caller drives it
    /// with [`Controller::tick`] (the demo's simulated clock).
    pub run_controller: bool,
    /// Faults injected into the store writer's commits (tests only).
    #[doc(hidden)]
    pub writer_faults: Option<keyshift_store::writer::Faults>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(chrono::Utc::now),
            watermark: None,
            run_controller: true,
            writer_faults: None,
        }
    }
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("watermark", &self.watermark)
            .field("run_controller", &self.run_controller)
            .field("writer_faults", &self.writer_faults.is_some())
            .finish_non_exhaustive()
    }
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Cancel to shut down.
    pub shutdown: CancellationToken,
    /// The rollout controller, when rollouts are configured.
    pub controller: Option<Arc<Controller>>,
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
    start_with(config, shutdown, StartOptions::default()).await
}

/// [`start`] with a clock, watermark or controller drive of the caller's.
pub async fn start_with(
    config: Config,
    shutdown: CancellationToken,
    options: StartOptions,
) -> anyhow::Result<Running> {
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
    ingest_metrics.set_rp_labels(
        config.auth.rp_tokens.iter().map(|t| t.rp_id.clone()),
        config.ingest.max_rp_labels,
    );
    let api_metrics = ApiMetrics::new(&registry)?;
    let kafka_metrics = KafkaMetrics::new(&registry)?;

    let root = config.store_root();
    let tables = Tables::open_or_create(&root, &config.store.storage_options)
        .await
        .with_context(|| format!("opening tables under {root}"))?;
    // The writer outlives the listener: it is stopped only after requests
    // have drained, so nothing accepted is left uncommitted.
    let writer_stop = CancellationToken::new();
    let (writer, writer_task) = Writer::spawn_with(
        tables,
        config.store.clone(),
        store_metrics,
        writer_stop.clone(),
        options.writer_faults.clone().unwrap_or_default(),
    )?;
    // Queries run on their own runtime; shutdown cancels those in flight.
    let executor = QueryExecutor::new(
        ExecutorSettings::from(&config.store),
        QueryMetrics::new(&registry)?,
        shutdown.child_token(),
    )?;
    let engine = QueryEngine::live(
        writer.published(),
        QueryLimits::from(&config.store),
        executor,
    )?;
    let consumer_engine = engine.clone();
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
    // The HTTP collector commits before it answers: its data is complete up
    // to now. A Kafka consumer moves its own watermark.
    let watermark = match (&config.kafka.brokers, options.watermark) {
        (None, None) => IngestWatermark::live(),
        (None, Some(w)) => w,
        (Some(_), _) => IngestWatermark::tracked(),
    };
    let (controller, rollout_routes, _lock) = if config.rollout.rollouts.is_empty() {
        (None, Router::new(), None)
    } else {
        let lock = ControllerLock::acquire(data_dir)?;
        let w = watermark.clone();
        let publisher = match &config.kafka.brokers {
            None => None,
            Some(brokers) => {
                let (brokers, r, extra) = (
                    brokers.clone(),
                    config.rollout.clone(),
                    config.kafka.librdkafka.clone(),
                );
                Some(
                    tokio::task::spawn_blocking(move || {
                        DecisionPublisher::connect(
                            &brokers,
                            &r.decisions_topic,
                            &r.transactional_id,
                            &extra,
                        )
                    })
                    .await??,
                )
            }
        };
        let controller = Arc::new(
            Controller::start_with(
                config.rollout.clone(),
                writer.clone(),
                engine.clone(),
                Arc::new(move || w.get()),
                RolloutMetrics::new(&registry)?,
                publisher,
                (options.clock)(),
            )
            .await?,
        );
        let routes = keyshift_rollout::api::router(keyshift_rollout::api::RolloutState {
            controller: controller.clone(),
            auth: auth.clone(),
        });
        (Some(controller), routes, Some(lock))
    };

    if config.kpi_gauges.enabled {
        let w = watermark.clone();
        tokio::spawn(keyshift_metrics::kpi_gauges::run(
            engine.clone(),
            config.kpi_gauges.clone(),
            KpiGauges::new(&registry)?,
            Arc::new(move || w.get()),
            config
                .auth
                .rp_tokens
                .iter()
                .map(|t| t.rp_id.clone())
                .collect(),
            shutdown.child_token(),
        ));
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .merge(rollout_routes)
        .merge(collector::router(CollectorState::store(
            pipeline.clone(),
            auth.clone(),
        )))
        .merge(keyshift_metrics::router(SqlState {
            engine,
            auth,
            registry,
            metrics: api_metrics,
            watermark: {
                let w = watermark.clone();
                Arc::new(move || w.get())
            },
        }));
    let app = with_fallbacks(app);
    let (listener, addr) = bind(config.server.listen).await?;
    info!(%addr, data_dir = %data_dir.display(), tables = %root, "keyshift listening");

    let consumer = match &config.kafka.brokers {
        None => None,
        Some(_) => Some(tokio::spawn(keyshift_ingest::kafka::run_consumer(
            config.kafka.clone(),
            pipeline.clone(),
            consumer_engine,
            kafka_metrics,
            watermark.clone(),
            shutdown.clone(),
        ))),
    };
    let controller_task = controller
        .clone()
        .filter(|_| options.run_controller)
        .map(|c| tokio::spawn(c.run(shutdown.child_token())));
    let expiry = tokio::spawn(expire_dedup(pipeline, shutdown.child_token()));
    let shutdown_for_tasks = shutdown.clone();
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await
    });
    let tasks = Tasks {
        server: Some(server),
        consumer,
        controller: controller_task,
        writer: Some(writer_task),
        expiry: Some(expiry),
    };
    let task = tokio::spawn(async move {
        let result = supervise(
            tasks,
            writer_stop,
            shutdown_for_tasks,
            config.server.shutdown_timeout,
        )
        .await;
        // Held until everything stopped: one controller per data dir.
        drop(_lock);
        result
    });
    drop(writer);
    Ok(Running {
        addr,
        shutdown,
        controller,
        task,
    })
}

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
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await;
        // Every answered request was acknowledged already; this only waits
        // for messages of requests cut short by the shutdown.
        let f = forwarder.clone();
        let _ = tokio::task::spawn_blocking(move || f.flush(deadline)).await;
        served
    });
    let tasks = Tasks {
        server: Some(server),
        consumer: None,
        controller: None,
        writer: None,
        expiry: None,
    };
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

/// JSON 404 and 405 for whatever no route matched.
fn with_fallbacks(app: Router) -> Router {
    app.fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
}

async fn bind(listen: SocketAddr) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
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
