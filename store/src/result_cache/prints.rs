//! What a query over a range of days of a partitioned table read: a digest
//! of the files of each partition in one snapshot.
//!
//! A statement over the days `[from, to]` of a table gives the same rows as
//! long as no file of those days was added or removed (Delta files are
//! immutable: a commit, a compaction, an erasure or a retention delete of
//! those days changes their file set), so the digest of those partitions
//! and the statement text together identify its result. This holds for
//! tables written by delta-rs, which replaces whole files and writes no
//! deletion vectors (a deletion vector would change a file's rows but not
//! its path or size).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use deltalake::DeltaTable;
use sha2::{Digest, Sha256};

use crate::{Result, StoreError};

/// A 32-byte digest.
pub type Digest32 = [u8; 32];

/// The digest of each partition of one table snapshot, by partition value
/// (`YYYY-MM-DD`), plus a digest of the table's identity and schema.
#[derive(Debug, Clone)]
pub struct PartitionPrints {
    table: Digest32,
    /// Files without a value of the partition column, read by every range.
    unpartitioned: Option<Digest32>,
    by_day: BTreeMap<String, Digest32>,
}

impl PartitionPrints {
    /// The digests of `table`'s current snapshot, partitioned by `column`.
    pub fn of(table: &DeltaTable, name: &'static str, column: &str) -> Result<Self> {
        let snapshot = table.snapshot().map_err(StoreError::delta(name))?;
        let mut files: BTreeMap<Option<String>, Vec<(String, i64)>> = BTreeMap::new();
        for f in snapshot.log_data().iter() {
            let day = f.partition_values_map().remove(column).flatten();
            files
                .entry(day)
                .or_default()
                .push((f.path().into_owned(), f.size()));
        }
        let mut table_digest = Sha256::new();
        table_digest.update(snapshot.metadata().id().as_bytes());
        // Names, types and nullability in order: what a statement can see
        // of the schema (field metadata is a map with no stable order).
        for field in snapshot.schema().fields() {
            table_digest.update(field.name().as_bytes());
            table_digest.update(format!(
                "\0{:?}\0{}\0",
                field.data_type(),
                field.is_nullable()
            ));
        }
        let mut out = Self {
            table: table_digest.finalize().into(),
            unpartitioned: None,
            by_day: BTreeMap::new(),
        };
        for (day, mut list) in files {
            // The log's order depends on how it was read (checkpoint or
            // commits); the set is what counts.
            list.sort_unstable();
            let mut h = Sha256::new();
            for (path, size) in list {
                h.update(path.as_bytes());
                h.update([0]);
                h.update(size.to_le_bytes());
            }
            match day {
                Some(day) => {
                    out.by_day.insert(day, h.finalize().into());
                }
                None => out.unpartitioned = Some(h.finalize().into()),
            }
        }
        Ok(out)
    }

    /// The days that have files, oldest first.
    pub fn days(&self) -> impl DoubleEndedIterator<Item = NaiveDate> + '_ {
        self.by_day
            .keys()
            .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    }

    /// The digest of the partitions from `from` (all before too, if `None`)
    /// through `to`, inclusive.
    pub fn range(&self, from: Option<NaiveDate>, to: NaiveDate) -> Digest32 {
        let mut h = Sha256::new();
        h.update(self.table);
        if let Some(u) = &self.unpartitioned {
            h.update(b"unpartitioned");
            h.update(u);
        }
        let lo = from.map(|d| d.format("%Y-%m-%d").to_string());
        let hi = to.format("%Y-%m-%d").to_string();
        let days = match &lo {
            Some(lo) if lo > &hi => return h.finalize().into(),
            Some(lo) => self.by_day.range(lo.clone()..=hi),
            None => self.by_day.range(..=hi),
        };
        for (day, digest) in days {
            h.update(day.as_bytes());
            h.update(digest);
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prints(days: &[(&str, u8)]) -> PartitionPrints {
        PartitionPrints {
            table: [7; 32],
            unpartitioned: None,
            by_day: days
                .iter()
                .map(|(d, b)| ((*d).to_owned(), [*b; 32]))
                .collect(),
        }
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn a_range_changes_only_when_a_day_inside_it_does() {
        let before = prints(&[("2026-10-01", 1), ("2026-10-02", 2), ("2026-10-03", 3)]);
        let after = prints(&[("2026-10-01", 1), ("2026-10-02", 2), ("2026-10-03", 9)]);
        let r = |p: &PartitionPrints, a: Option<&str>, b: &str| p.range(a.map(day), day(b));
        assert_eq!(
            r(&before, Some("2026-10-01"), "2026-10-02"),
            r(&after, Some("2026-10-01"), "2026-10-02")
        );
        assert_ne!(
            r(&before, Some("2026-10-02"), "2026-10-03"),
            r(&after, Some("2026-10-02"), "2026-10-03")
        );
        assert_ne!(
            r(&before, None, "2026-10-03"),
            r(&after, None, "2026-10-03")
        );
        assert_eq!(
            r(&before, None, "2026-10-02"),
            r(&after, None, "2026-10-02")
        );
        // A new day inside the range (a late event) changes it too.
        let late = prints(&[("2026-09-30", 4), ("2026-10-01", 1), ("2026-10-02", 2)]);
        assert_ne!(r(&before, None, "2026-10-02"), r(&late, None, "2026-10-02"));
        assert_eq!(
            r(&before, Some("2026-10-01"), "2026-10-02"),
            r(&late, Some("2026-10-01"), "2026-10-02")
        );
    }

    #[test]
    fn different_tables_never_share_a_digest() {
        let a = prints(&[("2026-10-01", 1)]);
        let mut b = a.clone();
        b.table = [8; 32];
        assert_ne!(
            a.range(None, day("2026-10-01")),
            b.range(None, day("2026-10-01"))
        );
    }
}
