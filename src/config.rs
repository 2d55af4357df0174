//! The keyshift configuration: defaults, then the TOML file, then
//! `KEYSHIFT__SECTION__KEY` environment variables, then command-line flags.
//! Parsed strictly (unknown keys are errors) and validated once, reporting
//! every problem at the same time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use keyshift_http::AuthConfig;
use keyshift_ingest::IngestConfig;
use keyshift_ingest::kafka::KafkaConfig;
use keyshift_metrics::kpi_gauges::KpiGaugeConfig;
use keyshift_metrics::kpi_rollups::KpiRollupConfig;
use keyshift_rollout::RolloutSettings;
use keyshift_store::{MaintenanceConfig, StoreConfig};
use serde::{Deserialize, Serialize};

/// The whole configuration, one field per section of the TOML file. Every
/// section and key is optional; `Config::default()` holds every default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: the HTTP API's address, the data directory, shutdown.
    pub server: ServerConfig,
    /// `[auth]`: the API's bearer tokens; with none (the default) the API is
    /// open and must listen on loopback.
    pub auth: AuthConfig,
    /// `[ingest]`: validation, deduplication and pseudonymization of events,
    /// and the collector's request limits.
    pub ingest: IngestConfig,
    /// `[store]`: where the tables live, commit batching, query limits.
    pub store: StoreConfig,
    /// `[maintenance]`: compaction, checkpoints, retention and vacuum of the
    /// tables.
    pub maintenance: MaintenanceConfig,
    /// `[kafka]`: brokers, topics and consumer settings; without `brokers`
    /// (the default) there is no Kafka source.
    pub kafka: KafkaConfig,
    /// `[rollout]`: the rollout controller's settings and its rollouts (none
    /// by default).
    pub rollout: RolloutSettings,
    /// `[kpi_gauges]`: the KPI gauges on `/metrics`.
    pub kpi_gauges: KpiGaugeConfig,
    /// `[kpi_rollups]`: the task that keeps the KPI reports' day rollups
    /// made after commits.
    pub kpi_rollups: KpiRollupConfig,
    /// `[log]`: log filter and format.
    pub log: LogConfig,
}

/// The `[server]` section. Defaults: listen on `127.0.0.1:8080`, data in
/// `./keyshift-data`, 30 s to shut down.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP API (collector, SQL, metrics, health).
    pub listen: SocketAddr,
    /// Where the embedded default keeps its tables and secret.
    pub data_dir: PathBuf,
    /// How long shutdown may take to drain requests and commit buffers.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./keyshift-data"),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// How log lines are written (`log.format`): `text` (default) or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// keyshift at info; the Delta kernel logs every snapshot load at info, so
/// it is held to warnings.
pub const DEFAULT_LOG_FILTER: &str = "info,buoyant_kernel=warn,deltalake_core=warn";

/// The `[log]` section. Defaults: [`DEFAULT_LOG_FILTER`], text format.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `keyshift=debug,info`); `RUST_LOG` overrides.
    pub level: String,
    /// Plain text or JSON lines; default text.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: DEFAULT_LOG_FILTER.to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Command-line values that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `server.listen`; `None` keeps it.
    pub listen: Option<SocketAddr>,
    /// Replaces `server.data_dir`; `None` keeps it.
    pub data_dir: Option<PathBuf>,
    /// Replaces `store.uri`; `None` keeps it.
    pub table_uri: Option<String>,
    /// Replaces `kafka.brokers`; `None` keeps it.
    pub kafka_brokers: Option<String>,
    /// Replaces `kafka.topic`; `None` keeps it.
    pub kafka_topic: Option<String>,
    /// Replaces `kafka.group_id`; `None` keeps it.
    pub kafka_group: Option<String>,
}

/// Everything wrong with a configuration, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

impl Config {
    /// Loads the layers and validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigErrors> {
        Self::load_from(file, overrides, Env::prefixed("KEYSHIFT__").split("__"))
    }

    fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> Result<Self, ConfigErrors> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigErrors(vec![format!(
                    "config file {} does not exist",
                    path.display()
                )]));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(env);
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigErrors(e.into_iter().map(|e| e.to_string()).collect()))?;
        if let Some(listen) = overrides.listen {
            config.server.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.server.data_dir = dir.clone();
        }
        if let Some(uri) = &overrides.table_uri {
            config.store.uri = Some(uri.clone());
        }
        if let Some(b) = &overrides.kafka_brokers {
            config.kafka.brokers = Some(b.clone());
        }
        if let Some(t) = &overrides.kafka_topic {
            config.kafka.topic = t.clone();
        }
        if let Some(g) = &overrides.kafka_group {
            config.kafka.group_id = g.clone();
        }
        let errors = config.validate();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Every problem, empty when the configuration is usable.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = keyshift_http::check_listen_address(self.server.listen, &self.auth) {
            errors.push(e);
        }
        if self.server.data_dir.as_os_str().is_empty() {
            errors.push("server.data_dir must not be empty".to_owned());
        }
        if self.server.shutdown_timeout.is_zero() {
            errors.push("server.shutdown_timeout must be more than 0".to_owned());
        }
        errors.extend(self.auth.validate());
        errors.extend(self.ingest.validate());
        errors.extend(self.store.validate());
        errors.extend(self.maintenance.validate());
        errors.extend(self.kafka.validate());
        errors.extend(self.rollout.validate());
        errors.extend(self.kpi_gauges.validate());
        errors.extend(self.kpi_rollups.validate());
        errors
    }

    /// The pseudonymization secret's file.
    pub fn secret_path(&self) -> PathBuf {
        self.ingest.secret_path(&self.server.data_dir)
    }

    /// Where the tables live.
    pub fn store_root(&self) -> String {
        match &self.store.uri {
            Some(uri) => uri.clone(),
            None => self.server.data_dir.join("tables").display().to_string(),
        }
    }

    /// Where cached query results are kept (`store.result_cache_disk_mib`).
    pub fn result_cache_dir(&self) -> std::path::PathBuf {
        self.server.data_dir.join("cache").join("results")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Env {
        Env::prefixed("KEYSHIFT_TEST_UNSET__").split("__")
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/keyshift.example.toml");
        let cfg = Config::load_from(Some(&path), &Overrides::default(), no_env());
        if let Err(e) = &cfg {
            panic!("{e}");
        }
    }

    #[test]
    fn the_example_rollouts_parse_and_validate() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rollouts.example.toml");
        match Config::load_from(Some(&path), &Overrides::default(), no_env()) {
            Ok(cfg) => assert!(!cfg.rollout.rollouts.is_empty()),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        let cfg = Config::load_from(None, &Overrides::default(), no_env()).expect("defaults");
        assert!(cfg.server.listen.ip().is_loopback());
        assert_eq!(cfg.ingest.dedup_window, Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn unknown_keys_and_all_semantic_errors_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"0.0.0.0:8080\"\n[store]\nflush_max_rows = 0\n",
        )
        .expect("write");
        let err =
            Config::load_from(Some(&path), &Overrides::default(), no_env()).expect_err("invalid");
        assert_eq!(err.0.len(), 2, "{err}");
        std::fs::write(&path, "[server]\nlisten_on = \"127.0.0.1:1\"\n").expect("write");
        let err =
            Config::load_from(Some(&path), &Overrides::default(), no_env()).expect_err("unknown");
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure type
    fn environment_overrides_the_file_and_flags_override_both() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "k.toml",
                "[store]\nflush_max_rows = 10\n[server]\ndata_dir = \"a\"\n",
            )?;
            jail.set_env("KEYSHIFT__STORE__FLUSH_MAX_ROWS", "20");
            jail.set_env("KEYSHIFT__SERVER__DATA_DIR", "b");
            let overrides = Overrides {
                data_dir: Some(PathBuf::from("c")),
                ..Overrides::default()
            };
            let cfg =
                Config::load(Some(Path::new("k.toml")), &overrides).map_err(|e| e.to_string())?;
            assert_eq!(cfg.store.flush_max_rows, 20);
            assert_eq!(cfg.server.data_dir, PathBuf::from("c"));
            Ok(())
        });
    }
}
