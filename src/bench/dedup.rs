//! `keyshift bench dedup`: the dedup index with a full window — memory,
//! reserve throughput and how often it would ask the table — bounded as
//! configured, or unbounded (every key exact, as before the bound) for
//! comparison. No table: keys are random, as SHA-256 keys are.

use std::time::Instant;

use anyhow::bail;
use chrono::{Duration, Utc};
use keyshift_ingest::dedup::{DedupIndex, DedupKey, DedupLimits, Seen};

/// Options of `keyshift bench dedup`.
#[derive(Debug, Clone, clap::Args)]
pub struct DedupBench {
    /// Keys stored over the window.
    #[arg(long, default_value_t = 70_000_000)]
    pub keys: u64,
    /// The window, in days (`ingest.dedup_window`).
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// `ingest.dedup_memory_mib`.
    #[arg(long, default_value_t = 512)]
    pub memory_mib: u64,
    /// `ingest.dedup_filter_mib`.
    #[arg(long, default_value_t = 256)]
    pub filter_mib: u64,
    /// Keys per reserve (one request or Kafka batch).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Every key exact, nothing evicted (the index before it was bounded).
    #[arg(long)]
    pub unbounded: bool,
}

/// What `keyshift bench dedup` measured.
#[derive(Debug)]
pub struct DedupReport {
    args: DedupBench,
    fill_secs: f64,
    unsure_while_filling: u64,
    exact_keys: usize,
    exact_bytes: usize,
    filter_bytes: usize,
    exact_hours: f64,
    rss_before_mib: u64,
    rss_after_mib: u64,
    peak_mib: u64,
    probe_new: u64,
    probe_unsure: u64,
    repeats: u64,
    repeats_unsure: u64,
}

/// SplitMix64: uniform keys, reproducible from a seed.
struct Keys(u64);

impl Keys {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next(&mut self) -> DedupKey {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Fills an index with `keys` spread evenly over the window, then probes it
/// at the window's end with fresh keys and with repeats of the oldest ones.
pub fn dedup(args: &DedupBench) -> anyhow::Result<DedupReport> {
    if args.keys == 0 || args.batch == 0 || args.days == 0 {
        bail!("--keys, --batch and --days must be at least 1");
    }
    let rss_before = status_kib("VmRSS:");
    let window = std::time::Duration::from_secs(u64::from(args.days) * 86_400);
    let index = if args.unbounded {
        DedupIndex::new()
    } else {
        DedupIndex::bounded(DedupLimits {
            window,
            hot_bytes: usize::try_from(args.memory_mib << 20)?,
            filter_bytes: usize::try_from(args.filter_mib << 20)?,
        })
    };
    let end = Utc::now();
    let start = end - Duration::days(i64::from(args.days));
    index.expire(start);
    let span_ms = (end - start).num_milliseconds();
    let batch = args.batch as u64;

    let mut keys = Keys(42);
    let mut unsure = 0;
    let started = Instant::now();
    let mut done = 0u64;
    let mut chunk = Vec::with_capacity(args.batch);
    while done < args.keys {
        let n = batch.min(args.keys - done);
        chunk.clear();
        chunk.extend((0..n).map(|_| keys.next()));
        let offset = i64::try_from(u128::from(done) * span_ms as u128 / u128::from(args.keys))?;
        let at = start + Duration::milliseconds(offset);
        unsure += count(&index.reserve(&chunk, at), Seen::Unsure);
        done += n;
    }
    let fill_secs = started.elapsed().as_secs_f64();
    let memory = index.memory();
    let exact_since = index.hot_since().unwrap_or(start);
    let rss_after = status_kib("VmRSS:");

    // Fresh keys at the window's end: how many the table would be asked about.
    let probes = 1_000_000.min(args.keys);
    let mut fresh = Keys(7);
    let (mut probe_new, mut probe_unsure) = (0, 0);
    let mut left = probes;
    while left > 0 {
        let n = batch.min(left);
        let chunk: Vec<_> = (0..n).map(|_| fresh.next()).collect();
        let seen = index.reserve(&chunk, end);
        probe_new += count(&seen, Seen::New);
        probe_unsure += count(&seen, Seen::Unsure);
        left -= n;
    }
    // The oldest keys again: none may come back as new.
    let repeats = 100_000.min(args.keys);
    let mut old = Keys(42);
    let chunk: Vec<_> = (0..repeats).map(|_| old.next()).collect();
    let seen = index.reserve(&chunk, end);
    if count(&seen, Seen::New) > 0 {
        bail!("a repeated key was taken for new: the dedup guarantee is broken");
    }
    Ok(DedupReport {
        args: args.clone(),
        fill_secs,
        unsure_while_filling: unsure,
        exact_keys: index.len(),
        exact_bytes: memory.hot,
        filter_bytes: memory.cold,
        exact_hours: (end - exact_since).num_minutes() as f64 / 60.0,
        rss_before_mib: rss_before / 1024,
        rss_after_mib: rss_after / 1024,
        peak_mib: status_kib("VmHWM:") / 1024,
        probe_new,
        probe_unsure,
        repeats,
        repeats_unsure: count(&seen, Seen::Unsure),
    })
}

fn count(seen: &[Seen], which: Seen) -> u64 {
    seen.iter().filter(|s| **s == which).count() as u64
}

impl std::fmt::Display for DedupReport {
    #[allow(clippy::cast_precision_loss)]
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.args;
        let mib = |b: usize| b as f64 / f64::from(1 << 20);
        let bounds = if a.unbounded {
            "unbounded (every key exact)".to_owned()
        } else {
            format!(
                "dedup_memory_mib = {}, dedup_filter_mib = {}",
                a.memory_mib, a.filter_mib
            )
        };
        writeln!(
            f,
            "dedup index: {} keys over {} days, {bounds}",
            a.keys, a.days
        )?;
        writeln!(
            f,
            "  fill: {:.1} s, {:.0} keys/s in batches of {} ({} unsure while filling)",
            self.fill_secs,
            a.keys as f64 / self.fill_secs,
            a.batch,
            self.unsure_while_filling
        )?;
        writeln!(
            f,
            "  exact tier: {} keys at the end, {:.0} MiB after the fill, reaching back {:.1} h; filters: {:.0} MiB",
            self.exact_keys,
            mib(self.exact_bytes),
            self.exact_hours,
            mib(self.filter_bytes)
        )?;
        writeln!(
            f,
            "  process RSS: {} MiB before, {} MiB after, peak {} MiB",
            self.rss_before_mib, self.rss_after_mib, self.peak_mib
        )?;
        let probes = self.probe_new + self.probe_unsure;
        writeln!(
            f,
            "  fresh keys at the window's end: {} new, {} unsure ({:.4} %: checked against the table)",
            self.probe_new,
            self.probe_unsure,
            100.0 * self.probe_unsure as f64 / probes.max(1) as f64
        )?;
        write!(
            f,
            "  repeats of the oldest keys: {} of {} unsure (checked against the table), none taken for new",
            self.repeats_unsure, self.repeats
        )
    }
}
