//! keyshift ingest: one pipeline, several sources.
//!
//! The [`pipeline::Pipeline`] validates each input against schema v1,
//! enforces RP scoping, replaces identifiers with keyed hashes, drops repeats
//! of an `event_id` within the dedup window, and hands the result to the
//! store's writer. Sources feed it: the HTTP collector ([`collector`]) and
//! the Kafka consumer ([`kafka`]).

mod check;
pub mod collector;
pub mod config;
pub mod cpu;
pub mod dedup;
mod error;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod pseudonym;
pub mod watermark;

#[cfg(test)]
mod bounded_dedup_tests;

pub use config::IngestConfig;
pub use error::{IngestError, Result};
pub use pipeline::Pipeline;
pub use watermark::IngestWatermark;
