//! The `keyshift` command: parses arguments, loads configuration, starts
//! tracing, and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keyshift::config::{Config, LogFormat, Overrides};
use keyshift::sql_cmd::OutputFormat;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

// The ingest path allocates per event (JSON values, strings); glibc malloc's
// arena locking and consolidation dominated profiles of the collector.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lets mimalloc hand freed memory back with `MADV_FREE` rather than
/// `MADV_DONTNEED`: the OS takes the pages when it needs them, and until
/// then they are reused without being faulted in and zeroed again. A KPI
/// report frees and allocates hundreds of MB from one statement to the
/// next; the first report after a start took a fifth less over ten
/// million events (docs/benchmarks.md). The cost: the resident size that
/// `top` shows stays near its peak until the OS reclaims.
/// `MIMALLOC_PURGE_DECOMMITS=1` in the environment keeps mimalloc's
/// default.
#[cfg(feature = "mimalloc")]
fn reuse_freed_memory() {
    /// `mi_option_purge_decommits` in mimalloc.h, v2 and v3 (mimalloc keeps
    /// the numbers: retired options keep their slots); libmimalloc-sys
    /// names no constant for it.
    const PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;
    if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_none() {
        // SAFETY: sets one of mimalloc's global options, an atomic that
        // it reads at each purge; any value is valid.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DECOMMITS, 0);
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "keyshift",
    version,
    about = "Watch and steer passkey rollouts."
)]
struct Cli {
    /// Configuration file (TOML). Environment: KEYSHIFT__SECTION__KEY.
    #[arg(long, global = true, env = "KEYSHIFT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run collector, store and API in one process (no Kafka needed).
    Run {
        /// Listen address [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory [default: ./keyshift-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Also consume auth events from these Kafka brokers.
        #[arg(long)]
        kafka_brokers: Option<String>,
    },
    /// Consume auth events from Kafka into the store (with the API for
    /// metrics, health and SQL).
    Ingest {
        /// Kafka bootstrap servers, `host:port,…`.
        #[arg(long)]
        brokers: String,
        /// Topic [default: keyshift.auth-events].
        #[arg(long)]
        topic: Option<String>,
        /// Consumer group [default: keyshift-ingest].
        #[arg(long)]
        group: Option<String>,
        /// Data directory [default: ./keyshift-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Table location (a directory or s3://…) instead of `<data-dir>/tables`.
        #[arg(long)]
        table_uri: Option<String>,
        /// Listen address of the API [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Serve `POST /v1/events` and produce the events to Kafka (idempotent,
    /// acks=all; 200 once the broker acknowledged). No store here: run
    /// `keyshift ingest` to consume the topic.
    Collector {
        /// Kafka bootstrap servers, `host:port,…`.
        #[arg(long)]
        brokers: String,
        /// Topic [default: keyshift.auth-events].
        #[arg(long)]
        topic: Option<String>,
        /// Listen address [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run one read-only SQL statement against the store.
    Sql {
        sql: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// The passkey KPIs (or the funnels) of a data dir, as a table or JSON.
    Kpis {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        args: keyshift::kpis_cmd::KpisArgs,
    },
    /// The passkey adoption report (cohorts, platforms, credential mix,
    /// at-risk holders, recoveries, support contacts): report.md, CSV files
    /// and PNG charts, computed with polars over the table's Parquet files.
    Report {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        args: keyshift::report_cmd::ReportArgs,
    },
    /// One maintenance pass over the tables: retention, compaction of small
    /// files, a checkpoint, vacuum (waits while the server's background
    /// task runs a pass).
    Maintain {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Table location (a directory or s3://…) instead of `<data-dir>/tables`.
        #[arg(long)]
        table_uri: Option<String>,
        #[command(flatten)]
        args: keyshift::maintain_cmd::MaintainArgs,
    },
    /// Delete every stored row of one user of one relying party (an
    /// erasure request); the erasure is logged without the user's id.
    Erase {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        args: keyshift::erase_cmd::EraseArgs,
    },
    /// Backfill auth events from NDJSON files (plain or gzip) through the
    /// live pipeline: validation, pseudonymization, dedup. Resumes where an
    /// interrupted run stopped; exits 3 when lines were rejected.
    Import {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        args: keyshift::import::ImportArgs,
    },
    /// A simulated relying party: its users' auth events, sent to a
    /// collector, a Kafka topic or a file, on a compressed clock.
    Simulate(keyshift::simulate::SimulateArgs),
    /// Pipeline, rollout controller and simulator in one process, on a
    /// fresh data dir: watch a rollout being steered, then read the summary.
    Demo(keyshift::demo::DemoArgs),
    /// Load and validate the configuration, then print it.
    CheckConfig,
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Collector throughput over loopback.
    Collector(keyshift::bench::CollectorBench),
    /// Kafka ingest end to end: produce N, time until all are committed,
    /// peak RSS of the ingest process.
    Kafka(keyshift::bench::KafkaBench),
    /// `GET /v1/assign` over loopback, and the hash path alone.
    Assign(keyshift::bench::AssignBench),
    /// Collector throughput and `/healthz` latency alone and while heavy
    /// queries run, side by side.
    Isolation(keyshift::bench::IsolationBench),
    /// `GET /v1/kpis` and `/v1/funnel` over a generated table (10 million
    /// events by default), cold and warm.
    Kpis(keyshift::bench::KpiBench),
    /// The dedup index with a full window (70 million keys by default):
    /// memory, reserve throughput and how often it asks the table.
    Dedup(keyshift::bench::DedupBench),
    /// Thousands of small commits into a fresh data dir (the state table
    /// maintenance undoes), or `--inspect` an existing one.
    SmallCommits(keyshift::bench::SmallCommitsBench),
}

fn init_tracing(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
fn on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("signal received");
        token.cancel();
    });
}

async fn main_async(cli: Cli) -> anyhow::Result<()> {
    let overrides = match &cli.command {
        Command::Run {
            listen,
            data_dir,
            kafka_brokers,
        } => Overrides {
            listen: *listen,
            data_dir: data_dir.clone(),
            kafka_brokers: kafka_brokers.clone(),
            ..Overrides::default()
        },
        Command::Ingest {
            brokers,
            topic,
            group,
            data_dir,
            table_uri,
            listen,
        } => Overrides {
            listen: *listen,
            data_dir: data_dir.clone(),
            table_uri: table_uri.clone(),
            kafka_brokers: Some(brokers.clone()),
            kafka_topic: topic.clone(),
            kafka_group: group.clone(),
        },
        Command::Collector {
            brokers,
            topic,
            listen,
        } => Overrides {
            listen: *listen,
            kafka_brokers: Some(brokers.clone()),
            kafka_topic: topic.clone(),
            ..Overrides::default()
        },
        Command::Maintain {
            data_dir,
            table_uri,
            ..
        } => Overrides {
            data_dir: data_dir.clone(),
            table_uri: table_uri.clone(),
            ..Overrides::default()
        },
        Command::Sql { data_dir, .. }
        | Command::Erase { data_dir, .. }
        | Command::Import { data_dir, .. }
        | Command::Kpis { data_dir, .. }
        | Command::Report { data_dir, .. } => Overrides {
            data_dir: data_dir.clone(),
            ..Overrides::default()
        },
        _ => Overrides::default(),
    };
    let mut config = Config::load(cli.config.as_deref(), &overrides)?;
    if matches!(cli.command, Command::Demo(_) | Command::Import { .. }) && cli.config.is_none() {
        // The command's own lines are the output; RUST_LOG still wins.
        config.log.level = "warn".to_owned();
    }
    init_tracing(&config);
    match cli.command {
        Command::Run { .. } | Command::Ingest { .. } => {
            let shutdown = CancellationToken::new();
            on_signals(shutdown.clone());
            keyshift::run(config, shutdown).await
        }
        Command::Collector { .. } => {
            let shutdown = CancellationToken::new();
            on_signals(shutdown.clone());
            keyshift::run_collector(config, shutdown).await
        }
        Command::Sql { sql, format, .. } => {
            let text = keyshift::sql_cmd::run_sql(&config, &sql, format).await?;
            write_stdout(&text)
        }
        Command::Kpis { args, .. } => {
            let text = keyshift::kpis_cmd::run_kpis(&config, &args).await?;
            write_stdout(&text)
        }
        Command::Maintain { args, .. } => {
            let shutdown = CancellationToken::new();
            on_signals(shutdown.clone());
            let text = keyshift::maintain_cmd::run_maintain(&config, &args, shutdown).await?;
            write_stdout(&text)
        }
        Command::Erase { args, .. } => {
            let text = keyshift::erase_cmd::run_erase(&config, &args).await?;
            write_stdout(&text)
        }
        Command::Import { args, .. } => {
            let shutdown = CancellationToken::new();
            on_signals(shutdown.clone());
            let report = keyshift::import::run_import(&config, &args, shutdown).await?;
            let text = if args.json {
                serde_json::to_string_pretty(&report)?
            } else {
                report.render()
            };
            write_stdout(&text)?;
            report.outcome()
        }
        Command::Report { args, .. } => {
            let text = keyshift::report_cmd::run_report(&config, &args).await?;
            write_stdout(&text)
        }
        Command::Simulate(args) => {
            let shutdown = CancellationToken::new();
            on_signals(shutdown.clone());
            let report = keyshift::simulate::run_simulate(&args, shutdown).await?;
            eprintln!("{report}");
            Ok(())
        }
        Command::Demo(args) => {
            let shutdown = CancellationToken::new();
            on_signals(shutdown.clone());
            let mut out = std::io::stdout();
            keyshift::demo::run_demo(config, &args, &mut out, shutdown).await
        }
        Command::CheckConfig => {
            let text = render_config(&config)?;
            write_stdout(&text)
        }
        Command::Bench(Bench::Collector(args)) => {
            let report = keyshift::bench::collector(&args).await?;
            write_stdout(&report.to_string())
        }
        Command::Bench(Bench::Assign(args)) => {
            let report = keyshift::bench::assign(&args).await?;
            write_stdout(&report.to_string())
        }
        Command::Bench(Bench::Isolation(args)) => {
            let report = keyshift::bench::isolation(&args).await?;
            write_stdout(&report.to_string())
        }
        Command::Bench(Bench::Kpis(args)) => {
            let report = keyshift::bench::kpis(config, &args).await?;
            write_stdout(&report.to_string())
        }
        Command::Bench(Bench::Dedup(args)) => {
            let report = keyshift::bench::dedup(&args)?;
            write_stdout(&report.to_string())
        }
        Command::Bench(Bench::SmallCommits(args)) => {
            let state = keyshift::bench::small_commits(&args).await?;
            write_stdout(&state.to_string())
        }
        Command::Bench(Bench::Kafka(args)) => {
            let report = keyshift::bench::kafka(&args).await?;
            write_stdout(&report.to_string())
        }
    }
}

fn render_config(config: &Config) -> anyhow::Result<String> {
    let mut redacted = config.clone();
    for t in &mut redacted.auth.admin_tokens {
        *t = "<redacted>".to_owned();
    }
    for t in &mut redacted.auth.rp_tokens {
        t.token = "<redacted>".to_owned();
    }
    Ok(serde_json::to_string_pretty(&redacted)?)
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    reuse_freed_memory();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keyshift: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyshift: {e:#}");
            if e.downcast_ref::<keyshift::import::LinesRejected>()
                .is_some()
            {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
