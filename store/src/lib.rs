//! keyshift's storage: Delta Lake tables and the DataFusion session over them.
//!
//! - `auth_events`: every accepted event, typed columns, partitioned by the UTC
//!   date of `occurred_at`. Identifiers arrive here already pseudonymized.
//! - `rejected_events`: everything that was refused, with the reason and a
//!   redacted copy of the payload, so nothing is dropped silently.
//! - `rollout_decisions`: the rollout controller's decision log
//!   ([`decisions`]).
//!
//! Writes go through one [`writer::Writer`] task per process, which groups
//! concurrent requests into one Delta commit per table per flush (group
//! commit). Reads go through [`query::QueryEngine`], which always plans against
//! the latest committed snapshot and runs on the query runtime
//! ([`executor::QueryExecutor`]), never on the threads that serve ingest.

mod checkpoint;
pub mod commit_safety;
pub mod config;
pub mod decisions;
mod error;
pub mod executor;
pub mod fixture;
mod guard;
pub mod maintenance;
pub mod metrics;
mod migrate;
pub mod priority;
pub mod query;
pub mod records;
pub mod result_cache;
pub mod schema;
mod session;
pub mod tables;
pub mod writer;

pub use config::StoreConfig;
pub use decisions::DecisionRecord;
pub use error::{ErrorKind, Result, StoreError, new_error_id};
pub use executor::{ExecutorSettings, Lane, QueryExecutor};
pub use maintenance::{Maintainer, MaintenanceConfig};
pub use query::QueryEngine;
pub use records::{EventRecord, RejectedRecord, Source};
pub use result_cache::ResultCache;
pub use tables::Tables;
pub use writer::{CommitReceipt, StreamPosition, TxnVersions, Writer, WriterHandle};

/// Table names, as registered in DataFusion and as directory names under the root.
pub const AUTH_EVENTS: &str = "auth_events";
/// The table of refused inputs, with their reasons and redacted payloads.
pub const REJECTED_EVENTS: &str = "rejected_events";
/// The rollout controller's decision log ([`decisions`]).
pub const ROLLOUT_DECISIONS: &str = "rollout_decisions";

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod stats_tests;
#[cfg(test)]
mod tests;
