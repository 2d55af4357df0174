//! A map bounded by the bytes of its values, least recently used out first.

use std::collections::HashMap;

use super::Digest32;

#[derive(Debug)]
struct Slot<V> {
    value: V,
    bytes: usize,
    used: u64,
}

/// Values by key, at most `max` bytes of them.
#[derive(Debug)]
pub(super) struct Lru<V> {
    map: HashMap<Digest32, Slot<V>>,
    bytes: usize,
    max: usize,
    tick: u64,
}

impl<V: Clone> Lru<V> {
    pub(super) fn new(max: usize) -> Self {
        Self {
            map: HashMap::new(),
            bytes: 0,
            max,
            tick: 0,
        }
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The value under `key`, now the most recently used.
    pub(super) fn get(&mut self, key: &Digest32) -> Option<V> {
        self.tick += 1;
        let slot = self.map.get_mut(key)?;
        slot.used = self.tick;
        Some(slot.value.clone())
    }

    /// Keeps `value` (of `bytes`) under `key` and returns what went out to
    /// make room: the least recently used values, down to three quarters of
    /// the bound (so that eviction is not paid on every insert), or `value`
    /// itself when it alone is over the bound.
    pub(super) fn insert(&mut self, key: Digest32, value: V, bytes: usize) -> Vec<(Digest32, V)> {
        if bytes > self.max {
            return vec![(key, value)];
        }
        self.tick += 1;
        if let Some(old) = self.map.insert(
            key,
            Slot {
                value,
                bytes,
                used: self.tick,
            },
        ) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
        if self.bytes <= self.max {
            return Vec::new();
        }
        let mut by_age: Vec<(u64, Digest32)> = self.map.iter().map(|(k, s)| (s.used, *k)).collect();
        by_age.sort_unstable();
        let target = self.max / 4 * 3;
        let mut out = Vec::new();
        for (_, k) in by_age {
            if self.bytes <= target || k == key {
                break;
            }
            if let Some(slot) = self.map.remove(&k) {
                self.bytes -= slot.bytes;
                out.push((k, slot.value));
            }
        }
        out
    }

    /// Takes `key` out; its bytes, if it was there.
    pub(super) fn remove(&mut self, key: &Digest32) -> Option<usize> {
        let slot = self.map.remove(key)?;
        self.bytes -= slot.bytes;
        Some(slot.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> Digest32 {
        [n; 32]
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_bound_holds() {
        let mut lru = Lru::new(100);
        for n in 0..4 {
            assert!(lru.insert(k(n), n, 25).is_empty());
        }
        assert_eq!(lru.get(&k(0)), Some(0));
        // Over the bound: out go 1 and 2 (0 was just used), down to 75.
        let out: Vec<u8> = lru
            .insert(k(4), 4, 25)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(out, [1, 2]);
        assert_eq!(lru.bytes(), 75);
        assert_eq!(lru.get(&k(1)), None);
        assert_eq!(lru.get(&k(0)), Some(0));
        assert_eq!(lru.remove(&k(4)), Some(25));
        assert_eq!(lru.bytes(), 50);
    }

    #[test]
    fn a_value_over_the_bound_is_refused_and_a_replaced_one_is_not_counted_twice() {
        let mut lru = Lru::new(100);
        assert_eq!(lru.insert(k(9), 9, 101).len(), 1);
        assert_eq!(lru.bytes(), 0);
        lru.insert(k(1), 1, 60);
        assert!(lru.insert(k(1), 2, 60).is_empty());
        assert_eq!(lru.bytes(), 60);
        assert_eq!(lru.get(&k(1)), Some(2));
    }
}
