//! Store settings, one section of the keyshift config file.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// Memory limit for query execution, in MiB.
    pub query_memory_mib: usize,
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
        }
    }
}

impl StoreConfig {
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
        if self.uri.as_ref().is_some_and(|u| u.trim().is_empty()) {
            errors.push("store.uri must not be empty when set".to_owned());
        }
        errors
    }
}
