//! The cold tier of the dedup index: one Bloom filter per UTC day of the
//! window, over every key stored that day.
//!
//! A filter never misses a key it was given; it may claim one it was not
//! (a false positive, checked against the table, see [`super`]). Each day
//! gets an equal share of the configured bytes, so the tier's memory is
//! fixed; what grows with the traffic is the false-positive rate: with `b`
//! bits a key and the best number of hashes it is about 0.6185^b (1 % at
//! 10 bits, 0.01 % at 20, 10⁻⁶ at 29).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::DedupKey;

/// Minutes in a day.
pub const DAY: u32 = 24 * 60;

/// Hash functions when a day's key count cannot be estimated.
const DEFAULT_HASHES: u32 = 7;

/// A Bloom filter over dedup keys (which are uniform already: the hash
/// positions come from the key's two halves, double hashing).
#[derive(Debug)]
struct Bloom {
    words: Vec<u64>,
    hashes: u32,
    keys: u64,
}

impl Bloom {
    fn new(bits: u64, hashes: u32) -> Self {
        let words = usize::try_from(bits.div_ceil(64).max(1)).unwrap_or(usize::MAX);
        Self {
            words: vec![0; words],
            hashes: hashes.clamp(1, 16),
            keys: 0,
        }
    }

    fn positions(&self, key: DedupKey) -> impl Iterator<Item = (usize, u64)> + use<> {
        let bits = self.words.len() as u64 * 64;
        #[allow(clippy::cast_possible_truncation)] // the low and high halves
        let (h1, h2) = (key as u64, ((key >> 64) as u64) | 1);
        (0..u64::from(self.hashes)).map(move |i| {
            let h = h1.wrapping_add(i.wrapping_mul(h2));
            // Lemire's multiply-shift: h mapped onto 0..bits without a division.
            #[allow(clippy::cast_possible_truncation)]
            let bit = ((u128::from(h) * u128::from(bits)) >> 64) as u64;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn insert(&mut self, key: DedupKey) {
        for (w, mask) in self.positions(key) {
            self.words[w] |= mask;
        }
        self.keys += 1;
    }

    fn contains(&self, key: DedupKey) -> bool {
        self.positions(key)
            .all(|(w, mask)| self.words[w] & mask != 0)
    }
}

/// The hash count that minimises false positives for `keys` in `bits`.
fn best_hashes(bits: u64, keys: u64) -> u32 {
    if keys == 0 {
        return DEFAULT_HASHES;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let k = (std::f64::consts::LN_2 * bits as f64 / keys as f64).round() as u32;
    k.clamp(1, 16)
}

/// The per-day filters (see the module docs).
#[derive(Debug)]
pub struct Cold {
    days: Mutex<BTreeMap<u32, Bloom>>,
    /// Bits of each day's filter; 0: no filters (every key is a maybe).
    bits_per_day: u64,
}

impl Cold {
    /// Filters sharing `bytes`, one per day of a `days`-day window (and the
    /// day in progress).
    pub fn new(bytes: usize, days: u32) -> Self {
        Self {
            days: Mutex::new(BTreeMap::new()),
            bits_per_day: bytes as u64 * 8 / u64::from(days.max(1) + 1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, Bloom>> {
        self.days
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sizes the filter of `day` for `keys` (before any key of it is added).
    pub fn expect(&self, day: u32, keys: u64) {
        if !self.filters() {
            return;
        }
        let bits = self.bits_per_day;
        self.lock()
            .entry(day)
            .or_insert_with(|| Bloom::new(bits, best_hashes(bits, keys)));
    }

    /// Whether there are filters at all (`dedup_filter_mib` > 0).
    pub fn filters(&self) -> bool {
        self.bits_per_day > 0
    }

    /// Adds keys stored at `minute`.
    pub fn insert(&self, keys: impl IntoIterator<Item = DedupKey>, minute: u32) {
        if !self.filters() {
            return;
        }
        let day = minute / DAY;
        let bits = self.bits_per_day;
        let mut days = self.lock();
        if !days.contains_key(&day) {
            // A new day: as many keys as the busiest day so far, if any.
            let busiest = days.values().map(|b| b.keys).max().unwrap_or(0);
            days.insert(day, Bloom::new(bits, best_hashes(bits, busiest)));
        }
        if let Some(filter) = days.get_mut(&day) {
            for key in keys {
                filter.insert(key);
            }
        }
    }

    /// Whether `key` may have been stored on a day from `first` to `last`
    /// (minutes). Without filters: always.
    pub fn may_contain(&self, key: DedupKey, first: u32, last: u32) -> bool {
        if !self.filters() {
            return true;
        }
        self.lock()
            .range(first / DAY..=last / DAY)
            .any(|(_, filter)| filter.contains(key))
    }

    /// Drops the filters of days that ended before `cutoff` (a minute).
    pub fn drop_before(&self, cutoff: u32) {
        let mut days = self.lock();
        *days = days.split_off(&(cutoff / DAY));
    }

    /// Bytes of the filters.
    pub fn bytes(&self) -> usize {
        self.lock().values().map(|b| b.words.len() * 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u64) -> DedupKey {
        crate::dedup::dedup_key("r", &i.to_string())
    }

    #[test]
    fn the_false_positive_rate_follows_the_bits_per_key() {
        // 100,000 keys at about 20 bits each: ~0.01 % expected.
        let cold = Cold::new(100_000 * 20 / 8 * 2, 1);
        cold.expect(0, 100_000);
        cold.insert((0..100_000).map(key), 5);
        let claimed = (100_000..300_000)
            .filter(|i| cold.may_contain(key(*i), 0, 0))
            .count();
        assert!(claimed < 200, "{claimed} of 200,000 new keys claimed");
    }

    #[test]
    fn days_are_kept_apart_and_expire_whole() {
        let cold = Cold::new(1 << 16, 7);
        cold.insert([key(1)], 10);
        cold.insert([key(2)], DAY + 10);
        assert!(cold.may_contain(key(1), 0, DAY - 1));
        assert!(!cold.may_contain(key(2), 0, DAY - 1));
        assert!(cold.may_contain(key(2), 0, 2 * DAY));
        cold.drop_before(DAY + 5);
        assert!(!cold.may_contain(key(1), 0, 2 * DAY));
        assert!(cold.may_contain(key(2), 0, 2 * DAY));
    }

    proptest! {
        /// A filter never misses a key it was given.
        #[test]
        fn no_false_negatives(ids in proptest::collection::vec(any::<u64>(), 1..500), bytes in 8usize..4096) {
            let cold = Cold::new(bytes, 1);
            cold.insert(ids.iter().copied().map(key), 0);
            for i in ids {
                prop_assert!(cold.may_contain(key(i), 0, 0));
            }
        }
    }
}
