//! keyshift's read API: the passkey KPIs, SQL over the store and the
//! Prometheus exposition.
//!
//! - `GET /v1/kpis`, `GET /v1/funnel`: the KPI reports ([`kpi`]): one
//!   definition per KPI, computed on the isolated query path.
//! - `POST /v1/sql` `{"sql": "…"}` → `{"rows": [{column: value}], "truncated": bool}`:
//!   one read-only statement, under the store's row, time and memory limits;
//!   needs an admin token (or an open loopback server).
//! - `GET /metrics`: every keyshift metric, Prometheus text format
//!   (`docs/metrics.md`), with the KPI gauges of [`kpi_gauges`]; the day
//!   rollups that reports sum are kept made by [`kpi_rollups`].
//! - `GET /openapi.json`: the OpenAPI 3.1 document of the whole HTTP API.
//! - `GET /`: the status page ([`status`]), built on the endpoints above.

mod error;
pub mod kpi;
mod kpi_api;
pub mod kpi_gauges;
pub mod kpi_rollups;
pub mod metrics;
pub mod openapi;
pub mod sql;
pub mod status;

pub use error::{MetricsError, Result};
pub use sql::{SqlState, Watermark, batches_to_rows, metrics_router, router};
