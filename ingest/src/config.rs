//! Ingest settings, one section of the keyshift config file.

use std::path::PathBuf;
use std::time::Duration;

use keyshift_schemas::UnknownFields;
use serde::{Deserialize, Serialize};

/// The `[ingest]` section: the collector's request limits and the pipeline's rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// A repeated `event_id` (same `rp_id`) within this window is a duplicate.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Memory of the dedup index's exact tier, MiB (about 32 bytes a key:
    /// 512 MiB hold some 16 million keys). When the window holds more, the
    /// oldest keys are checked with the Bloom filters and the table instead.
    pub dedup_memory_mib: u64,
    /// Memory of the dedup index's Bloom filters over the whole window, MiB.
    /// More bits a key: fewer keys checked against the table needlessly
    /// (29 bits a key: one in a million). 0: no filters, every key older
    /// than the exact tier is checked against the table.
    pub dedup_filter_mib: u64,
    /// How far in the future `occurred_at` may lie (client clock skew).
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
    /// `keep` (default): fields the schema does not define are stored in the
    /// `extra` column. `reject`: such events are rejected.
    pub unknown_fields: UnknownFields,
    /// File holding the pseudonymization secret (64 hex characters). Unset:
    /// `<data_dir>/secret.key`, created on first run.
    pub secret_file: Option<PathBuf>,
    /// Most events in one request.
    pub max_events_per_request: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest copy of a rejected payload kept in `rejected_events`, in bytes.
    pub max_rejected_payload_bytes: usize,
    /// Collector requests processed at once; more wait (without their body
    /// being read). Bounds memory at about this × `max_body_bytes` × 4.
    pub max_inflight_requests: usize,
    /// Relying parties beyond those of `auth.rp_tokens` that get their own
    /// `rp_id` label on the event counters; later ones are counted as `other`.
    pub max_rp_labels: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            dedup_memory_mib: 512,
            dedup_filter_mib: 256,
            max_future: Duration::from_secs(24 * 3600),
            unknown_fields: UnknownFields::Keep,
            secret_file: None,
            max_events_per_request: 10_000,
            max_body_bytes: 5 * 1024 * 1024,
            max_rejected_payload_bytes: 64 * 1024,
            max_inflight_requests: 32,
            max_rp_labels: crate::metrics::DEFAULT_RP_LABELS,
        }
    }
}

impl IngestConfig {
    /// The pseudonymization secret's file: `secret_file`, else
    /// `<data_dir>/secret.key`.
    pub fn secret_path(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| data_dir.join("secret.key"))
    }

    /// The dedup index's bounds.
    pub fn dedup_limits(&self) -> crate::dedup::DedupLimits {
        let mib = |m: u64| usize::try_from(m.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        crate::dedup::DedupLimits {
            window: self.dedup_window,
            hot_bytes: mib(self.dedup_memory_mib),
            filter_bytes: mib(self.dedup_filter_mib),
        }
    }

    /// Every problem with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.dedup_window < Duration::from_secs(60) {
            errors.push("ingest.dedup_window must be at least 1m".to_owned());
        }
        if self.dedup_memory_mib == 0 {
            errors.push("ingest.dedup_memory_mib must be at least 1".to_owned());
        }
        if self.max_events_per_request == 0 {
            errors.push("ingest.max_events_per_request must be at least 1".to_owned());
        }
        if self.max_body_bytes < 1024 {
            errors.push("ingest.max_body_bytes must be at least 1024".to_owned());
        }
        if self.max_inflight_requests == 0 {
            errors.push("ingest.max_inflight_requests must be at least 1".to_owned());
        }
        if self.max_rejected_payload_bytes < 256 {
            errors.push("ingest.max_rejected_payload_bytes must be at least 256".to_owned());
        }
        errors
    }
}
