//! The report's one error type.

use std::path::PathBuf;

/// What can stop a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// polars could not read the files or compute a section.
    #[error("{section}: {source}")]
    Polars {
        /// What was being read or computed.
        section: &'static str,
        /// What polars said.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A table file could not be read, or a file of the report written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("drawing {chart}: {message}")]
    Chart {
        /// The chart's name (`cohort adoption`, …).
        chart: &'static str,
        /// What the plotting library said.
        message: String,
    },
    /// The request makes no sense (an empty range…).
    #[error("{0}")]
    Invalid(String),
}

/// A result whose error is a [`ReportError`].
pub type Result<T> = std::result::Result<T, ReportError>;

/// Tags a polars error with the section that was being computed.
pub(crate) fn polars(
    section: &'static str,
) -> impl FnOnce(polars::error::PolarsError) -> ReportError {
    move |source| ReportError::Polars { section, source }
}
