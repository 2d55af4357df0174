//! The dedup index: which `(rp_id, event_id)` pairs were stored within the
//! window.
//!
//! Keys are the first 128 bits of SHA-256 over `rp_id ‖ 0 ‖ event_id`, so an
//! entry costs about 32 bytes whatever the id lengths (a false duplicate needs
//! a 128-bit collision). The index is rebuilt from `auth_events` at start-up,
//! which is what makes dedup hold across restarts: the table is the truth.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimestampMicrosecondType};
use keyshift_store::QueryEngine;
use sha2::{Digest, Sha256};

use crate::{IngestError, Result};

pub type DedupKey = u128;

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

#[derive(Debug, Default)]
pub struct DedupIndex {
    /// Key → received_at (µs since the epoch) of the stored copy.
    seen: Mutex<HashMap<DedupKey, i64>>,
}

impl DedupIndex {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DedupKey, i64>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every operation is a single insert/remove), so poison is ignored.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks each key as taken; returns, per key, whether it was new. A key
    /// repeated within `keys` is new only the first time.
    pub fn reserve(&self, keys: &[DedupKey], at: DateTime<Utc>) -> Vec<bool> {
        let at = at.timestamp_micros();
        let mut seen = self.lock();
        keys.iter()
            .map(|k| match seen.entry(*k) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(at);
                    true
                }
            })
            .collect()
    }

    /// Gives keys back after their write failed, so a retry is not taken for
    /// a duplicate.
    pub fn release(&self, keys: &[DedupKey]) {
        let mut seen = self.lock();
        for k in keys {
            seen.remove(k);
        }
    }

    /// Forgets keys stored before `cutoff`.
    pub fn expire(&self, cutoff: DateTime<Utc>) -> usize {
        let cutoff = cutoff.timestamp_micros();
        let mut seen = self.lock();
        let before = seen.len();
        seen.retain(|_, at| *at >= cutoff);
        before - seen.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the keys of every event stored since `cutoff`.
    pub async fn load(&self, engine: &QueryEngine, cutoff: DateTime<Utc>) -> Result<usize> {
        let sql = format!(
            "SELECT rp_id, event_id, received_at FROM auth_events WHERE received_at >= \
             to_timestamp_micros({})",
            cutoff.timestamp_micros()
        );
        let out = engine
            .sql_unbounded(&sql)
            .await
            .map_err(|e| IngestError::DedupLoad(e.to_string()))?;
        let strings = |col: &datafusion::arrow::array::ArrayRef| {
            // Parquet scans may hand strings back as views; normalise.
            cast(col, &DataType::Utf8).map_err(|e| IngestError::DedupLoad(e.to_string()))
        };
        let mut seen = self.lock();
        let mut n = 0;
        for batch in &out.batches {
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
            for i in 0..batch.num_rows() {
                if rp.is_null(i) || id.is_null(i) {
                    continue;
                }
                let at = if at.is_null(i) { i64::MAX } else { at.value(i) };
                seen.insert(dedup_key(rp.value(i), id.value(i)), at);
                n += 1;
            }
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
        assert_eq!(idx.expire(t0 + chrono::Duration::seconds(1)), 2);
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
