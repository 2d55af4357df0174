//! The offset arithmetic, cell by cell, and a property test that drives it
//! the way the consumer loop does against a model broker and a model table.

use std::collections::{BTreeSet, HashMap, VecDeque};

use proptest::prelude::*;

use super::*;

fn partitions(policy: OffsetPolicy) -> Partitions {
    Partitions::new(policy, StartFrom::Earliest)
}

#[test]
fn the_first_message_is_checked_against_the_table() {
    let mut p = partitions(OffsetPolicy::Earliest);
    p.assign(0, Some(9), None);
    // The group's offset lagged the table: skip ahead, once.
    assert_eq!(p.accept(0, 4), Verdict::SkipTo(10));
    assert_eq!(
        p.accept(0, 5),
        Verdict::Replayed,
        "still below after the seek"
    );
    assert_eq!(p.accept(0, 10), Verdict::Take);
    assert_eq!(p.accept(0, 10), Verdict::Replayed, "a re-delivered offset");
    assert_eq!(p.accept(0, 11), Verdict::Take);
    assert_eq!(p.accept(1, 0), Verdict::NotOwned);
}

#[test]
fn a_fresh_partition_takes_whatever_comes_first() {
    let mut p = partitions(OffsetPolicy::Stop);
    p.assign(0, None, None);
    assert_eq!(p.accept(0, 500), Verdict::Take);
    assert_eq!(p.accept(0, 501), Verdict::Take);
}

#[test]
fn the_next_offset_and_one_marker_are_no_gap() {
    for first in [10, 11] {
        let mut p = partitions(OffsetPolicy::Stop);
        p.assign(0, Some(9), None);
        assert_eq!(p.accept(0, first), Verdict::Take, "first offset {first}");
    }
}

#[test]
fn a_retention_gap_follows_the_policy() {
    for (policy, then) in [
        (OffsetPolicy::Earliest, GapAction::Take),
        (OffsetPolicy::Latest, GapAction::SeekEnd),
        (OffsetPolicy::Stop, GapAction::Stop),
    ] {
        let mut p = partitions(policy);
        p.assign(0, Some(9), None);
        let gap = Verdict::Gap {
            expected: 10,
            got: 40,
            then,
        };
        assert_eq!(p.accept(0, 40), gap, "{policy:?}");
        // Only the first message is checked; Earliest went on from 40.
        let next = if then == GapAction::Take {
            Verdict::Replayed
        } else {
            Verdict::Take
        };
        assert_eq!(p.accept(0, 40), next, "{policy:?}");
    }
}

#[test]
fn a_committed_batch_moves_positions_and_its_kafka_offsets() {
    let mut p = partitions(OffsetPolicy::Earliest);
    p.assign(0, None, None);
    p.assign(1, Some(3), Some(2));
    let last = last_offsets([(0, 0), (1, 4), (0, 1), (1, 6), (2, 9)]);
    assert_eq!(last, HashMap::from([(0, 1), (1, 6), (2, 9)]));
    // Partition 2 was revoked meanwhile: not committed to Kafka.
    assert_eq!(p.committed(&last, &[0]), vec![(0, 2), (1, 7)]);
    assert_eq!(p.rejected_done(), HashMap::from([(0, 1), (1, 2)]));
    // Partition 1's first message is still checked, against the new position.
    assert_eq!(p.accept(1, 6), Verdict::SkipTo(7));
    assert_eq!(p.accept(0, 2), Verdict::Take);
}

#[test]
fn a_refused_batch_re_reads_from_the_stored_positions() {
    let mut p = Partitions::new(OffsetPolicy::Earliest, StartFrom::Latest);
    p.assign(0, Some(7), None);
    p.assign(1, None, None);
    assert_eq!(p.reposition(), vec![(0, Seek::Offset(8)), (1, Seek::End)]);
    // Already checked: what the seek brings is taken as is.
    assert_eq!(p.accept(0, 8), Verdict::Take);
    p.revoke(&[0]);
    assert_eq!(p.owned(), vec![1]);
    assert_eq!(p.accept(0, 9), Verdict::NotOwned);
}

#[test]
fn each_batch_follows_the_one_handed_over_before_it() {
    let mut p = partitions(OffsetPolicy::Stop);
    p.assign(0, Some(9), None);
    p.assign(1, None, None);
    let handed = |partition, after, last| Handed {
        partition,
        after,
        last,
    };
    assert_eq!(
        p.hand_over(&HashMap::from([(0, 12)])),
        [handed(0, Some(9), 12)]
    );
    // Handed over before the first one committed: it follows that one.
    assert_eq!(
        p.hand_over(&HashMap::from([(1, 4), (0, 15)])),
        [handed(0, Some(12), 15), handed(1, None, 4)]
    );
    // Re-read from the table (a refused batch): the table's position again.
    p.assign(0, Some(12), None);
    assert_eq!(
        p.hand_over(&HashMap::from([(0, 20)])),
        [handed(0, Some(12), 20)]
    );
}

/// One step of the model.
#[derive(Debug, Clone)]
enum Op {
    /// The broker delivers the next message of a partition we are fetching.
    Deliver(i32),
    /// The buffer becomes a batch (if there is room in flight).
    Flush,
    /// The oldest batch finishes: committed, or refused by the table; its
    /// Kafka offset commit may be lost.
    Finish {
        ok: bool,
        kafka_commit: bool,
    },
    Revoke(i32),
    Assign(i32),
    /// Another member, owning the partition meanwhile, stores `n` more.
    Other(i32, i64),
    /// The partition's previous owner stores `n` more while we own it (its
    /// batch was in flight when the partition moved to us).
    Late(i32, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2i32).prop_map(Op::Deliver),
        2 => Just(Op::Flush),
        2 => (any::<bool>(), any::<bool>()).prop_map(|(ok, k)| Op::Finish { ok: ok || k, kafka_commit: k }),
        1 => (0..2i32).prop_map(Op::Revoke),
        1 => (0..2i32).prop_map(Op::Assign),
        1 => (0..2i32, 1..4i64).prop_map(|(p, n)| Op::Other(p, n)),
        1 => (0..2i32, 1..4i64).prop_map(|(p, n)| Op::Late(p, n)),
    ]
}

/// The consumer loop's use of [`Partitions`], against a broker log of `n`
/// messages per partition and a table that checks every commit.
struct Model {
    n: i64,
    core: Partitions,
    fetch: HashMap<i32, i64>,
    group: HashMap<i32, i64>,
    buffer: Vec<(i32, i64)>,
    /// Per batch: its last offsets, and the positions it follows.
    in_flight: VecDeque<(HashMap<i32, i64>, Vec<Handed>)>,
    batches: VecDeque<Vec<(i32, i64)>>,
    /// The table: rows per partition, in commit order.
    rows: HashMap<i32, Vec<i64>>,
}

impl Model {
    fn new(n: i64) -> Self {
        let mut m = Model {
            n,
            core: partitions(OffsetPolicy::Stop),
            fetch: HashMap::new(),
            group: HashMap::new(),
            buffer: Vec::new(),
            in_flight: VecDeque::new(),
            batches: VecDeque::new(),
            rows: HashMap::new(),
        };
        m.assign(0);
        m.assign(1);
        m
    }

    fn stored(&self, p: i32) -> Option<i64> {
        self.rows.get(&p).and_then(|r| r.last().copied())
    }

    /// Appends rows, refusing any that would skip or repeat an offset.
    fn store(&mut self, p: i32, offsets: impl IntoIterator<Item = i64>) {
        let rows = self.rows.entry(p).or_default();
        for o in offsets {
            assert_eq!(
                o,
                rows.len() as i64,
                "partition {p}: stored {rows:?}, then {o}"
            );
            rows.push(o);
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Deliver(p) => self.deliver(p),
            Op::Flush => self.flush(),
            Op::Finish { ok, kafka_commit } => self.finish(ok, kafka_commit),
            Op::Revoke(p) => {
                if self.fetch.contains_key(&p) {
                    self.settle_all();
                    self.buffer.retain(|(bp, _)| *bp != p);
                    self.core.revoke(&[p]);
                    self.fetch.remove(&p);
                }
            }
            Op::Assign(p) => self.assign(p),
            Op::Other(p, k) => {
                if !self.fetch.contains_key(&p) {
                    self.store_more(p, k);
                }
            }
            Op::Late(p, k) => {
                if self.fetch.contains_key(&p) {
                    self.store_more(p, k);
                }
            }
        }
    }

    /// Another member's commit of the next `k` offsets of `p`.
    fn store_more(&mut self, p: i32, k: i64) {
        let from = self.stored(p).map_or(0, |s| s + 1);
        let to = (from + k).min(self.n);
        self.store(p, from..to);
        if to > from {
            self.group.insert(p, to);
        }
    }

    fn deliver(&mut self, p: i32) {
        let Some(&offset) = self.fetch.get(&p) else {
            return;
        };
        if offset >= self.n {
            return;
        }
        self.fetch.insert(p, offset + 1);
        match self.core.accept(p, offset) {
            Verdict::Take => self.buffer.push((p, offset)),
            Verdict::Replayed | Verdict::NotOwned => {}
            Verdict::SkipTo(to) => {
                self.fetch.insert(p, to);
            }
            gap @ Verdict::Gap { .. } => panic!("no retention in this model: {gap:?}"),
        }
    }

    fn flush(&mut self) {
        if self.buffer.is_empty() || self.in_flight.len() >= 2 {
            return;
        }
        let batch = std::mem::take(&mut self.buffer);
        let last = last_offsets(batch.iter().copied());
        let fence = self.core.hand_over(&last);
        self.in_flight.push_back((last, fence));
        self.batches.push_back(batch);
    }

    fn finish(&mut self, ok: bool, kafka_commit: bool) {
        let (Some((last, fence)), Some(batch)) =
            (self.in_flight.pop_front(), self.batches.pop_front())
        else {
            return;
        };
        // The table refuses a batch whose partitions moved on meanwhile.
        let fenced = fence.iter().all(|h| self.stored(h.partition) == h.after);
        if ok && fenced {
            for (p, o) in &batch {
                self.store(*p, [*o]);
            }
            for (p, next) in self.core.committed(&last, &[]) {
                if kafka_commit {
                    self.group.insert(p, next);
                }
            }
            return;
        }
        // Refused: later batches give up too; re-read from the table.
        self.in_flight.clear();
        self.batches.clear();
        self.buffer.clear();
        for p in self.core.owned() {
            self.core.assign(p, self.stored(p), None);
        }
        for (p, seek) in self.core.reposition() {
            let to = match seek {
                Seek::Offset(o) => o,
                Seek::Beginning => 0,
                Seek::End => self.n,
            };
            self.fetch.insert(p, to);
        }
    }

    /// A pending rebalance settles every batch in flight first.
    fn settle_all(&mut self) {
        while !self.in_flight.is_empty() {
            self.finish(true, true);
        }
    }

    fn assign(&mut self, p: i32) {
        if self.fetch.contains_key(&p) {
            return;
        }
        self.settle_all();
        self.core.assign(p, self.stored(p), None);
        // The broker starts at the group's offset, which may lag the table.
        self.fetch
            .insert(p, self.group.get(&p).copied().unwrap_or(0));
    }

    /// Owns everything and consumes to the end without failures.
    fn drain(&mut self) {
        self.assign(0);
        self.assign(1);
        for _ in 0..(4 * self.n + 8) {
            self.deliver(0);
            self.deliver(1);
            self.flush();
            self.finish(true, true);
        }
        self.flush();
        self.settle_all();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the order of deliveries, batches, refusals, lost Kafka
    /// commits, revocations, re-assignments and another member's commits
    /// (also the late ones of a partition's previous owner):
    /// every offset is stored once, none is skipped (checked at every
    /// commit by [`Model::store`]), and draining stores them all.
    #[test]
    fn every_offset_is_stored_exactly_once(ops in proptest::collection::vec(op(), 0..200)) {
        let mut m = Model::new(12);
        for op in &ops {
            m.step(op);
        }
        m.drain();
        for p in [0, 1] {
            let want: Vec<i64> = (0..12).collect();
            prop_assert_eq!(m.rows.get(&p).cloned().unwrap_or_default(), want);
        }
        let owned: BTreeSet<i32> = m.core.owned().into_iter().collect();
        prop_assert_eq!(owned, BTreeSet::from([0, 1]));
    }
}
