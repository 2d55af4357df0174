//! A cache of query results, keyed by the statement and by the files it
//! read ([`PartitionPrints`]).
//!
//! KPI reports repeat the same statements all day over days that no longer
//! change: a result is kept under the digest of its statement text and of
//! the partitions it reads, so it is served again until one of those
//! partitions gets a file (new or late events, compaction, erasure,
//! retention) and never after. It can therefore not be stale, only
//! unused; nothing invalidates it explicitly.
//!
//! Two tiers, each bounded and least-recently-used first out: memory
//! (`store.result_cache_mib`) and Arrow IPC files in a directory
//! (`store.result_cache_disk_mib`), so that the first report after a
//! restart is served from disk. The results are aggregates (counts and
//! quantiles by interval and breakdown value), never rows of events. A
//! file that cannot be read or written is a miss, logged: the cache never
//! fails a query.

mod disk;
mod lru;
mod prints;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sha2::{Digest, Sha256};

use crate::StoreConfig;
use crate::metrics::{CacheOutcome, ResultCacheMetrics};

pub use prints::{Digest32, PartitionPrints};

use disk::Disk;
use lru::Lru;

/// Bump when the meaning of a cached file changes.
const FORMAT: &str = "keyshift-result-cache-1";

/// A statement's result: its schema (also when it has no rows) and rows.
#[derive(Debug, Clone)]
pub struct CachedResult {
    /// The result's columns.
    pub schema: SchemaRef,
    /// The result's rows.
    pub batches: Vec<RecordBatch>,
}

impl CachedResult {
    fn bytes(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum::<usize>()
            + 256
    }
}

/// This build: the version, DataFusion's, and the executable itself (its
/// path, size and modification time), so that a rebuilt keyshift — which
/// may compute a statement differently with the same text — never reads
/// what an earlier build cached.
fn build_id() -> Digest32 {
    let mut h = Sha256::new();
    for part in [
        FORMAT,
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    match std::env::current_exe().and_then(|p| Ok((std::fs::metadata(&p)?, p))) {
        Ok((meta, path)) => {
            h.update(path.to_string_lossy().as_bytes());
            h.update(meta.len().to_le_bytes());
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            h.update(modified.as_nanos().to_le_bytes());
        }
        // Nothing to tell builds apart: nothing cached is shared.
        Err(_) => h.update(uuid::Uuid::new_v4().as_bytes()),
    }
    h.finalize().into()
}

/// The two-tier result cache; clones share it.
#[derive(Debug, Clone)]
pub struct ResultCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    build: Digest32,
    memory: Mutex<Lru<Arc<CachedResult>>>,
    disk: Option<Mutex<Disk>>,
    metrics: ResultCacheMetrics,
}

impl ResultCache {
    /// A cache with `config`'s bounds, its files in `dir` (memory only
    /// when `None` or when `store.result_cache_disk_mib` is 0). `None` when
    /// `store.result_cache_mib` is 0: caching is off.
    pub fn new(
        config: &StoreConfig,
        dir: Option<PathBuf>,
        metrics: ResultCacheMetrics,
    ) -> Option<Self> {
        if config.result_cache_mib == 0 {
            return None;
        }
        let disk = match dir {
            Some(dir) if config.result_cache_disk_mib > 0 => {
                Disk::open(dir, config.result_cache_disk_mib.saturating_mul(1 << 20))
                    .map(Mutex::new)
            }
            _ => None,
        };
        if let Some(d) = &disk {
            metrics.bytes("disk", lock(d).bytes());
        }
        Some(Self {
            inner: Arc::new(Inner {
                build: build_id(),
                memory: Mutex::new(Lru::new(config.result_cache_mib.saturating_mul(1 << 20))),
                disk,
                metrics,
            }),
        })
    }

    /// The key of a statement's result: this build, the statement's text
    /// and the digest of what it read.
    pub fn key(&self, statement: &str, read: &Digest32) -> Digest32 {
        let mut h = Sha256::new();
        h.update(self.inner.build);
        h.update(statement.as_bytes());
        h.update([0]);
        h.update(read);
        h.finalize().into()
    }

    /// The result kept under `key`, from memory or else from disk.
    pub fn get(&self, key: &Digest32) -> Option<Arc<CachedResult>> {
        self.lookup(key, true)
    }

    /// [`ResultCache::get`] for a probe: a caller that runs nothing when
    /// the result is not kept (it takes another way) is not counted as a
    /// miss, which would say that a statement ran.
    pub fn probe(&self, key: &Digest32) -> Option<Arc<CachedResult>> {
        self.lookup(key, false)
    }

    fn lookup(&self, key: &Digest32, count_miss: bool) -> Option<Arc<CachedResult>> {
        let inner = &self.inner;
        if let Some(hit) = lock(&inner.memory).get(key) {
            inner.metrics.lookup(CacheOutcome::Memory);
            return Some(hit);
        }
        let found = inner.disk.as_ref().and_then(|d| {
            // Read outside the lock: files are written once and renamed into
            // place, so a reader sees a whole file or none.
            let path = lock(d).touch(key)?;
            disk::read(&path).or_else(|| {
                let freed = lock(d).forget(key);
                inner.metrics.bytes("disk", freed);
                None
            })
        });
        match found {
            Some(result) => {
                inner.metrics.lookup(CacheOutcome::Disk);
                let result = Arc::new(result);
                self.keep_in_memory(*key, result.clone());
                Some(result)
            }
            None => {
                if count_miss {
                    inner.metrics.lookup(CacheOutcome::Miss);
                }
                None
            }
        }
    }

    /// Keeps `result` under `key`, in memory and on disk.
    pub fn put(&self, key: Digest32, result: Arc<CachedResult>) {
        if let Some(d) = &self.inner.disk {
            let dir = lock(d).dir().to_owned();
            if let Some(bytes) = disk::write(&dir, &key, &result) {
                let total = lock(d).add(key, bytes);
                self.inner.metrics.bytes("disk", total);
            }
        }
        self.keep_in_memory(key, result);
    }

    fn keep_in_memory(&self, key: Digest32, result: Arc<CachedResult>) {
        let bytes = result.bytes();
        let mut memory = lock(&self.inner.memory);
        memory.insert(key, result, bytes);
        self.inner.metrics.bytes("memory", memory.bytes());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent at every step: a panic elsewhere
    // does not make them unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
