//! `keyshift maintain`: one maintenance pass over a data dir's tables
//! (retention, compaction, checkpoint, vacuum), with a per-table summary.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use keyshift_store::Maintainer;
use keyshift_store::maintenance::{PassOptions, Step, TableReport};
use keyshift_store::metrics::MaintenanceMetrics;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// What the run does.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MaintainArgs {
    /// Only this step.
    #[arg(long, value_enum)]
    pub only: Option<StepArg>,
    /// List the whole storage in the vacuum, so that files a crash left
    /// behind go too [default: yes for this command].
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub full_vacuum: bool,
    /// Keep replaced and deleted files this long before the vacuum deletes
    /// them [default: maintenance.vacuum_grace]. Below 1h only with
    /// `--no-writers`.
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
    pub vacuum_grace: Option<Duration>,
    /// Promise that no keyshift process writes to these tables during the
    /// run (a short grace would delete files a writer is about to commit).
    #[arg(long)]
    pub no_writers: bool,
    /// How long to wait for another maintainer (the server's background
    /// task) to finish its pass.
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration, default_value = "10m")]
    pub lock_wait: Duration,
    /// The summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A step on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StepArg {
    /// Delete partitions past their retention.
    Retention,
    /// Merge small files.
    Compact,
    /// Write a checkpoint.
    Checkpoint,
    /// Delete files no longer in the table.
    Vacuum,
}

impl From<StepArg> for Step {
    fn from(s: StepArg) -> Self {
        match s {
            StepArg::Retention => Step::Retention,
            StepArg::Compact => Step::Compact,
            StepArg::Checkpoint => Step::Checkpoint,
            StepArg::Vacuum => Step::Vacuum,
        }
    }
}

/// Runs one pass over the store of `config`; the summary as text or JSON.
pub async fn run_maintain(
    config: &Config,
    args: &MaintainArgs,
    stop: CancellationToken,
) -> anyhow::Result<String> {
    if let Some(grace) = args.vacuum_grace
        && grace < Duration::from_secs(3600)
        && !args.no_writers
    {
        anyhow::bail!(
            "--vacuum-grace below 1h can delete the files of a commit in progress: stop every \
             keyshift process that writes to these tables and add --no-writers"
        );
    }
    let root = config.store_root();
    // Fails on a data dir without tables instead of creating them.
    keyshift_store::Tables::open(&root, &config.store.storage_options)
        .await
        .with_context(|| format!("opening the store at {root}"))?;
    // Compaction commits beside the writers: the same atomicity they need.
    keyshift_store::commit_safety::check(&root, &config.store.storage_options).await?;
    let maintainer = Maintainer::new(
        &root,
        &config.store.storage_options,
        config.maintenance.clone(),
        MaintenanceMetrics::unregistered(),
    );
    let opts = PassOptions {
        only: args.only.map(Step::from),
        full_vacuum: Some(args.full_vacuum),
        vacuum_grace: args.vacuum_grace,
        lock_wait: args.lock_wait,
        ..PassOptions::scheduled()
    };
    let reports = maintainer
        .pass(&opts, &stop)
        .await
        .with_context(|| format!("maintaining the tables under {root}"))?;
    if stop.is_cancelled() {
        anyhow::bail!("interrupted; the tables are consistent, run it again to finish");
    }
    Ok(if args.json {
        serde_json::to_string_pretty(&reports)?
    } else {
        summary(&reports)
    })
}

/// One line per table.
fn summary(reports: &[TableReport]) -> String {
    let mut out = String::from(
        "table              files before → after  versions       expired days  compacted  (sorted)  vacuumed\n",
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<18} {:>12} → {:<5}  {:>5} → {:<5}  {:>12}  {:>9}  {:>8}  {:>8}{}",
            r.table,
            r.files.0,
            r.files.1,
            r.versions.0,
            r.versions.1,
            r.expired_days.len(),
            r.partitions_compacted,
            r.partitions_sorted,
            r.vacuumed.0,
            if r.vacuumed.1 { " (full)" } else { "" },
        );
    }
    out
}
