//! `keyshift import`: backfills auth events from NDJSON files (plain or
//! gzip) through the pipeline live traffic takes — schema validation, RP
//! scoping, pseudonymization, dedup — into the data dir's tables.
//!
//! Each file is named by its content id (see [`reader::content_id`]); every
//! commit carries the number of the file's last line it covers as a Delta
//! `txn` action (app id `keyshift-import-<content id>`), in the same commit
//! as the rows, as the Kafka consumer does with offsets. An interrupted
//! import therefore resumes after the last committed line, and a re-run of a
//! finished file reads past every line and stores nothing. Standard input
//! has no content id: it relies on dedup alone.

mod progress;
pub mod reader;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use chrono::Utc;
use keyshift_http::Principal;
use keyshift_ingest::metrics::IngestMetrics;
use keyshift_ingest::pipeline::{IngestSummary, Input, Item, Prepared, Unparsed};
use keyshift_ingest::{IngestError, Pipeline};
use keyshift_store::metrics::{QueryMetrics, StoreMetrics};
use keyshift_store::query::QueryLimits;
use keyshift_store::{
    ExecutorSettings, QueryEngine, QueryExecutor, Source, StreamPosition, Tables, Writer,
};
use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use progress::Progress;
use reader::{Chunk, Line, Lines};
use report::LISTED_REJECTIONS;
pub use report::{FileReport, ImportReport, LineRejection, LinesRejected};

/// What to import.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// NDJSON files, plain or gzip-compressed (detected by content); `-`
    /// reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Accept events of this relying party only, as its RP token would;
    /// lines of other relying parties are rejected [default: any].
    #[arg(long)]
    pub rp_id: Option<String>,
    /// Lines per commit (1–100,000).
    #[arg(long, default_value_t = 20_000)]
    pub batch_lines: usize,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress display on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

/// The store and pipeline the import writes through.
struct Stack {
    pipeline: Arc<Pipeline>,
    writer_stop: CancellationToken,
    writer_task: JoinHandle<keyshift_store::Result<()>>,
    query_stop: CancellationToken,
}

impl Stack {
    async fn open(config: &Config) -> anyhow::Result<Self> {
        // Counted but not exported: the import is a short-lived command.
        let registry = Registry::new();
        let root = config.store_root();
        let tables = Tables::open_or_create(&root, &config.store.storage_options)
            .await
            .with_context(|| format!("opening tables under {root}"))?;
        let writer_stop = CancellationToken::new();
        let (writer, writer_task) = Writer::spawn(
            tables,
            config.store.clone(),
            StoreMetrics::new(&registry)?,
            writer_stop.clone(),
        )?;
        let query_stop = CancellationToken::new();
        let executor = QueryExecutor::new(
            ExecutorSettings::from(&config.store),
            QueryMetrics::new(&registry)?,
            query_stop.clone(),
        )?;
        let engine = QueryEngine::live(
            writer.published(),
            QueryLimits::from(&config.store),
            executor,
        )?;
        let pipeline = Pipeline::start(
            config.ingest.clone(),
            &config.server.data_dir,
            writer,
            &engine,
            IngestMetrics::new(&registry)?,
        )
        .await
        .context("loading the dedup index")?;
        Ok(Self {
            pipeline: Arc::new(pipeline),
            writer_stop,
            writer_task,
            query_stop,
        })
    }

    /// Commits what the writer holds and stops it.
    async fn close(self) -> anyhow::Result<()> {
        self.query_stop.cancel();
        self.writer_stop.cancel();
        self.writer_task
            .await
            .context("the store writer panicked")?
            .context("the store writer failed")
    }
}

/// Imports `args.files` into the store of `config`, file after file; stops
/// reading at `shutdown` (the lines committed so far stay committed).
pub async fn run_import(
    config: &Config,
    args: &ImportArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<ImportReport> {
    if !(1..=100_000).contains(&args.batch_lines) {
        bail!("--batch-lines must be between 1 and 100000");
    }
    if args
        .files
        .iter()
        .filter(|f| f.as_os_str() == reader::STDIN)
        .count()
        > 1
    {
        bail!("standard input (-) can be read once only");
    }
    let principal = args.rp_id.clone().map_or(Principal::Admin, Principal::Rp);
    let stack = Stack::open(config).await?;
    let mut report = ImportReport::default();
    let mut failure = None;
    for path in &args.files {
        let mut file = FileReport {
            file: path.display().to_string(),
            ..FileReport::default()
        };
        let res = import_file(&stack, path, args, &principal, &mut file, &shutdown).await;
        report.files.push(file);
        match res {
            Ok(()) if shutdown.is_cancelled() => {
                report.interrupted = true;
                break;
            }
            Ok(()) => {}
            Err(e) => {
                failure = Some(e.context(format!("importing {}", path.display())));
                break;
            }
        }
    }
    let closed = stack.close().await;
    if let Some(e) = failure {
        return Err(e);
    }
    closed?;
    Ok(report)
}

/// One chunk's rows on their way to the table.
struct InFlight {
    task: JoinHandle<keyshift_ingest::Result<IngestSummary>>,
    /// The line of each prepared item, by index (to name rejections).
    lines: Vec<i64>,
    /// The chunk's lines, blank and passed-over ones included.
    read: u64,
    /// Its blank lines.
    blank: u64,
    /// Bytes of the file read up to the chunk's end.
    read_to: u64,
}

async fn import_file(
    stack: &Stack,
    path: &Path,
    args: &ImportArgs,
    principal: &Principal,
    report: &mut FileReport,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let pipeline = &stack.pipeline;
    let stdin = path.as_os_str() == reader::STDIN;
    let id = if stdin {
        None
    } else {
        let p = path.to_owned();
        Some(
            tokio::task::spawn_blocking(move || reader::content_id(&p))
                .await?
                .context("reading the file")?,
        )
    };
    report.content_id = id.clone();
    let app_id = id.as_ref().map(|id| format!("keyshift-import-{id}"));
    let stored = match &app_id {
        None => Default::default(),
        Some(app) => {
            let v = pipeline.writer().refresh(vec![app.clone()]).await?;
            v.get(app).copied().unwrap_or_default()
        }
    };
    let (events_done, rejected_done) = (stored.events.unwrap_or(0), stored.rejected.unwrap_or(0));
    // Each commit follows the previous one: a second import of the same file
    // running at the same time is refused instead of storing lines twice.
    let mut after = stored.events;
    report.resumed_after_line = events_done;
    let opened = reader::open(path).context("opening the file")?;
    let mut progress = Progress::new(opened.size, !args.no_progress);
    let source_id: Arc<str> = Arc::from(id.as_deref().unwrap_or(reader::STDIN_ID));
    let mut chunks = spawn_reader(
        Lines::new(opened.reader, events_done, pipeline.config().max_body_bytes),
        opened.read,
        args.batch_lines,
    );
    let mut in_flight: Option<InFlight> = None;
    let result = loop {
        let chunk = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            c = chunks.recv() => c,
        };
        let (chunk, read_to) = match chunk {
            None => break Ok(()),
            Some(Err(e)) => break Err(anyhow::Error::new(e).context("reading the file")),
            Some(Ok(c)) => c,
        };
        let (read, blank) = (
            chunk.skipped + chunk.blank + chunk.lines.len() as u64,
            chunk.blank,
        );
        if chunk.lines.is_empty() {
            report.lines += read;
            report.blank += blank;
            continue;
        }
        let last_line = chunk.last_line;
        let (p, principal, file) = (pipeline.clone(), principal.clone(), source_id.clone());
        let (prepared, lines) = tokio::task::spawn_blocking(move || {
            prepare(&p, chunk, &principal, &file, rejected_done)
        })
        .await?;
        // One commit at a time keeps the recorded line numbers increasing;
        // the next chunk is read and prepared while this one commits.
        if let Some(done) = in_flight.take() {
            match settle(done, report).await {
                Ok(at) => progress.update(report, at),
                Err(e) => {
                    pipeline.abandon(prepared);
                    break Err(e);
                }
            }
        }
        let p = pipeline.clone();
        let txns = app_id
            .iter()
            .map(|app| StreamPosition::new(app, after, last_line))
            .collect();
        after = Some(last_line);
        in_flight = Some(InFlight {
            task: tokio::spawn(async move { p.commit_with_txns(prepared, "import", txns).await }),
            lines,
            read,
            blank,
            read_to,
        });
    };
    if let Some(done) = in_flight.take() {
        let at = settle(done, report).await?;
        progress.update(report, at);
    }
    progress.finish(report);
    result
}

/// Reads chunks on a thread of its own (file reading and decompression
/// block), at most two ahead of the commits.
/// Each chunk comes with the bytes of the file read up to its end.
fn spawn_reader(
    mut lines: Lines<Box<dyn std::io::BufRead + Send>>,
    read: Arc<AtomicU64>,
    batch: usize,
) -> tokio::sync::mpsc::Receiver<std::io::Result<(Chunk, u64)>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    std::thread::spawn(move || {
        loop {
            let next = lines.chunk(batch);
            let end = !matches!(next, Ok(Some(_)));
            let sent = match next {
                Ok(None) => break,
                Ok(Some(c)) => tx.blocking_send(Ok((c, read.load(Ordering::Relaxed)))),
                Err(e) => tx.blocking_send(Err(e)),
            };
            // A closed channel: the import stopped.
            if end || sent.is_err() {
                break;
            }
        }
    });
    rx
}

/// The pipeline's CPU work on one chunk: the prepared rows, and the line
/// of each item by its index.
fn prepare(
    pipeline: &Pipeline,
    chunk: Chunk,
    principal: &Principal,
    file: &Arc<str>,
    rejected_done: i64,
) -> (Prepared, Vec<i64>) {
    let now = Utc::now();
    let source = |line| Source::Import {
        file: file.clone(),
        line,
    };
    let mut numbers = Vec::with_capacity(chunk.lines.len());
    let mut items = Vec::with_capacity(chunk.lines.len());
    let mut too_long = Vec::new();
    for (n, line) in chunk.lines {
        match line {
            Line::Text(bytes) => {
                numbers.push(n);
                items.push(Item {
                    input: Input(bytes),
                    source: source(n),
                    principal: principal.clone(),
                });
            }
            Line::TooLong { head, size } => too_long.push((n, head, size)),
        }
    }
    let mut prepared = pipeline.prepare_items(items, now);
    let limit = pipeline.config().max_body_bytes;
    for (n, head, size) in too_long {
        let index = numbers.len();
        numbers.push(n);
        pipeline.refuse_unparsed(
            &mut prepared,
            Unparsed {
                index,
                head: &head,
                size,
                error: format!(
                    "line of {size} bytes is longer than ingest.max_body_bytes ({limit})"
                ),
                source: &source(n),
            },
            now,
        );
    }
    // Lines an interrupted run already recorded as rejected.
    prepared.retain_rejected(|r| match &r.source {
        Source::Import { line, .. } => *line > rejected_done,
        _ => true,
    });
    (prepared, numbers)
}

/// Waits for a commit and adds its outcome to `report`; the bytes of the
/// file read up to the end of what it committed.
async fn settle(done: InFlight, report: &mut FileReport) -> anyhow::Result<u64> {
    let InFlight {
        task,
        lines,
        read,
        blank,
        read_to,
    } = done;
    let result = task.await.context("a commit task panicked")?;
    let summary = result.map_err(|e: IngestError| {
        anyhow::Error::new(e).context(format!(
            "committing lines {}–{} (earlier lines are stored; run again to resume)",
            lines.first().copied().unwrap_or_default(),
            lines.last().copied().unwrap_or_default(),
        ))
    })?;
    report.lines += read;
    report.blank += blank;
    report.accepted += summary.accepted as u64;
    report.duplicates += summary.duplicates as u64;
    report.rejected += summary.rejected.len() as u64;
    for r in summary.rejected {
        if report.rejections.len() >= LISTED_REJECTIONS {
            break;
        }
        report.rejections.push(LineRejection {
            line: lines.get(r.index).copied().unwrap_or_default(),
            event_id: r.event_id,
            error: r.error,
        });
    }
    Ok(read_to)
}
