//! `keyshift bench small-commits`: a data dir whose `auth_events` holds
//! thousands of small commits, as a streaming writer leaves it between
//! maintenance passes, for `scripts/bench-maintain.sh` (the table
//! maintenance acceptance bench). With `--inspect`, only reports the state
//! of an existing data dir: data files, rows, distinct event ids and the
//! stored stream position — the numbers maintenance must keep.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keyshift_store::query::QueryLimits;
use keyshift_store::{QueryEngine, QueryExecutor, StoreConfig, Tables};

use super::kpis::{RP, first_day};
use crate::synth::event_record;

/// The `txn` app id the commits record their position under.
pub const APP: &str = "keyshift-kafka-bench-0";

/// `keyshift bench small-commits`.
#[derive(Debug, Clone, clap::Args)]
pub struct SmallCommitsBench {
    /// Data dir to create (must not hold tables yet), or to inspect.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Commits to write.
    #[arg(long, default_value_t = 5_000)]
    pub commits: usize,
    /// Events per commit.
    #[arg(long, default_value_t = 100)]
    pub per_commit: usize,
    /// Days the events span (one day partition per commit, in order), from
    /// the first day of `keyshift bench kpis`, so that it times them.
    #[arg(long, default_value_t = 30)]
    pub days: usize,
    /// Only report the state of the existing data dir.
    #[arg(long)]
    pub inspect: bool,
}

/// What the table holds.
#[derive(Debug)]
pub struct TableState {
    /// Time to write the commits, when they were written now.
    pub built: Option<Duration>,
    /// Table version.
    pub version: Option<u64>,
    /// Data files of the current version.
    pub files: usize,
    /// Rows and distinct `event_id`s.
    pub rows: (i64, i64),
    /// The recorded position of [`APP`].
    pub position: Option<i64>,
}

impl std::fmt::Display for TableState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(t) = self.built {
            writeln!(f, "built in {:.1} s", t.as_secs_f64())?;
        }
        write!(
            f,
            "version {:?}, {} data files, {} rows, {} distinct event ids, position of {APP}: {:?}",
            self.version, self.files, self.rows.0, self.rows.1, self.position
        )
    }
}

/// Writes the commits (or, with `--inspect`, does not) and reports the state.
pub async fn small_commits(args: &SmallCommitsBench) -> anyhow::Result<TableState> {
    let root = format!("{}/tables", args.data_dir.display());
    let built = if args.inspect {
        None
    } else {
        if args.data_dir.join("tables/auth_events/_delta_log").exists() {
            bail!("{} holds tables already", args.data_dir.display());
        }
        let t0 = Instant::now();
        let mut tables = Tables::open_or_create(&root, &Default::default()).await?;
        let (commits, per, days) = (
            args.commits.max(1),
            args.per_commit.max(1),
            args.days.max(1),
        );
        let mut failed = None;
        keyshift_store::fixture::small_commits(&mut tables.events, commits, |c| {
            let day = c * days / commits;
            let records = (0..per)
                .filter_map(|k| {
                    let at = first_day()
                        + chrono::Duration::days(day as i64)
                        + chrono::Duration::seconds(((c * per + k) % 86_000) as i64);
                    event_record("sc", (c * per + k) as u64, RP, at)
                        .map_err(|e| failed = Some(anyhow::Error::from(e)))
                        .ok()
                })
                .collect();
            (records, vec![keyshift_store::fixture::txn(APP, c as i64)])
        })
        .await?;
        if let Some(e) = failed {
            return Err(e.context("a generated event is invalid"));
        }
        Some(t0.elapsed())
    };
    let tables = Tables::open(&root, &Default::default())
        .await
        .with_context(|| format!("opening {root}"))?;
    let snapshot = tables.events.snapshot()?;
    let files = snapshot.log_data().num_files();
    let position = snapshot
        .transaction_version(tables.events.log_store().as_ref(), APP)
        .await?;
    let version = tables.events.version();
    let engine = QueryEngine::fixed(
        tables,
        QueryLimits::from(&StoreConfig::default()),
        QueryExecutor::standalone(&StoreConfig::default())?,
    )?;
    let out = engine
        .sql("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM auth_events")
        .await?;
    let rows = keyshift_metrics::batches_to_rows(&out.batches)?;
    let n = |k: &str| rows[0][k].as_i64().unwrap_or(-1);
    Ok(TableState {
        built,
        version,
        files,
        rows: (n("n"), n("ids")),
        position,
    })
}
