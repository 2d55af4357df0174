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
use keyshift_ingest::metrics::KafkaMetrics;
use keyshift_metrics::SqlState;
use keyshift_metrics::kpi_gauges::KpiGauges;
use keyshift_metrics::kpi_rollups::KpiRollupMetrics;
use keyshift_metrics::metrics::ApiMetrics;
use keyshift_rollout::Controller;
use keyshift_rollout::kafka::DecisionPublisher;
use keyshift_rollout::lock::ControllerLock;
use keyshift_rollout::metrics::RolloutMetrics;
use keyshift_store::maintenance::{self, Maintainer};
use keyshift_store::metrics::MaintenanceMetrics;
use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;

mod erasure;
mod kafka_collector;
mod store;
mod supervise;
pub use kafka_collector::{run_collector, start_collector};
use store::Store;
use supervise::{Stage, Tasks, supervise};

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
    let running = match start(config, shutdown.clone()).await {
        Ok(running) => running,
        // SIGTERM while starting: nothing was accepted yet; stopping is
        // what was asked for, not a failure.
        Err(e) if shutdown.is_cancelled() => {
            warn!(error = %format!("{e:#}"), "stopped during start-up");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
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
    let mut tasks = Tasks::default();
    let store = Store::open(&config, &registry, &options, &shutdown, &mut tasks).await?;
    let auth = Arc::new(Authenticator::new(&config.auth));
    if auth.is_open() {
        warn!("no tokens configured: the API is open, on loopback only");
    }
    let rollouts = Rollouts::start(&config, &store, &registry, &auth, &options).await?;
    let app = router(
        &config,
        &store,
        &registry,
        auth,
        rollouts.routes,
        &mut tasks,
        &shutdown,
    )?;
    let (listener, addr) = bind(config.server.listen).await?;
    info!(%addr, data_dir = %data_dir.display(), tables = %store.root, "keyshift listening");

    // Spawned in drain order: HTTP first, so that nothing new comes in
    // while the consumer and the controller finish.
    let server_shutdown = shutdown.clone();
    tasks.spawn("http server", Stage::Source, async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await
    });
    if config.kafka.brokers.is_some() {
        tasks.spawn(
            "kafka consumer",
            Stage::Source,
            keyshift_ingest::kafka::run_consumer(
                config.kafka.clone(),
                store.pipeline.clone(),
                store.engine.clone(),
                KafkaMetrics::new(&registry)?,
                store.watermark.clone(),
                shutdown.clone(),
            ),
        );
    }
    if let Some(c) = rollouts
        .controller
        .clone()
        .filter(|_| options.run_controller)
    {
        tasks.spawn(
            "rollout controller",
            Stage::Source,
            c.run(shutdown.child_token()),
        );
    }
    tasks.spawn_upkeep(
        "dedup expiry",
        expire_dedup(store.pipeline.clone(), shutdown.child_token()),
    );
    // Registered whether or not the task runs, so that /metrics always
    // lists the same series.
    let maintenance_metrics = MaintenanceMetrics::new(&registry)?;
    if config.maintenance.runs_for(&store.root) {
        let maintainer = Maintainer::new(
            &store.root,
            &config.store.storage_options,
            config.maintenance.clone(),
            maintenance_metrics,
        );
        tasks.spawn_upkeep(
            "table maintenance",
            maintenance::background::spawn(
                Arc::new(maintainer),
                Some(store.writer.clone()),
                shutdown.child_token(),
            ),
        );
    } else {
        info!(
            tables = %store.root,
            "background table maintenance is off (maintenance.enabled); run `keyshift maintain`"
        );
    }
    let Store {
        writer_stop,
        writer,
        ..
    } = store;
    let lock = rollouts.lock;
    let shutdown_for_tasks = shutdown.clone();
    let task = tokio::spawn(async move {
        let result = supervise(
            tasks,
            writer_stop,
            shutdown_for_tasks,
            config.server.shutdown_timeout,
        )
        .await;
        // Held until everything stopped: one controller per data dir.
        drop(lock);
        result
    });
    // The sources hold their own handles; the writer ends once they drop them.
    drop(writer);
    Ok(Running {
        addr,
        shutdown,
        controller: rollouts.controller,
        task,
    })
}

/// The rollout controller and its routes, when rollouts are configured.
struct Rollouts {
    controller: Option<Arc<Controller>>,
    routes: Router,
    /// One controller per data dir, held until the process stopped.
    lock: Option<ControllerLock>,
}

impl Rollouts {
    async fn start(
        config: &Config,
        store: &Store,
        registry: &Registry,
        auth: &Arc<Authenticator>,
        options: &StartOptions,
    ) -> anyhow::Result<Self> {
        if config.rollout.rollouts.is_empty() {
            return Ok(Self {
                controller: None,
                routes: Router::new(),
                lock: None,
            });
        }
        let lock = ControllerLock::acquire(&config.server.data_dir)?;
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
        let w = store.watermark.clone();
        let controller = Arc::new(
            Controller::start_with(
                config.rollout.clone(),
                store.writer.clone(),
                store.engine.clone(),
                Arc::new(move || w.get()),
                RolloutMetrics::new(registry)?,
                publisher,
                (options.clock)(),
            )
            .await?,
        );
        let routes = keyshift_rollout::api::router(keyshift_rollout::api::RolloutState {
            controller: controller.clone(),
            auth: auth.clone(),
        });
        Ok(Self {
            controller: Some(controller),
            routes,
            lock: Some(lock),
        })
    }
}

/// Every route of the process; starts the KPI gauges' refresh, which
/// `/metrics` serves, and the KPI rollup task.
fn router(
    config: &Config,
    store: &Store,
    registry: &Registry,
    auth: Arc<Authenticator>,
    rollout_routes: Router,
    tasks: &mut Tasks,
    shutdown: &CancellationToken,
) -> anyhow::Result<Router> {
    let watermark = || -> keyshift_metrics::Watermark {
        let w = store.watermark.clone();
        Arc::new(move || w.get())
    };
    if config.kpi_gauges.enabled {
        let gauges = keyshift_metrics::kpi_gauges::run(
            store.engine.clone(),
            config.kpi_gauges.clone(),
            KpiGauges::new(registry)?,
            watermark(),
            config
                .auth
                .rp_tokens
                .iter()
                .map(|t| t.rp_id.clone())
                .collect(),
            shutdown.child_token(),
        );
        tasks.spawn_upkeep("kpi gauges", gauges);
    }
    if config.kpi_rollups.enabled {
        let rollups = keyshift_metrics::kpi_rollups::run(
            store.engine.clone(),
            config.kpi_rollups.clone(),
            KpiRollupMetrics::new(registry)?,
            shutdown.child_token(),
        );
        tasks.spawn_upkeep("kpi rollups", rollups);
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .merge(rollout_routes)
        .merge(collector::router(CollectorState::store(
            store.pipeline.clone(),
            auth.clone(),
        )))
        .merge(erasure::router(erasure::ErasureState {
            auth: auth.clone(),
            pseudo: Arc::new(keyshift_ingest::pseudonym::Pseudonymizer::load(
                &config.secret_path(),
            )?),
            root: store.root.clone(),
            options: config.store.storage_options.clone(),
            gone_within: config.maintenance.vacuum_grace + config.maintenance.vacuum_full_every,
            writer: store.writer.clone(),
        }))
        .merge(keyshift_metrics::router(SqlState {
            engine: store.engine.clone(),
            auth,
            registry: registry.clone(),
            metrics: ApiMetrics::new(registry)?,
            watermark: watermark(),
        }));
    Ok(with_fallbacks(app))
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
