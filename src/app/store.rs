//! The store side of the process: the tables, their writer, the query
//! engine over them and the ingest pipeline in front of them, opened in
//! that order at start-up.

use std::sync::Arc;

use anyhow::Context;
use keyshift_ingest::metrics::IngestMetrics;
use keyshift_ingest::{IngestWatermark, Pipeline};
use keyshift_store::metrics::{QueryMetrics, ResultCacheMetrics, StoreMetrics};
use keyshift_store::query::QueryLimits;
use keyshift_store::{
    ExecutorSettings, QueryEngine, QueryExecutor, ResultCache, Tables, Writer, WriterHandle,
};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use super::StartOptions;
use super::supervise::{Stage, Tasks};
use crate::config::Config;

/// The tables, their writer, the query engine over them and the ingest
/// pipeline in front of them.
pub(super) struct Store {
    pub(super) root: String,
    pub(super) writer: WriterHandle,
    /// Stops the writer: only after requests have drained, so nothing
    /// accepted is left uncommitted.
    pub(super) writer_stop: CancellationToken,
    pub(super) engine: QueryEngine,
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) watermark: IngestWatermark,
}

impl Store {
    pub(super) async fn open(
        config: &Config,
        registry: &Registry,
        options: &StartOptions,
        shutdown: &CancellationToken,
        tasks: &mut Tasks,
    ) -> anyhow::Result<Self> {
        let ingest_metrics = IngestMetrics::new(registry)?;
        ingest_metrics.set_rp_labels(
            config.auth.rp_tokens.iter().map(|t| t.rp_id.clone()),
            config.ingest.max_rp_labels,
        );
        let root = config.store_root();
        let tables = Tables::open_or_create(&root, &config.store.storage_options)
            .await
            .with_context(|| format!("opening tables under {root}"))?;
        let writer_stop = CancellationToken::new();
        let (writer, writer_task) = Writer::spawn_with(
            tables,
            config.store.clone(),
            StoreMetrics::new(registry)?,
            writer_stop.clone(),
            options.writer_faults.clone().unwrap_or_default(),
        )?;
        tasks.adopt("store writer", Stage::Writer, writer_task);
        // Queries run on their own runtime; shutdown cancels those in flight.
        let executor = QueryExecutor::new(
            ExecutorSettings::from(&config.store),
            QueryMetrics::new(registry)?,
            shutdown.child_token(),
        )?;
        let engine = QueryEngine::live(
            writer.published(),
            QueryLimits::from(&config.store),
            executor,
        )?
        .with_result_cache(ResultCache::new(
            &config.store,
            Some(config.result_cache_dir()),
            ResultCacheMetrics::new(registry)?,
        ));
        let pipeline = Arc::new(
            Pipeline::start(
                config.ingest.clone(),
                &config.server.data_dir,
                writer.clone(),
                &engine,
                ingest_metrics,
            )
            .await?,
        );
        // The HTTP collector commits before it answers: its data is
        // complete up to now. A Kafka consumer moves its own watermark.
        let watermark = match (&config.kafka.brokers, options.watermark.clone()) {
            (None, None) => IngestWatermark::live(),
            (None, Some(w)) => w,
            (Some(_), _) => IngestWatermark::tracked(),
        };
        Ok(Self {
            root,
            writer,
            writer_stop,
            engine,
            pipeline,
            watermark,
        })
    }
}
