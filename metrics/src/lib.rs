//! keyshift's read API: SQL over the store and the Prometheus exposition.
//!
//! - `POST /v1/sql` `{"sql": "…"}` → `{"rows": [{column: value}], "truncated": bool}`:
//!   one read-only statement, under the store's row, time and memory limits;
//!   needs an admin token (or an open loopback server).
//! - `GET /metrics`: every keyshift metric, Prometheus text format.

mod error;
pub mod metrics;
pub mod sql;

pub use error::{MetricsError, Result};
pub use sql::{SqlState, batches_to_rows, metrics_router, router};
