use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::*;

fn result(n: i64) -> Arc<CachedResult> {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![n]))])
        .expect("batch");
    Arc::new(CachedResult {
        schema,
        batches: vec![batch],
    })
}

fn value(r: &CachedResult) -> i64 {
    r.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("ints")
        .value(0)
}

fn config(mib: usize, disk_mib: usize) -> StoreConfig {
    StoreConfig {
        result_cache_mib: mib,
        result_cache_disk_mib: disk_mib,
        ..StoreConfig::default()
    }
}

/// A cache with both tiers (16 MiB each), its files under `path`.
fn on_disk(path: &std::path::Path) -> ResultCache {
    ResultCache::new(
        &config(16, 16),
        Some(path.to_owned()),
        ResultCacheMetrics::unregistered(),
    )
    .expect("cache on")
}

#[test]
fn a_key_names_the_build_the_statement_and_what_it_read() {
    let cache =
        ResultCache::new(&config(1, 0), None, ResultCacheMetrics::unregistered()).expect("on");
    let read = [1; 32];
    let key = |sql: &str, read: &Digest32| cache.key(sql, read);
    assert_eq!(key("SELECT 1", &read), key("SELECT 1", &read));
    assert_ne!(key("SELECT 1", &read), key("SELECT 2", &read));
    assert_ne!(key("SELECT 1", &read), key("SELECT 1", &[2; 32]));
    // Another build (here: an id of its own) never shares a key.
    let mut other =
        ResultCache::new(&config(1, 0), None, ResultCacheMetrics::unregistered()).expect("on");
    Arc::get_mut(&mut other.inner).expect("sole owner").build = [9; 32];
    assert_ne!(other.key("SELECT 1", &read), key("SELECT 1", &read));
}

#[test]
fn results_survive_a_restart_on_disk_and_a_broken_file_is_a_miss() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("results");
    let cache = on_disk(&path);
    let (a, b) = ([1; 32], [2; 32]);
    assert!(cache.get(&a).is_none());
    cache.put(a, result(7));
    cache.put(b, result(8));
    assert_eq!(cache.get(&a).map(|r| value(&r)), Some(7));

    // A new process: memory is empty, the files are there.
    let again = on_disk(&path);
    assert_eq!(again.get(&a).map(|r| value(&r)), Some(7));
    // A file cut short (a crash, a full disk) is dropped, not an error.
    let file = disk::Disk::open(path.clone(), 1 << 20)
        .and_then(|mut d| d.touch(&b))
        .expect("indexed");
    std::fs::write(&file, b"ARROW1 cut short").expect("write");
    assert!(again.get(&b).is_none());
    assert!(!file.exists(), "the broken file is deleted");
}

#[test]
fn the_disk_bound_holds_and_zero_turns_caching_off() {
    assert!(ResultCache::new(&config(0, 16), None, ResultCacheMetrics::unregistered()).is_none());
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("results");
    let mut disk = disk::Disk::open(path.clone(), 10_000).expect("disk");
    let one = result(1);
    let mut kept = 0;
    for n in 0..20u8 {
        let bytes = disk::write(&path, &[n; 32], &one).expect("written");
        kept = disk.add([n; 32], bytes);
    }
    assert!(kept <= 10_000, "{kept} bytes indexed");
    let on_disk: u64 = std::fs::read_dir(&path)
        .expect("list")
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert_eq!(on_disk, kept as u64, "evicted files are deleted");
    assert!(disk.touch(&[19; 32]).is_some(), "the newest stays");
    assert!(disk.touch(&[0; 32]).is_none(), "the oldest went");
}

#[test]
fn a_result_another_process_wrote_since_is_adopted() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("results");
    // Both open the directory before anything is in it.
    let (server, cli) = (on_disk(&path), on_disk(&path));
    cli.put([3; 32], result(3));
    assert_eq!(server.get(&[3; 32]).map(|r| value(&r)), Some(3));
}
