//! What an import did: per file and in total, for the terminal or as
//! JSON, and the exit status it calls for.

use anyhow::bail;
use serde::Serialize;

use super::reader;

/// A refused line, as the report lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LineRejection {
    /// The line's number in the file, from 1.
    pub line: i64,
    /// Its `event_id`, when it had a string one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// What is wrong with it.
    pub error: String,
}

/// Rejections listed in the report per file; all are in `rejected_events`.
pub(super) const LISTED_REJECTIONS: usize = 20;

/// What became of one file in this run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    /// The file as named on the command line.
    pub file: String,
    /// Its content id (`source_topic` of its rows); `None` for standard input.
    pub content_id: Option<String>,
    /// Lines up to this one were stored by an earlier run and passed over.
    pub resumed_after_line: i64,
    /// Lines read in this run, blank and passed-over ones included.
    pub lines: u64,
    /// Blank lines (ignored).
    pub blank: u64,
    /// Events stored.
    pub accepted: u64,
    /// Valid events already stored (same `rp_id` and `event_id`) within the
    /// dedup window, or earlier in the file.
    pub duplicates: u64,
    /// Lines refused; each is in `rejected_events`.
    pub rejected: u64,
    /// The first refused lines.
    pub rejections: Vec<LineRejection>,
}

/// What became of every file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// One entry per file, in command-line order.
    pub files: Vec<FileReport>,
    /// Stopped by a signal before the end; run the same command to resume.
    pub interrupted: bool,
}

/// The import finished, but lines were refused (exit status 3).
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} lines were rejected; each is in rejected_events (source = 'import', \
     source_offset = its line)"
)]
pub struct LinesRejected(pub u64);

impl ImportReport {
    /// Sums over the files: (accepted, duplicates, rejected).
    pub fn totals(&self) -> (u64, u64, u64) {
        self.files.iter().fold((0, 0, 0), |(a, d, r), f| {
            (a + f.accepted, d + f.duplicates, r + f.rejected)
        })
    }

    /// Success, or why the command must exit non-zero.
    pub fn outcome(&self) -> anyhow::Result<()> {
        let (_, _, rejected) = self.totals();
        if self.interrupted {
            bail!("interrupted; run the same command again to resume after the last stored line");
        }
        if rejected > 0 {
            return Err(LinesRejected(rejected).into());
        }
        Ok(())
    }

    /// The report for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            out.push_str(&format!(
                "{}{}: {} lines, {} accepted, {} duplicates, {} rejected, {} blank{}\n",
                f.file,
                f.content_id
                    .as_deref()
                    .map_or_else(String::new, |id| format!(" (content id {id})")),
                f.lines,
                f.accepted,
                f.duplicates,
                f.rejected,
                f.blank,
                if f.resumed_after_line > 0 {
                    format!(
                        "; lines 1–{} were stored by an earlier run",
                        f.resumed_after_line
                    )
                } else {
                    String::new()
                },
            ));
            for r in &f.rejections {
                out.push_str(&format!("  line {}: {}\n", r.line, r.error));
            }
            if f.rejected > f.rejections.len() as u64 {
                out.push_str(&format!(
                    "  … {} more in rejected_events (source_topic = '{}')\n",
                    f.rejected - f.rejections.len() as u64,
                    f.content_id.as_deref().unwrap_or(reader::STDIN_ID),
                ));
            }
        }
        let (a, d, r) = self.totals();
        out.push_str(&format!(
            "total: {a} accepted, {d} duplicates, {r} rejected{}",
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        ));
        out
    }
}
