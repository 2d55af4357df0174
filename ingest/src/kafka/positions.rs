//! Where each assigned partition stands, and what to do with each message
//! and each finished batch: the offset arithmetic of the consumer, without
//! I/O. The loop (`consumer.rs`) carries out what these functions return
//! (seek, buffer, drop, commit offsets) and nothing else decides.
//!
//! The table is the truth: a partition's position comes from the `txn`
//! version stored with its rows; a message at or below it was stored already
//! and is dropped; a batch that commits moves the position to its last
//! offset. Kafka's own group offsets only tell the broker where to start
//! fetching, and may lag the table.

use std::collections::HashMap;

use super::{OffsetPolicy, StartFrom};

/// What the loop knows about one assigned partition.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// Last offset stored in `auth_events` (from the table's `txn`).
    stored: Option<i64>,
    /// Last offset handed to a batch (`stored` until one is): where the
    /// next batch's commit must find the table.
    handed: Option<i64>,
    /// Last offset whose rejections are recorded in `rejected_events`.
    rejected: Option<i64>,
    /// Whether the fetch position has been checked against `stored`.
    checked: bool,
    /// Next offset expected from the broker.
    next: Option<i64>,
}

/// Where to move a partition's fetch position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seek {
    Offset(i64),
    Beginning,
    End,
}

/// One partition of a batch handed over for commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handed {
    pub partition: i32,
    /// The position the table must hold before the batch's commit.
    pub after: Option<i64>,
    /// The position the commit records: the batch's last offset.
    pub last: i64,
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Buffer it for the next batch.
    Take,
    /// Stored already (a replay): drop it.
    Replayed,
    /// The partition is not ours (fetched before a revocation): ignore it.
    NotOwned,
    /// The broker started below the table's position (the group's offset
    /// lags the table): drop it and seek to the stored position + 1.
    SkipTo(i64),
    /// Messages never stored have left the broker (retention): report the
    /// gap, then do what the policy says.
    Gap {
        expected: i64,
        got: i64,
        then: GapAction,
    },
}

/// The offset-out-of-range policy applied to one gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GapAction {
    /// Keep the first retained message and go on from there.
    Take,
    /// Drop it and seek to the end of the partition.
    SeekEnd,
    /// Stop the consumer with an error.
    Stop,
}

/// The positions of every partition this member owns.
#[derive(Debug, Clone)]
pub(crate) struct Partitions {
    positions: HashMap<i32, Position>,
    policy: OffsetPolicy,
    start_from: StartFrom,
}

impl Partitions {
    pub(crate) fn new(policy: OffsetPolicy, start_from: StartFrom) -> Self {
        Self {
            positions: HashMap::new(),
            policy,
            start_from,
        }
    }

    /// Takes (or re-takes) a partition at the positions read from the
    /// tables; its first message will be checked against them.
    pub(crate) fn assign(&mut self, partition: i32, stored: Option<i64>, rejected: Option<i64>) {
        self.positions.insert(
            partition,
            Position {
                stored,
                handed: stored,
                rejected,
                checked: false,
                next: None,
            },
        );
    }

    /// Gives partitions up; messages of theirs that still arrive are
    /// [`Verdict::NotOwned`].
    pub(crate) fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.positions.remove(p);
        }
    }

    pub(crate) fn owned(&self) -> Vec<i32> {
        let mut parts: Vec<i32> = self.positions.keys().copied().collect();
        parts.sort_unstable();
        parts
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Per partition, the last offset whose rejections are recorded: dead
    /// letters at or below it were recorded before a crash.
    pub(crate) fn rejected_done(&self) -> HashMap<i32, i64> {
        self.positions
            .iter()
            .filter_map(|(p, pos)| pos.rejected.map(|r| (*p, r)))
            .collect()
    }

    /// Decides what to do with the message at `offset` of `partition`.
    pub(crate) fn accept(&mut self, partition: i32, offset: i64) -> Verdict {
        let policy = self.policy;
        let Some(pos) = self.positions.get_mut(&partition) else {
            return Verdict::NotOwned;
        };
        let mut gap = None;
        if !pos.checked {
            pos.checked = true;
            if let Some(stored) = pos.stored {
                let want = stored + 1;
                if offset != want && offset <= stored {
                    pos.next = Some(want);
                    return Verdict::SkipTo(want);
                }
                // One offset may be a transaction marker, never a message.
                if offset > want + 1 {
                    let then = match policy {
                        OffsetPolicy::Earliest => GapAction::Take,
                        OffsetPolicy::Latest => GapAction::SeekEnd,
                        OffsetPolicy::Stop => GapAction::Stop,
                    };
                    let verdict = Verdict::Gap {
                        expected: want,
                        got: offset,
                        then,
                    };
                    if then != GapAction::Take {
                        pos.next = None;
                        return verdict;
                    }
                    gap = Some(verdict);
                }
            }
        }
        if pos.stored.is_some_and(|s| offset <= s) || pos.next.is_some_and(|n| offset < n) {
            return Verdict::Replayed;
        }
        pos.next = Some(offset + 1);
        gap.unwrap_or(Verdict::Take)
    }

    /// Hands a batch over for commit: per partition of the batch (`last`,
    /// its last offsets), the position it records and the one the table
    /// must hold before it (the previous batch's, or the stored one).
    /// Batches commit in the order they are handed over.
    pub(crate) fn hand_over(&mut self, last: &HashMap<i32, i64>) -> Vec<Handed> {
        let mut out: Vec<Handed> = last
            .iter()
            .map(|(p, o)| Handed {
                partition: *p,
                after: self
                    .positions
                    .get_mut(p)
                    .and_then(|pos| pos.handed.replace(*o)),
                last: *o,
            })
            .collect();
        out.sort_unstable_by_key(|h| h.partition);
        out
    }

    /// Records a committed batch: each partition's position moves to the
    /// batch's last offset (its rejections too, when it had any). Returns the
    /// group offsets to commit to Kafka (the next offset to read), for the
    /// partitions still owned.
    pub(crate) fn committed(
        &mut self,
        last: &HashMap<i32, i64>,
        had_rejections: &[i32],
    ) -> Vec<(i32, i64)> {
        let mut offsets = Vec::with_capacity(last.len());
        for (p, o) in last {
            if let Some(pos) = self.positions.get_mut(p) {
                pos.stored = Some(*o);
                if had_rejections.contains(p) {
                    pos.rejected = Some(*o);
                }
                offsets.push((*p, o + 1));
            }
        }
        offsets.sort_unstable();
        offsets
    }

    /// After a refused batch, with every partition re-assigned from the
    /// table: where to seek each one. Everything read after the stored
    /// position is read again.
    pub(crate) fn reposition(&mut self) -> Vec<(i32, Seek)> {
        let start = match self.start_from {
            StartFrom::Earliest => Seek::Beginning,
            StartFrom::Latest => Seek::End,
        };
        let mut seeks: Vec<(i32, Seek)> = self
            .positions
            .iter_mut()
            .map(|(p, pos)| {
                pos.checked = true;
                pos.next = None;
                (*p, pos.stored.map_or(start, |s| Seek::Offset(s + 1)))
            })
            .collect();
        seeks.sort_unstable_by_key(|(p, _)| *p);
        seeks
    }
}

/// Each partition's last offset among `messages` (partition, offset): what
/// a batch of them commits as its positions.
pub(crate) fn last_offsets(messages: impl IntoIterator<Item = (i32, i64)>) -> HashMap<i32, i64> {
    let mut last: HashMap<i32, i64> = HashMap::new();
    for (p, o) in messages {
        let e = last.entry(p).or_insert(o);
        *e = (*e).max(o);
    }
    last
}

#[cfg(test)]
#[path = "positions_tests.rs"]
mod tests;
