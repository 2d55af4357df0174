//! Reading an import file: plain or gzip-compressed NDJSON (detected by its
//! magic bytes, not its name), line by line with a bound on a line's length,
//! and the file's content id that names it in the tables' `txn` actions.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Standard input, as named on the command line.
pub const STDIN: &str = "-";

/// What names standard input's rows in `source_topic` (it has no content id).
pub const STDIN_ID: &str = "stdin";

/// An open import file.
pub struct Opened {
    /// Its lines, decompressed.
    pub reader: Box<dyn BufRead + Send>,
    /// Bytes of the file (compressed, as stored) read so far.
    pub read: Arc<AtomicU64>,
    /// The file's size in bytes; `None` for standard input.
    pub size: Option<u64>,
    /// Whether it is gzip-compressed.
    pub gzip: bool,
}

/// The content id of the file at `path`: the first 128 bits of SHA-256
/// over its bytes, in hex. The same bytes under another name are the same
/// import; an edited file is a new one.
pub fn content_id(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex::encode(&hash.finalize()[..16]))
}

/// Counts the bytes that pass, for the progress display.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens `path` (`-`: standard input), decompressing when it starts with
/// the gzip magic bytes.
pub fn open(path: &Path) -> io::Result<Opened> {
    let read = Arc::new(AtomicU64::new(0));
    let (source, size): (Box<dyn Read + Send>, _) = if path.as_os_str() == STDIN {
        (Box::new(io::stdin()), None)
    } else {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        (Box::new(file), Some(size))
    };
    let mut raw = BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: source,
            read: read.clone(),
        },
    );
    let gzip = raw.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead + Send> = if gzip {
        // Multi-member: `cat a.gz b.gz` is a valid gzip stream too.
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    };
    Ok(Opened {
        reader,
        read,
        size,
        gzip,
    })
}

/// One line of the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The line's bytes, without the line end.
    Text(Vec<u8>),
    /// A line longer than the limit: its first bytes and its full length.
    TooLong {
        /// The first bytes, as many as the limit allows.
        head: Vec<u8>,
        /// The line's length in bytes.
        size: usize,
    },
}

/// Consecutive lines of a file.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The non-blank lines past the resume point, each with its number
    /// (from 1).
    pub lines: Vec<(i64, Line)>,
    /// The number of the last line read (blank or not).
    pub last_line: i64,
    /// Blank lines read.
    pub blank: u64,
    /// Lines at or before the resume point, read past.
    pub skipped: u64,
}

/// Bytes of line text a chunk holds at most (besides its line count), so
/// that a file of very long lines cannot make one chunk huge.
pub const MAX_CHUNK_BYTES: usize = 64 << 20;

/// Reads line by line: lines up to `skip_through` are passed over, blank
/// ones are counted; a line longer than `max_line` bytes keeps its first
/// `max_line` bytes only.
pub struct Lines<R> {
    reader: R,
    line: i64,
    skip_through: i64,
    max_line: usize,
    max_chunk_bytes: usize,
}

impl<R: BufRead> Lines<R> {
    /// Lines of `reader`, passing over those numbered up to `skip_through`.
    pub fn new(reader: R, skip_through: i64, max_line: usize) -> Self {
        Self {
            reader,
            line: 0,
            skip_through,
            max_line,
            max_chunk_bytes: MAX_CHUNK_BYTES,
        }
    }

    /// The next `max` lines (fewer at the end of the file, or once the
    /// lines kept reach [`MAX_CHUNK_BYTES`]); `None` past the end.
    pub fn chunk(&mut self, max: usize) -> io::Result<Option<Chunk>> {
        let mut chunk = Chunk::default();
        let mut any = false;
        let mut bytes = 0usize;
        for _ in 0..max {
            if bytes >= self.max_chunk_bytes {
                break;
            }
            let mut buf = Vec::new();
            let Some(size) = self.read_line(&mut buf)? else {
                break;
            };
            any = true;
            self.line += 1;
            chunk.last_line = self.line;
            if self.line <= self.skip_through {
                chunk.skipped += 1;
                continue;
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                chunk.blank += 1;
                continue;
            }
            bytes += buf.len();
            let line = if size > buf.len() {
                Line::TooLong { head: buf, size }
            } else {
                Line::Text(buf)
            };
            chunk.lines.push((self.line, line));
        }
        Ok(any.then_some(chunk))
    }

    /// Reads one line into `buf` (at most `max_line` bytes of it, without
    /// the line end); its full length, or `None` at the end of the file.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let mut size = 0usize;
        let mut seen = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            seen = true;
            let (part, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..i], i + 1),
                None => (available, available.len()),
            };
            let room = self.max_line.saturating_sub(buf.len());
            buf.extend_from_slice(&part[..part.len().min(room)]);
            size += part.len();
            let ended = done > part.len();
            self.reader.consume(done);
            if ended {
                break;
            }
        }
        if !seen {
            return Ok(None);
        }
        if buf.last() == Some(&b'\r') && size == buf.len() {
            buf.pop();
            size -= 1;
        }
        Ok(Some(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &[u8], skip: i64, max_line: usize, max: usize) -> Vec<Chunk> {
        let mut lines = Lines::new(text, skip, max_line);
        let mut out = Vec::new();
        while let Some(c) = lines.chunk(max).expect("read") {
            out.push(c);
        }
        out
    }

    #[test]
    fn numbers_lines_skips_blank_ones_and_bounds_long_ones() {
        let got = chunks(b"a\r\n\n  \nbbbbbb\nc", 0, 4, 10);
        assert_eq!(got.len(), 1);
        let c = &got[0];
        assert_eq!(c.last_line, 5);
        assert_eq!(c.blank, 2);
        assert_eq!(
            c.lines,
            vec![
                (1, Line::Text(b"a".to_vec())),
                (
                    4,
                    Line::TooLong {
                        head: b"bbbb".to_vec(),
                        size: 6
                    }
                ),
                (5, Line::Text(b"c".to_vec())),
            ]
        );
    }

    #[test]
    fn resumes_after_a_line_and_splits_into_chunks() {
        let got = chunks(b"1\n2\n3\n4\n5\n", 2, 100, 2);
        let lines: Vec<Vec<i64>> = got
            .iter()
            .map(|c| c.lines.iter().map(|(n, _)| *n).collect())
            .collect();
        assert_eq!(lines, vec![vec![], vec![3, 4], vec![5]]);
        assert_eq!(got.iter().map(|c| c.skipped).sum::<u64>(), 2);
        assert_eq!(got.last().map(|c| c.last_line), Some(5));
    }

    #[test]
    fn a_chunk_ends_once_it_holds_enough_bytes() {
        let mut lines = Lines::new(&b"aaaa\nbbbb\ncccc\n"[..], 0, 100);
        lines.max_chunk_bytes = 8;
        let sizes: Vec<usize> = std::iter::from_fn(|| lines.chunk(10).expect("read"))
            .map(|c| c.lines.len())
            .collect();
        assert_eq!(sizes, [2, 1]);
    }

    #[test]
    fn gzip_is_detected_by_content() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.ndjson");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"x\ny\n").expect("gzip");
        std::fs::write(&path, gz.finish().expect("gzip")).expect("write");
        let opened = open(&path).expect("open");
        assert!(opened.gzip);
        let mut lines = Lines::new(opened.reader, 0, 10);
        let c = lines.chunk(10).expect("read").expect("lines");
        assert_eq!(c.lines.len(), 2);
        assert_eq!(content_id(&path).expect("id").len(), 32);
    }
}
