//! The dedup index: which `(rp_id, event_id)` pairs were stored within the
//! window, in bounded memory.
//!
//! Keys are SHA-256 over `rp_id ‖ 0 ‖ event_id`. Two tiers hold them:
//! - the hot tier ([`hot`]): exact, the keys stored since a horizon, at most
//!   `ingest.dedup_memory_mib` of them (about 32 bytes a key); when full,
//!   its oldest minutes go and the horizon moves up;
//! - the cold tier ([`cold`]): a Bloom filter per day of the window, in
//!   `ingest.dedup_filter_mib`, over every key stored in the window.
//!
//! A key the hot tier holds is a duplicate. One it does not hold is new
//! when the hot tier covers the whole window (nothing was evicted: small
//! installs never leave memory) or when no cold filter of the days before
//! the horizon claims it. Otherwise it is [`Seen::Unsure`], and the pipeline
//! asks the table ([`confirm`]) before it stores it: the filters only save
//! queries, the table decides, so no event is lost to a false positive and
//! none is stored twice. The index is rebuilt from `auth_events` at start-up,
//! which is what makes dedup hold across restarts: the table is the truth.

pub mod cold;
pub mod confirm;
pub mod hot;

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use keyshift_store::query::{collect, plan};
use keyshift_store::{Lane, QueryEngine, StoreError};
use sha2::{Digest, Sha256};

use crate::{IngestError, Result};
use cold::{Cold, DAY};
use hot::Hot;

/// An event's dedup key: the first 128 bits of SHA-256 over `rp_id ‖ 0 ‖ event_id`.
pub type DedupKey = u128;

/// The dedup key of `event_id` at `rp_id`; the same id at two relying parties gives two keys.
pub fn dedup_key(rp_id: &str, event_id: &str) -> DedupKey {
    let mut h = Sha256::new();
    h.update(rp_id.as_bytes());
    h.update([0]);
    h.update(event_id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

/// Bytes the hot tier is budgeted per key (slots at 7/8 load, grown by
/// doubling: 19–38 bytes a key).
pub const HOT_BYTES_PER_KEY: usize = 32;

/// Minutes since the epoch (`u32` lasts until the year 10136).
fn minute(at: DateTime<Utc>) -> u32 {
    u32::try_from(at.timestamp().div_euclid(60)).unwrap_or(u32::MAX)
}

fn from_minute(m: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(m) * 60, 0).unwrap_or_default()
}

/// What the index says of a key being reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not stored within the window: reserved for this event.
    New,
    /// Stored within the window, or reserved by an event in flight.
    Duplicate,
    /// Reserved for this event, but a cold filter claims it: the table must
    /// say whether it was stored (see [`confirm`]).
    Unsure,
}

/// How much memory the index may take.
#[derive(Debug, Clone, Copy)]
pub struct DedupLimits {
    /// The dedup window.
    pub window: std::time::Duration,
    /// Bytes of the hot tier (exact keys).
    pub hot_bytes: usize,
    /// Bytes of the cold tier's filters.
    pub filter_bytes: usize,
}

/// Bytes each tier holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupMemory {
    /// The hot tier's maps.
    pub hot: usize,
    /// The cold tier's filters.
    pub cold: usize,
}

/// The keys of the events stored within the dedup window (see the module docs).
#[derive(Debug)]
pub struct DedupIndex {
    hot: Hot,
    cold: Cold,
    /// The window's first minute, as of the last expiry (0 before any).
    window_start: AtomicU32,
}

impl Default for DedupIndex {
    fn default() -> Self {
        Self {
            hot: Hot::new(usize::MAX),
            cold: Cold::new(0, 1),
            window_start: AtomicU32::new(0),
        }
    }
}

impl DedupIndex {
    /// An index without bounds: every key in memory, never unsure.
    /// [`DedupIndex::load`] fills it from the table.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index within `limits`.
    pub fn bounded(limits: DedupLimits) -> Self {
        let days = u32::try_from(limits.window.as_secs().div_ceil(86_400)).unwrap_or(u32::MAX);
        Self {
            hot: Hot::new(limits.hot_bytes / HOT_BYTES_PER_KEY),
            cold: Cold::new(limits.filter_bytes, days),
            window_start: AtomicU32::new(0),
        }
    }

    /// The minutes whose keys only the cold tier knows: from the window's
    /// start to the hot tier's horizon; `None` when the hot tier holds them all.
    fn cold_span(&self) -> Option<(u32, u32)> {
        let (start, since) = (self.window_start.load(Ordering::Acquire), self.hot.since());
        (since > start).then_some((start, since))
    }

    /// Reserves each key stored at `at`; says, per key, whether it is new.
    /// A key repeated within `keys` is new (or unsure) only the first time.
    pub fn reserve(&self, keys: &[DedupKey], at: DateTime<Utc>) -> Vec<Seen> {
        let at = minute(at);
        let seen: Vec<Seen> = keys
            .iter()
            .map(|k| {
                if !self.hot.reserve(*k, at) {
                    Seen::Duplicate
                // The span is read after the miss: an eviction raises the
                // horizon before it drops keys, so a key just dropped is
                // seen as the cold tier's.
                } else if self
                    .cold_span()
                    .is_some_and(|(from, to)| self.cold.may_contain(*k, from, to))
                {
                    Seen::Unsure
                } else {
                    Seen::New
                }
            })
            .collect();
        self.cold.insert(
            keys.iter()
                .zip(&seen)
                .filter(|(_, s)| **s != Seen::Duplicate)
                .map(|(k, _)| *k),
            at,
        );
        self.hot.evict_if_full(at);
        seen
    }

    /// Gives keys back after their write failed, so a retry is not taken for
    /// a duplicate. (The cold filters keep them: at worst a retry is checked
    /// against the table.)
    pub fn release(&self, keys: &[DedupKey]) {
        for k in keys {
            self.hot.remove(*k);
        }
    }

    /// Forgets keys stored in minutes before the one of `cutoff` (the new
    /// start of the window).
    pub fn expire(&self, cutoff: DateTime<Utc>) -> usize {
        let cutoff = minute(cutoff);
        self.window_start.fetch_max(cutoff, Ordering::AcqRel);
        self.cold.drop_before(cutoff);
        self.hot.drop_before(cutoff)
    }

    /// Keys held by the hot tier.
    pub fn len(&self) -> usize {
        self.hot.len()
    }

    /// Whether the hot tier holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by each tier.
    pub fn memory(&self) -> DedupMemory {
        DedupMemory {
            hot: self.hot.bytes(),
            cold: self.cold.bytes(),
        }
    }

    /// The hot tier's horizon, when it does not hold the whole window: keys
    /// stored before it are checked against the cold filters (and the table).
    pub fn hot_since(&self) -> Option<DateTime<Utc>> {
        self.cold_span().map(|(_, since)| from_minute(since))
    }

    /// The start of the window, as of the last expiry.
    pub fn window_start(&self) -> DateTime<Utc> {
        from_minute(self.window_start.load(Ordering::Acquire))
    }

    /// Builds the index from the table at start-up: the window starts at
    /// `cutoff`, each day's filter is sized for the keys the table holds of
    /// that day, then every key stored since `cutoff` is loaded.
    pub async fn rebuild(&self, engine: &QueryEngine, cutoff: DateTime<Utc>) -> Result<usize> {
        self.expire(cutoff);
        self.size_filters(engine, cutoff).await?;
        self.load(engine, cutoff).await
    }

    /// Loads the keys of every event stored since `cutoff`. The rows stream
    /// from the query runtime in batches (at most a few in flight), so
    /// loading never holds the whole window's result at once: only the
    /// index itself grows, within its limits.
    pub async fn load(&self, engine: &QueryEngine, cutoff: DateTime<Utc>) -> Result<usize> {
        let sql = format!(
            "SELECT rp_id, event_id, received_at FROM auth_events WHERE received_at >= \
             to_timestamp_micros({})",
            cutoff.timestamp_micros()
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(4);
        let query = engine.run(Lane::Control, move |ctx| async move {
            let df = plan(&ctx, &sql).await?;
            let mut stream = df.execute_stream().await.map_err(StoreError::Query)?;
            while let Some(batch) = stream.next().await {
                if tx.send(batch.map_err(StoreError::Query)?).await.is_err() {
                    break; // the loader failed; its error is reported below
                }
            }
            Ok(())
        });
        let insert = async {
            let mut n = 0;
            while let Some(batch) = rx.recv().await {
                n += self.insert_batch(&batch)?;
                self.hot.evict_if_full(minute(Utc::now()));
            }
            Ok::<_, IngestError>(n)
        };
        let (queried, inserted) = tokio::join!(query, insert);
        let n = inserted?;
        // A query failure keeps its kind (a timeout may be retried, a
        // shutdown is not a failure of ingest).
        queried?;
        Ok(n)
    }

    /// Sizes each day's filter for the keys the table holds of that day
    /// (the best number of hashes depends on it).
    async fn size_filters(&self, engine: &QueryEngine, cutoff: DateTime<Utc>) -> Result<()> {
        if !self.cold.filters() {
            return Ok(());
        }
        let sql = format!(
            "SELECT CAST(date_part('epoch', date_trunc('day', received_at)) AS BIGINT) AS day, \
                    count(*) AS n \
             FROM auth_events WHERE received_at >= to_timestamp_micros({}) GROUP BY 1",
            cutoff.timestamp_micros()
        );
        let batches = control_rows(engine, sql).await?;
        for batch in &batches {
            let (Some(day), Some(n)) = (
                batch.column(0).as_primitive_opt::<Int64Type>(),
                batch.column(1).as_primitive_opt::<Int64Type>(),
            ) else {
                return Err(unexpected_columns(batch));
            };
            for i in 0..batch.num_rows() {
                let day = u32::try_from(day.value(i).div_euclid(60)).unwrap_or(u32::MAX);
                self.cold
                    .expect(day / DAY, u64::try_from(n.value(i)).unwrap_or(0));
            }
        }
        Ok(())
    }

    fn insert_batch(&self, batch: &RecordBatch) -> Result<usize> {
        let (rp, id) = (string_column(batch, 0)?, string_column(batch, 1)?);
        let Some(at) = batch
            .column(2)
            .as_primitive_opt::<TimestampMicrosecondType>()
        else {
            return Err(unexpected_columns(batch));
        };
        let mut n = 0;
        for i in 0..batch.num_rows() {
            if rp.is_null(i) || id.is_null(i) {
                continue;
            }
            let at = if at.is_null(i) {
                u32::MAX
            } else {
                u32::try_from(at.value(i).div_euclid(60_000_000)).unwrap_or(u32::MAX)
            };
            let key = dedup_key(rp.value(i), id.value(i));
            self.cold.insert([key], at);
            self.hot.insert(key, at);
            n += 1;
        }
        Ok(n)
    }
}

/// Column `i` of `batch` as UTF-8 strings (Parquet scans may hand strings
/// back as views).
pub(crate) fn string_column(batch: &RecordBatch, i: usize) -> Result<StringArray> {
    let col = cast(batch.column(i), &DataType::Utf8)
        .map_err(|e| IngestError::DedupLoad(e.to_string()))?;
    col.as_string_opt::<i32>()
        .cloned()
        .ok_or_else(|| unexpected_columns(batch))
}

fn unexpected_columns(batch: &RecordBatch) -> IngestError {
    IngestError::DedupLoad(format!("unexpected column types {:?}", batch.schema()))
}

/// The rows of `sql`, run in the control lane (keyshift's own queries: ingest
/// does not queue behind ad-hoc ones).
pub(crate) async fn control_rows(engine: &QueryEngine, sql: String) -> Result<Vec<RecordBatch>> {
    let rows = engine
        .run(Lane::Control, move |ctx| async move {
            let df = plan(&ctx, &sql).await?;
            collect(&ctx, df).await
        })
        .await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reserve_release_expire() {
        let idx = DedupIndex::new();
        let t0 = Utc::now();
        let a = dedup_key("r", "a");
        let b = dedup_key("r", "b");
        use Seen::{Duplicate, New};
        assert_eq!(idx.reserve(&[a, b, a], t0), vec![New, New, Duplicate]);
        assert_eq!(idx.reserve(&[a], t0), vec![Duplicate]);
        idx.release(&[a]);
        assert_eq!(idx.reserve(&[a], t0), vec![New]);
        assert_eq!(idx.expire(t0), 0, "stored this minute");
        assert_eq!(idx.expire(t0 + chrono::Duration::minutes(1)), 2);
        assert!(idx.is_empty());
    }

    #[test]
    fn a_bounded_index_never_calls_an_evicted_key_new() {
        let idx = DedupIndex::bounded(DedupLimits {
            window: std::time::Duration::from_secs(7 * 86_400),
            hot_bytes: 100 * HOT_BYTES_PER_KEY,
            filter_bytes: 1 << 16,
        });
        let t0 = Utc::now() - chrono::Duration::days(3);
        let at = |m: i64| t0 + chrono::Duration::minutes(m);
        let keys: Vec<_> = (0..1000).map(|i| dedup_key("r", &i.to_string())).collect();
        for (m, k) in (0..).zip(&keys) {
            assert_eq!(idx.reserve(&[*k], at(m)), vec![Seen::New]);
        }
        assert!(idx.len() <= 100, "the hot tier holds {}", idx.len());
        assert!(idx.hot_since().is_some(), "the horizon moved");
        for k in &keys {
            assert_ne!(idx.reserve(&[*k], at(2000))[0], Seen::New);
        }
        let fresh: Vec<_> = (1000..2000)
            .map(|i| dedup_key("r", &i.to_string()))
            .collect();
        let new = idx
            .reserve(&fresh, at(2000))
            .into_iter()
            .filter(|s| *s == Seen::New)
            .count();
        assert!(new > 950, "only {new} of 1000 new keys were sure");
        assert!(idx.memory().cold > 0);
    }

    #[test]
    fn rp_id_is_part_of_the_key() {
        assert_ne!(dedup_key("a", "bc"), dedup_key("ab", "c"));
        assert_ne!(dedup_key("a", "x"), dedup_key("b", "x"));
    }

    proptest! {
        /// However a stream of ids is split into requests, each distinct id is
        /// new exactly once.
        #[test]
        fn each_id_is_new_exactly_once(ids in proptest::collection::vec(0u8..50, 0..300), chunk in 1usize..40) {
            let idx = DedupIndex::new();
            let keys: Vec<_> = ids.iter().map(|i| dedup_key("r", &i.to_string())).collect();
            let mut new = 0;
            for c in keys.chunks(chunk) {
                new += idx.reserve(c, Utc::now()).into_iter().filter(|n| *n == Seen::New).count();
            }
            let distinct: std::collections::HashSet<_> = ids.iter().collect();
            prop_assert_eq!(new, distinct.len());
        }
    }
}
