//! The exact tier of the dedup index: the keys stored since a horizon
//! minute, each with the minute it was stored, in shards by key.
//!
//! Keys keep 96 bits of the SHA-256 (a false duplicate needs a 96-bit
//! collision: about 10⁻¹⁵ for ten million keys) and the minute, 16 bytes an
//! entry; with the map's control byte and its 7/8 load and power-of-two
//! growth that is 19–38 bytes a key. Shards keep one resize from doubling
//! the whole tier at once and let parallel batches contend less.
//!
//! The tier is bounded by a number of keys. When it holds more, the oldest
//! minutes go (down to three quarters of the bound, so eviction is rare) and
//! the horizon moves up: from then on the tier is exact only for keys
//! stored since the horizon, and older ones are the cold tier's. The last
//! [`PINNED_MINUTES`] are never evicted: a key reserved there may not be
//! committed yet, so the table cannot vouch for it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::DedupKey;

const SHARDS: usize = 16;

/// Minutes of keys the tier never evicts, whatever its bound: longer than
/// any commit may take (a reserved key is committed or released by then).
pub const PINNED_MINUTES: u32 = 15;

/// Bytes of one slot of the map (key, minute, control byte).
const SLOT_BYTES: usize = 12 + 4 + 1;

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

#[derive(Default)]
struct Shard {
    /// Stored key → the minute its copy was stored.
    keys: HashMap<Stored, u32, BuildHasherDefault<KeyHasher>>,
    /// Keys per minute, to find what to evict without a scan.
    minutes: BTreeMap<u32, u32>,
}

impl Shard {
    fn count(&mut self, minute: u32, add: bool) {
        let n = self.minutes.entry(minute).or_insert(0);
        if add {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.minutes.remove(&minute);
            }
        }
    }

    /// Drops keys stored before `cutoff`; returns how many.
    fn drop_before(&mut self, cutoff: u32) -> usize {
        let before = self.keys.len();
        self.keys.retain(|_, at| *at >= cutoff);
        self.minutes = self.minutes.split_off(&cutoff);
        if self.keys.capacity() > 4 * self.keys.len().max(1024) {
            self.keys.shrink_to_fit();
        }
        before - self.keys.len()
    }
}

/// The exact tier (see the module docs).
#[derive(Debug)]
pub struct Hot {
    shards: Vec<Mutex<Shard>>,
    len: AtomicUsize,
    max: usize,
    /// From this minute on, every stored key is here (0: since ever).
    since: AtomicU32,
    evicting: Mutex<()>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Hot {
    /// A tier holding at most `max` keys (beyond the pinned minutes).
    pub fn new(max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            len: AtomicUsize::new(0),
            max: max.max(1),
            since: AtomicU32::new(0),
            evicting: Mutex::new(()),
        }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // Every operation leaves a shard consistent; poison is ignored.
        self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes `key` for `minute` unless it is held; whether it was new.
    pub fn reserve(&self, key: DedupKey, minute: u32) -> bool {
        let (shard, key) = stored(key);
        let mut s = self.lock(shard);
        if s.keys.contains_key(&key) {
            return false;
        }
        s.keys.insert(key, minute);
        s.count(minute, true);
        self.len.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Holds `key` as stored at `minute` (loading), unless it is older than
    /// the horizon.
    pub fn insert(&self, key: DedupKey, minute: u32) {
        if minute < self.since() {
            return;
        }
        let (shard, key) = stored(key);
        let mut s = self.lock(shard);
        match s.keys.insert(key, minute) {
            None => {
                s.count(minute, true);
                self.len.fetch_add(1, Ordering::AcqRel);
            }
            Some(old) => {
                s.count(old, false);
                s.count(minute, true);
            }
        }
    }

    /// Lets go of `key`.
    pub fn remove(&self, key: DedupKey) {
        let (shard, key) = stored(key);
        let mut s = self.lock(shard);
        if let Some(minute) = s.keys.remove(&key) {
            s.count(minute, false);
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Drops keys stored before `cutoff`; returns how many.
    pub fn drop_before(&self, cutoff: u32) -> usize {
        let mut n = 0;
        for shard in 0..SHARDS {
            n += self.lock(shard).drop_before(cutoff);
        }
        self.len.fetch_sub(n, Ordering::AcqRel);
        n
    }

    /// When over the bound, evicts the oldest minutes (never those from
    /// `now` − [`PINNED_MINUTES`] on) and moves the horizon up; the new
    /// horizon, when it moved.
    pub fn evict_if_full(&self, now: u32) -> Option<u32> {
        if self.len() <= self.max {
            return None;
        }
        // One eviction at a time; the others find the tier under its bound.
        let _one = self.evicting.try_lock().ok()?;
        let len = self.len();
        if len <= self.max {
            return None;
        }
        let mut per_minute: BTreeMap<u32, u64> = BTreeMap::new();
        for shard in 0..SHARDS {
            for (m, n) in &self.lock(shard).minutes {
                *per_minute.entry(*m).or_insert(0) += u64::from(*n);
            }
        }
        let cutoff = plan_eviction(&per_minute, len as u64, (self.max / 4 * 3) as u64, now)?;
        // The horizon first: a reserve from now on asks the cold tier about
        // the minutes going away.
        self.since.fetch_max(cutoff, Ordering::AcqRel);
        self.drop_before(cutoff);
        Some(cutoff)
    }

    /// The horizon: every key stored from this minute on is held (0: all).
    pub fn since(&self) -> u32 {
        self.since.load(Ordering::Acquire)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes of the maps' slots.
    pub fn bytes(&self) -> usize {
        (0..SHARDS)
            .map(|s| {
                // capacity() is 7/8 of the slots.
                let cap = self.lock(s).keys.capacity();
                cap / 7 * 8 * SLOT_BYTES
            })
            .sum()
    }
}

/// The eviction cutoff: the first minute kept so that at most `target` of
/// `len` keys remain, never past `now` − [`PINNED_MINUTES`]; `None` when
/// nothing may go.
pub fn plan_eviction(
    per_minute: &BTreeMap<u32, u64>,
    len: u64,
    target: u64,
    now: u32,
) -> Option<u32> {
    let floor = now.saturating_sub(PINNED_MINUTES);
    let mut left = len;
    let mut cutoff = None;
    for (&minute, &n) in per_minute {
        if left <= target || minute >= floor {
            break;
        }
        left = left.saturating_sub(n);
        cutoff = Some(minute + 1);
    }
    cutoff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_keeps_the_newest_minutes_and_the_pinned_ones() {
        let per: BTreeMap<u32, u64> = [(10, 5), (11, 5), (12, 5), (100, 5)].into();
        // Down to 10 of 20: minutes 10 and 11 go.
        assert_eq!(plan_eviction(&per, 20, 10, 1000), Some(12));
        // Minute 100 is pinned at now = 110: only the older ones may go.
        assert_eq!(plan_eviction(&per, 20, 0, 110), Some(13));
        // Everything is pinned.
        assert_eq!(plan_eviction(&per, 20, 0, 20), None);
        assert_eq!(plan_eviction(&per, 20, 20, 1000), None);
    }

    #[test]
    fn an_evicting_tier_moves_its_horizon() {
        let hot = Hot::new(8);
        for i in 0..12u32 {
            assert!(hot.reserve(u128::from(i) << 64 | u128::from(i), 100 + i));
        }
        let since = hot.evict_if_full(1000).expect("evicted");
        assert!(hot.len() <= 6, "down to 3/4 of the bound: {}", hot.len());
        assert_eq!(hot.since(), since);
        // A load of an older key does not bring it back.
        hot.insert(99, since - 1);
        assert!(hot.len() <= 6);
    }
}
