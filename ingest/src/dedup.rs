//! The dedup index: which `(rp_id, event_id)` pairs were stored within the
//! window.
//!
//! Keys are SHA-256 over `rp_id ‖ 0 ‖ event_id`; the index keeps 96 bits of
//! it (a false duplicate needs a 96-bit collision: about 10⁻¹⁵ for ten
//! million events in a window) and the minute the copy was stored, 16 bytes
//! an entry. It is split into shards by key so that no single table doubles
//! in size at once (a large backlog would otherwise need a second copy of
//! the whole index during the resize) and so that parallel batches contend
//! less. Memory: about 17 bytes per slot, slots sized to the next power of
//! two at 7/8 load, i.e. 20–40 bytes per event in the window. The index is
//! rebuilt from `auth_events` at start-up, which is what makes dedup hold
//! across restarts: the table is the truth.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimestampMicrosecondType};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use keyshift_store::query::plan;
use keyshift_store::{Lane, QueryEngine, StoreError};
use sha2::{Digest, Sha256};

use crate::{IngestError, Result};

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

const SHARDS: usize = 16;

/// 96 bits of the key, byte-aligned so an entry packs into 16 bytes.
type Stored = [u8; 12];

fn stored(key: DedupKey) -> (usize, Stored) {
    let bytes = key.to_le_bytes();
    let mut s = [0u8; 12];
    s.copy_from_slice(&bytes[..12]);
    // The shard comes from bits the stored part does not use.
    (usize::from(bytes[15]) % SHARDS, s)
}

/// The keys are uniformly random already: their first eight bytes are the
/// hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

type Shard = HashMap<Stored, u32, BuildHasherDefault<KeyHasher>>;

/// Minutes since the epoch (`u32` lasts until the year 10136).
fn minute(at: DateTime<Utc>) -> u32 {
    u32::try_from(at.timestamp().div_euclid(60)).unwrap_or(u32::MAX)
}

/// The keys of the events stored within the dedup window, each with the minute it was
/// stored, split into shards (see the module docs for the layout and its memory).
#[derive(Debug)]
pub struct DedupIndex {
    /// Stored key → the minute its copy was stored.
    shards: Vec<Mutex<Shard>>,
}

impl Default for DedupIndex {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

impl DedupIndex {
    /// An empty index; [`DedupIndex::load`] fills it from the table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every operation is a single insert/remove), so poison is ignored.
        self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks each key as taken; returns, per key, whether it was new. A key
    /// repeated within `keys` is new only the first time.
    pub fn reserve(&self, keys: &[DedupKey], at: DateTime<Utc>) -> Vec<bool> {
        let at = minute(at);
        keys.iter()
            .map(|k| {
                let (shard, key) = stored(*k);
                match self.lock(shard).entry(key) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(at);
                        true
                    }
                }
            })
            .collect()
    }

    /// Gives keys back after their write failed, so a retry is not taken for
    /// a duplicate.
    pub fn release(&self, keys: &[DedupKey]) {
        for k in keys {
            let (shard, key) = stored(*k);
            self.lock(shard).remove(&key);
        }
    }

    /// Forgets keys stored in minutes before the one of `cutoff`.
    pub fn expire(&self, cutoff: DateTime<Utc>) -> usize {
        let cutoff = minute(cutoff);
        let mut n = 0;
        for shard in 0..SHARDS {
            let mut seen = self.lock(shard);
            let before = seen.len();
            seen.retain(|_, at| *at >= cutoff);
            n += before - seen.len();
            if seen.capacity() > 4 * seen.len().max(1024) {
                seen.shrink_to_fit();
            }
        }
        n
    }

    /// Number of keys held, over all shards.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the keys of every event stored since `cutoff`. The rows stream
    /// from the query runtime in batches (at most a few in flight), so
    /// loading never holds the whole window's result at once: only the
    /// index itself grows.
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

    fn insert_batch(&self, batch: &RecordBatch) -> Result<usize> {
        let strings = |col: &datafusion::arrow::array::ArrayRef| {
            // Parquet scans may hand strings back as views; normalise.
            cast(col, &DataType::Utf8).map_err(|e| IngestError::DedupLoad(e.to_string()))
        };
        let (rp, id, at) = (
            strings(batch.column(0))?,
            strings(batch.column(1))?,
            batch.column(2),
        );
        let (Some(rp), Some(id), Some(at)) = (
            rp.as_string_opt::<i32>(),
            id.as_string_opt::<i32>(),
            at.as_primitive_opt::<TimestampMicrosecondType>(),
        ) else {
            return Err(IngestError::DedupLoad(format!(
                "unexpected column types {:?}",
                batch.schema()
            )));
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
            let (shard, key) = stored(dedup_key(rp.value(i), id.value(i)));
            self.lock(shard).insert(key, at);
            n += 1;
        }
        Ok(n)
    }
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
        assert_eq!(idx.reserve(&[a, b, a], t0), vec![true, true, false]);
        assert_eq!(idx.reserve(&[a], t0), vec![false]);
        idx.release(&[a]);
        assert_eq!(idx.reserve(&[a], t0), vec![true]);
        assert_eq!(idx.expire(t0), 0, "stored this minute");
        assert_eq!(idx.expire(t0 + chrono::Duration::minutes(1)), 2);
        assert!(idx.is_empty());
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
                new += idx.reserve(c, Utc::now()).into_iter().filter(|n| *n).count();
            }
            let distinct: std::collections::HashSet<_> = ids.iter().collect();
            prop_assert_eq!(new, distinct.len());
        }
    }
}
