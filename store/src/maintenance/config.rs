//! The `[maintenance]` section: when table upkeep runs and what it keeps.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether the background maintenance task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// On for tables in a local directory, off for object storage (where
    /// nothing stops two processes compacting the same files at once).
    #[default]
    Auto,
    /// Always on; on object storage, only in one process per table root.
    On,
    /// Never in the background; `keyshift maintain` still works.
    Off,
}

/// How long a table keeps its rows: a duration, or `"keep"` (forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep(pub Option<Duration>);

impl Keep {
    /// Rows are never deleted for age.
    pub const FOREVER: Keep = Keep(None);

    fn days(n: u64) -> Self {
        Keep(Some(Duration::from_secs(n * 86_400)))
    }
}

impl Serialize for Keep {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_str("keep"),
            Some(d) => {
                s.serialize_str(&humantime_serde::re::humantime::format_duration(d).to_string())
            }
        }
    }
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "keep" {
            return Ok(Keep::FOREVER);
        }
        humantime_serde::re::humantime::parse_duration(text.trim())
            .map(|d| Keep(Some(d)))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{text:?}: {e} (a duration like \"400d\", or \"keep\")"
                ))
            })
    }
}

/// Per-table retention, applied by partition: a partition is deleted once
/// its whole day is older than the table's retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// `auth_events`, by the day the event occurred (`event_date`).
    pub auth_events: Keep,
    /// `rejected_events`, by the day the input was received.
    pub rejected_events: Keep,
    /// The rollout decision log: kept (it explains every rollout), and not
    /// partitioned by day, so only `"keep"` is accepted.
    pub rollout_decisions: Keep,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            auth_events: Keep::days(400),
            rejected_events: Keep::days(30),
            rollout_decisions: Keep::FOREVER,
        }
    }
}

/// Table upkeep: compaction of small files, checkpoints, retention and
/// vacuum of unreferenced files. Every key is optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// `auto` (on for local tables), `on` or `off`.
    pub enabled: Switch,
    /// Time between two passes of the background task.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Size compaction aims at for one file, in MiB; files at least this
    /// big are left alone.
    pub target_file_mib: u64,
    /// A partition is compacted once it has this many files smaller than
    /// the target.
    pub compact_min_files: usize,
    /// Between two passes, the background task compacts as soon as the
    /// writer has added this many data files since the last pass (every
    /// commit adds one per day partition it touches, and a commit costs more
    /// the more files the table holds). Such a pass only merges files under
    /// an eighth of the target. `0`: compaction waits for the interval.
    pub compact_after_files: usize,
    /// Compaction rewrites a day of `auth_events` sorted by `event_type`
    /// when it rewrites the whole day anyway (every file under the target)
    /// and the day's files add up to at most this many MiB (what the sort
    /// spills beyond 256 MiB of memory goes to the temporary directory).
    /// KPI statements that read a few kinds of events (recoveries, support
    /// contacts, the credential history) then skip the pages of the
    /// others. `0`: never sorted.
    pub cluster_max_mib: u64,
    /// How long a file that is no longer part of the table stays on disk
    /// (readers of an older version may still read it). Erased rows are
    /// physically gone at most this long (plus `vacuum_full_every`) after
    /// their delete.
    #[serde(with = "humantime_serde")]
    pub vacuum_grace: Duration,
    /// Time between two full vacuums, which list the storage and also
    /// remove files left behind by a crash.
    #[serde(with = "humantime_serde")]
    pub vacuum_full_every: Duration,
    /// Per-table retention.
    pub retention: RetentionConfig,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            enabled: Switch::Auto,
            interval: Duration::from_secs(3600),
            target_file_mib: 128,
            compact_min_files: 8,
            compact_after_files: 200,
            cluster_max_mib: 32,
            vacuum_grace: Duration::from_secs(7 * 86_400),
            vacuum_full_every: Duration::from_secs(86_400),
            retention: RetentionConfig::default(),
        }
    }
}

impl MaintenanceConfig {
    /// Whether the background task runs for tables at `root` (a directory
    /// or a URL).
    pub fn runs_for(&self, root: &str) -> bool {
        match self.enabled {
            Switch::On => true,
            Switch::Off => false,
            Switch::Auto => !root.contains("://") || root.starts_with("file://"),
        }
    }

    /// Every problem with these settings, empty when they are usable.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.interval < Duration::from_secs(1) {
            errors.push("maintenance.interval must be at least 1s".to_owned());
        }
        if self.target_file_mib == 0 {
            errors.push("maintenance.target_file_mib must be at least 1".to_owned());
        }
        if self.compact_min_files < 2 {
            errors.push("maintenance.compact_min_files must be at least 2".to_owned());
        }
        if self.compact_after_files != 0 && self.compact_after_files < self.compact_min_files {
            errors.push(format!(
                "maintenance.compact_after_files must be 0 (off) or at least \
                 maintenance.compact_min_files ({})",
                self.compact_min_files
            ));
        }
        if self.vacuum_grace < Duration::from_secs(3600) {
            errors.push(
                "maintenance.vacuum_grace must be at least 1h (a running query may still read \
                 the files a compaction replaced)"
                    .to_owned(),
            );
        }
        if self.vacuum_full_every < Duration::from_secs(60) {
            errors.push("maintenance.vacuum_full_every must be at least 1m".to_owned());
        }
        let r = &self.retention;
        for (name, keep) in [
            ("auth_events", r.auth_events),
            ("rejected_events", r.rejected_events),
        ] {
            if keep.0.is_some_and(|d| d < Duration::from_secs(86_400)) {
                errors.push(format!(
                    "maintenance.retention.{name} must be at least 1d or \"keep\" (rows are \
                     deleted by whole days)"
                ));
            }
        }
        if r.rollout_decisions != Keep::FOREVER {
            errors.push(
                "maintenance.retention.rollout_decisions must be \"keep\": the decision log \
                 explains every rollout and is not partitioned by day"
                    .to_owned(),
            );
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_durations_and_keep() {
        let c: MaintenanceConfig =
            toml_like(r#"{"retention": {"auth_events": "90d", "rejected_events": "keep"}}"#);
        assert_eq!(c.retention.auth_events, Keep::days(90));
        assert_eq!(c.retention.rejected_events, Keep::FOREVER);
        assert!(c.validate().is_empty());
        let bad =
            serde_json::from_str::<MaintenanceConfig>(r#"{"retention": {"auth_events": "soon"}}"#)
                .expect_err("not a duration");
        assert!(bad.to_string().contains("\"keep\""), "{bad}");
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut c = MaintenanceConfig {
            compact_min_files: 1,
            compact_after_files: 0,
            vacuum_grace: Duration::from_secs(60),
            ..MaintenanceConfig::default()
        };
        c.retention.rollout_decisions = Keep::days(10);
        c.retention.rejected_events = Keep(Some(Duration::from_secs(60)));
        assert_eq!(c.validate().len(), 4, "{:?}", c.validate());
        let early = MaintenanceConfig {
            compact_after_files: 5,
            ..MaintenanceConfig::default()
        };
        assert_eq!(
            early.validate(),
            [
                "maintenance.compact_after_files must be 0 (off) or at least \
              maintenance.compact_min_files (8)"
            ]
        );
    }

    #[test]
    fn auto_runs_only_on_local_tables() {
        let c = MaintenanceConfig::default();
        assert!(c.runs_for("/var/lib/keyshift/tables"));
        assert!(c.runs_for("file:///data/tables"));
        assert!(!c.runs_for("s3://bucket/tables"));
    }

    fn toml_like(json: &str) -> MaintenanceConfig {
        serde_json::from_str(json).expect("parses")
    }
}
