//! What a maintenance pass should do, decided from a table's file list and
//! the clock alone (no I/O): which partitions to compact, which have
//! expired, whether a full vacuum is due.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

/// One data file of a table's current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Its partition value (`None` in an unpartitioned table).
    pub partition: Option<String>,
    /// Size in bytes.
    pub bytes: u64,
}

/// The partitions holding at least `min_files` files smaller than
/// `target_bytes`, in order. Compaction leaves files at the target alone and
/// merges the small ones, so a partition it has compacted does not qualify
/// again until that many new small files arrived.
pub fn to_compact(files: &[FileInfo], target_bytes: u64, min_files: usize) -> Vec<Option<String>> {
    let mut small: BTreeMap<&Option<String>, usize> = BTreeMap::new();
    for f in files.iter().filter(|f| f.bytes < target_bytes) {
        *small.entry(&f.partition).or_default() += 1;
    }
    small
        .into_iter()
        .filter(|(_, n)| *n >= min_files.max(2))
        .map(|(p, _)| p.clone())
        .collect()
}

/// How compaction rewrites one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Its small files merged as they are (deltalake's bin-packing).
    Merge,
    /// All of its files rewritten sorted by the table's cluster column.
    Cluster,
}

/// How `partition`, chosen by [`to_compact`], is rewritten: sorted when
/// the merge would rewrite every one of its files anyway (all under
/// `target_bytes`: sorting then costs no extra writing, only the sort) and
/// they add up to at most `cluster_max_bytes` (what the sort cannot hold in
/// memory it spills to disk; `0`: never). A partition that also holds
/// files at the target keeps them and has only its small files merged: a
/// day bigger than that is sorted in the pieces it was sorted in before it
/// grew.
pub fn rewrite(
    files: &[FileInfo],
    partition: &Option<String>,
    target_bytes: u64,
    cluster_max_bytes: u64,
) -> Rewrite {
    if cluster_max_bytes == 0 {
        return Rewrite::Merge;
    }
    let mut total = 0_u64;
    for f in files.iter().filter(|f| &f.partition == partition) {
        if f.bytes >= target_bytes {
            return Rewrite::Merge;
        }
        total = total.saturating_add(f.bytes);
    }
    if total <= cluster_max_bytes {
        Rewrite::Cluster
    } else {
        Rewrite::Merge
    }
}

/// Whether a table root whose tables hold `files` data files now, and held
/// `files_after_last` after the last pass, is due a compaction before the
/// next interval: `after` files were added since (`0`: never).
pub fn compaction_due(files: usize, files_after_last: usize, after: usize) -> bool {
    after > 0 && files >= files_after_last.saturating_add(after)
}

/// The file size a pass started by the file count compacts to, in MiB: an
/// eighth of the target. It merges the writer's small files quickly without
/// rewriting the day's bigger files again and again as they grow (the
/// interval's passes merge those into files of the full target).
pub fn quick_target_mib(target_mib: u64) -> u64 {
    (target_mib / 8).max(1)
}

/// The first day whose partition is kept: every row of a day before it is
/// older than `keep` at `now` (a day's partition is deleted only once its
/// last instant is past the retention).
pub fn first_kept_day(now: DateTime<Utc>, keep: Duration) -> NaiveDate {
    let edge = chrono::Duration::from_std(keep)
        .ok()
        .and_then(|k| now.checked_sub_signed(k))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    edge.date_naive()
}

/// The day partitions before `first_kept`, in order; values that are not
/// dates (none are written) are never expired.
pub fn expired(files: &[FileInfo], first_kept: NaiveDate) -> Vec<NaiveDate> {
    let mut days: Vec<NaiveDate> = files
        .iter()
        .filter_map(|f| f.partition.as_deref())
        .filter_map(|p| NaiveDate::parse_from_str(p, "%Y-%m-%d").ok())
        .filter(|d| *d < first_kept)
        .collect();
    days.sort_unstable();
    days.dedup();
    days
}

/// Whether this pass's vacuum lists the whole storage: the first pass of a
/// process, then every `every`.
pub fn full_vacuum_due(
    last_full: Option<std::time::Instant>,
    now: std::time::Instant,
    every: Duration,
) -> bool {
    last_full.is_none_or(|t| now.saturating_duration_since(t) >= every)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(p: &str, bytes: u64) -> FileInfo {
        FileInfo {
            partition: Some(p.to_owned()),
            bytes,
        }
    }

    #[test]
    fn a_partition_is_sorted_only_when_all_of_it_is_rewritten_and_it_is_small() {
        let files = [
            f("2026-11-01", 10),
            f("2026-11-01", 10),
            f("2026-11-02", 10),
            f("2026-11-02", 100),
            f("2026-11-03", 30),
            f("2026-11-03", 30),
        ];
        let day = |d: &str| Some(d.to_owned());
        assert_eq!(
            rewrite(&files, &day("2026-11-01"), 100, 50),
            Rewrite::Cluster
        );
        // A file at the target stays: only the small ones are merged.
        assert_eq!(
            rewrite(&files, &day("2026-11-02"), 100, 500),
            Rewrite::Merge
        );
        // Too big to sort in memory.
        assert_eq!(rewrite(&files, &day("2026-11-03"), 100, 50), Rewrite::Merge);
        assert_eq!(
            rewrite(&files, &day("2026-11-03"), 100, 60),
            Rewrite::Cluster
        );
        // Off.
        assert_eq!(rewrite(&files, &day("2026-11-01"), 100, 0), Rewrite::Merge);
    }

    #[test]
    fn only_partitions_with_enough_small_files_are_compacted() {
        let files = [
            f("2026-11-01", 10),
            f("2026-11-01", 10),
            f("2026-11-01", 500),
            f("2026-11-02", 10),
            f("2026-11-03", 10),
            f("2026-11-03", 10),
            f("2026-11-03", 10),
        ];
        assert_eq!(
            to_compact(&files, 100, 3),
            vec![Some("2026-11-03".to_owned())]
        );
        assert_eq!(
            to_compact(&files, 100, 2),
            vec![Some("2026-11-01".to_owned()), Some("2026-11-03".to_owned())]
        );
        // One file alone is never "compacted" (it would be rewritten as is).
        assert!(to_compact(&files[3..4], 100, 0).is_empty());
    }

    #[test]
    fn files_added_since_the_last_pass_make_a_compaction_due() {
        assert!(!compaction_due(299, 100, 200));
        assert!(compaction_due(300, 100, 200));
        assert!(!compaction_due(usize::MAX, 0, 0), "0 turns it off");
        assert!(
            !compaction_due(usize::MAX - 1, usize::MAX, 1),
            "no overflow"
        );
        assert_eq!(quick_target_mib(128), 16);
        assert_eq!(quick_target_mib(4), 1);
    }

    #[test]
    fn a_day_expires_once_all_of_it_is_past_the_retention() {
        let now: DateTime<Utc> = "2026-11-29T10:00:00Z".parse().expect("time");
        let keep = Duration::from_secs(30 * 86_400);
        let first = first_kept_day(now, keep);
        assert_eq!(first.to_string(), "2026-10-30");
        let files = [
            f("2026-10-28", 1),
            f("2026-10-29", 1),
            f("2026-10-30", 1),
            f("junk", 1),
        ];
        let days: Vec<String> = expired(&files, first)
            .iter()
            .map(ToString::to_string)
            .collect();
        // 2026-10-29 ended at 10-30T00:00, more than 30 days before now.
        assert_eq!(days, ["2026-10-28", "2026-10-29"]);
        assert_eq!(first_kept_day(now, Duration::MAX), NaiveDate::MIN);
    }

    #[test]
    fn a_full_vacuum_runs_first_and_then_at_its_interval() {
        let t0 = std::time::Instant::now();
        let day = Duration::from_secs(86_400);
        assert!(full_vacuum_due(None, t0, day));
        assert!(!full_vacuum_due(Some(t0), t0 + day / 2, day));
        assert!(full_vacuum_due(Some(t0), t0 + day, day));
    }

    proptest! {
        /// Whatever the retention and the clock, no kept row is in an
        /// expired partition: every expired day ended before now − keep.
        #[test]
        fn expiry_never_deletes_a_row_younger_than_the_retention(
            now_s in 0i64..4_000_000_000, keep_days in 1u64..1000, day_offsets in prop::collection::vec(0i64..2000, 1..20)
        ) {
            let now = DateTime::from_timestamp(now_s, 0).expect("time");
            let keep = Duration::from_secs(keep_days * 86_400);
            let files: Vec<FileInfo> = day_offsets
                .iter()
                .map(|o| f(&(now.date_naive() - chrono::Days::new(*o as u64)).to_string(), 1))
                .collect();
            let edge = now - chrono::Duration::from_std(keep).expect("fits");
            for day in expired(&files, first_kept_day(now, keep)) {
                let end = (day + chrono::Days::new(1)).and_hms_opt(0, 0, 0).expect("midnight").and_utc();
                prop_assert!(end <= edge, "{day} ends at {end}, after {edge}");
            }
        }
    }
}
