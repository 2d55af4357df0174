//! Store settings, one section of the keyshift config file.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[store]` section: where the tables live, how writes are grouped into
/// commits, and the limits on queries. Every key is optional; the defaults
/// are those of [`StoreConfig::default`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the tables live: a local directory or an object-store URL
    /// (`s3://bucket/prefix`, needs a build with the `s3` feature). Unset:
    /// `<data_dir>/tables`.
    pub uri: Option<String>,
    /// object_store options (`aws_region`, `aws_endpoint`, ...), passed through.
    pub storage_options: HashMap<String, String>,
    /// Upper bound on rows in one commit.
    pub flush_max_rows: usize,
    /// How long buffered rows that nobody waits on (stream sources) may sit
    /// before they are committed. Requests that wait for durability (the HTTP
    /// collector) are committed as soon as the writer is free.
    #[serde(with = "humantime_serde")]
    pub flush_max_delay: Duration,
    /// Row limit for one SQL query result.
    pub query_max_rows: usize,
    /// Time limit for one SQL query.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Memory for ad-hoc and KPI queries, in MiB, shared by the queries
    /// running at the same time. A query that needs more fails (no spilling).
    pub query_memory_mib: usize,
    /// Memory for the rollout controller's and keyshift's own queries, in MiB
    /// (kept apart so that ad-hoc queries cannot take it).
    pub control_query_memory_mib: usize,
    /// Worker threads of the query runtime; 0: one per CPU.
    pub query_threads: usize,
    /// Nice value of the query threads (0–19): the OS runs ingest and the
    /// API first when both want the CPU.
    pub query_nice: i32,
    /// Ad-hoc and KPI queries that run at once; 0: one per CPU (at least 2).
    pub query_concurrency: usize,
    /// Queries that may wait for a slot; beyond that a 429 with Retry-After.
    pub query_queue: usize,
    /// How long a query may wait for a slot before it is refused (429).
    #[serde(with = "humantime_serde")]
    pub query_queue_timeout: Duration,
    /// Memory for cached KPI statement results, in MiB; 0 turns the cache
    /// off. A result is kept under its statement and the files of the days
    /// it read, so it is never stale (see `docs/kpis.md`).
    pub result_cache_mib: usize,
    /// Disk for cached results, in MiB, under `<data_dir>/cache/results`
    /// (the first report after a restart is served from there); 0: memory only.
    pub result_cache_disk_mib: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            uri: None,
            storage_options: HashMap::new(),
            flush_max_rows: 100_000,
            flush_max_delay: Duration::from_secs(1),
            query_max_rows: 10_000,
            query_timeout: Duration::from_secs(30),
            query_memory_mib: 1024,
            control_query_memory_mib: 256,
            query_threads: 0,
            query_nice: 19,
            query_concurrency: 0,
            query_queue: 8,
            query_queue_timeout: Duration::from_secs(5),
            result_cache_mib: 128,
            result_cache_disk_mib: 1024,
        }
    }
}

impl StoreConfig {
    /// Worker threads of the query runtime (`query_threads`, 0 resolved).
    pub fn query_threads(&self) -> usize {
        match self.query_threads {
            0 => cpus(),
            n => n,
        }
    }

    /// Ad-hoc query slots (`query_concurrency`, 0 resolved).
    pub fn query_concurrency(&self) -> usize {
        match self.query_concurrency {
            0 => cpus().max(2),
            n => n,
        }
    }

    /// Every problem with these settings, empty when they are usable.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.flush_max_rows == 0 {
            errors.push("store.flush_max_rows must be at least 1".to_owned());
        }
        if self.flush_max_delay.is_zero() {
            errors.push("store.flush_max_delay must be more than 0".to_owned());
        }
        if self.query_max_rows == 0 {
            errors.push("store.query_max_rows must be at least 1".to_owned());
        }
        if self.query_timeout.is_zero() {
            errors.push("store.query_timeout must be more than 0".to_owned());
        }
        if self.query_memory_mib < 16 {
            errors.push("store.query_memory_mib must be at least 16".to_owned());
        }
        if self.control_query_memory_mib < 16 {
            errors.push("store.control_query_memory_mib must be at least 16".to_owned());
        }
        if !(0..=19).contains(&self.query_nice) {
            errors.push("store.query_nice must be between 0 and 19".to_owned());
        }
        if self.query_queue_timeout.is_zero() {
            errors.push("store.query_queue_timeout must be more than 0".to_owned());
        }
        if self.uri.as_ref().is_some_and(|u| u.trim().is_empty()) {
            errors.push("store.uri must not be empty when set".to_owned());
        }
        errors
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}
