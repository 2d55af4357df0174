//! The cache's files: one Arrow IPC file per result, named by its key,
//! written to a temporary name and renamed into place (readers, also in
//! other keyshift processes sharing the directory, see whole files only).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use tracing::{debug, warn};

use super::lru::Lru;
use super::{CachedResult, Digest32};

const SUFFIX: &str = ".arrow";
const TMP: &str = ".tmp-";

/// The directory's index: which keys have a file, and their sizes.
#[derive(Debug)]
pub(super) struct Disk {
    dir: PathBuf,
    index: Lru<()>,
}

impl Disk {
    /// Indexes the files already in `dir` (oldest first out), creating it
    /// if needed; `None`, logged, when it cannot be used.
    pub(super) fn open(dir: PathBuf, max: usize) -> Option<Self> {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            warn!(dir = %dir.display(), error = %e, "query result cache: memory only");
            return None;
        }
        let mut files = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "query result cache: memory only");
                return None;
            }
        };
        let stale = SystemTime::now() - Duration::from_secs(3600);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.starts_with(TMP) {
                // Left by a process that died while writing.
                if modified < stale {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            if let Some(key) = parse(&name) {
                files.push((modified, key, meta.len()));
            }
        }
        files.sort_unstable();
        let mut disk = Self {
            dir,
            index: Lru::new(max),
        };
        for (_, key, len) in files {
            disk.add(key, usize::try_from(len).unwrap_or(usize::MAX));
        }
        Some(disk)
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn bytes(&self) -> usize {
        self.index.bytes()
    }

    /// The file of `key`, now the most recently used: one this process
    /// indexed, or one another process sharing the directory wrote since
    /// (adopted into the index). Its modification time is set to now, so
    /// that the order survives a restart.
    pub(super) fn touch(&mut self, key: &Digest32) -> Option<PathBuf> {
        let file = path(&self.dir, key);
        if self.index.get(key).is_none() {
            let len = std::fs::metadata(&file).ok()?.len();
            self.add(*key, usize::try_from(len).unwrap_or(usize::MAX));
            self.index.get(key)?;
        }
        if let Ok(f) = File::options().write(true).open(&file) {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(file)
    }

    /// Indexes a file just written; deletes what goes out. Returns the bytes held.
    pub(super) fn add(&mut self, key: Digest32, bytes: usize) -> usize {
        for (gone, ()) in self.index.insert(key, (), bytes) {
            let _ = std::fs::remove_file(path(&self.dir, &gone));
        }
        self.index.bytes()
    }

    /// Drops a file that could not be read. Returns the bytes held.
    pub(super) fn forget(&mut self, key: &Digest32) -> usize {
        self.index.remove(key);
        let _ = std::fs::remove_file(path(&self.dir, key));
        self.index.bytes()
    }
}

fn path(dir: &Path, key: &Digest32) -> PathBuf {
    let mut name = String::with_capacity(64 + SUFFIX.len());
    for b in key {
        name.push_str(&format!("{b:02x}"));
    }
    name.push_str(SUFFIX);
    dir.join(name)
}

fn parse(name: &str) -> Option<Digest32> {
    let hex = name.strip_suffix(SUFFIX)?;
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// The result in `path`; `None` (logged) when it is missing or unreadable.
pub(super) fn read(path: &Path) -> Option<CachedResult> {
    let read = || -> Result<CachedResult, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let reader = FileReader::try_new(file, None).map_err(|e| e.to_string())?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(CachedResult { schema, batches })
    };
    read()
        .inspect_err(
            |e| debug!(path = %path.display(), error = %e, "query result cache: unreadable file"),
        )
        .ok()
}

/// Writes `result` as the file of `key`; its size, or `None` (logged).
pub(super) fn write(dir: &Path, key: &Digest32, result: &CachedResult) -> Option<usize> {
    let tmp = dir.join(format!("{TMP}{}", uuid::Uuid::new_v4()));
    let write = || -> Result<u64, String> {
        let file = File::create(&tmp).map_err(|e| e.to_string())?;
        let mut w = FileWriter::try_new(file, &result.schema).map_err(|e| e.to_string())?;
        for b in &result.batches {
            w.write(b).map_err(|e| e.to_string())?;
        }
        let file = w.into_inner().map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        std::fs::rename(&tmp, path(dir, key)).map_err(|e| e.to_string())?;
        Ok(len)
    };
    match write() {
        Ok(len) => Some(usize::try_from(len).unwrap_or(usize::MAX)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            warn!(dir = %dir.display(), error = %e, "query result cache: could not write a result");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let key: Digest32 = std::array::from_fn(|i| u8::try_from(i * 7).unwrap_or(0));
        let p = path(Path::new("/x"), &key);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert_eq!(parse(name), Some(key));
        assert_eq!(parse("zz.arrow"), None);
        assert_eq!(parse(&name.replace(SUFFIX, ".tmp")), None);
    }
}
