//! `POST /v1/sql`, `GET /metrics`, and the router of the read API.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use datafusion::arrow::record_batch::RecordBatch;
use keyshift_http::{ApiError, ApiResult, Authenticator, Principal, read_body};
use keyshift_store::QueryEngine;
use prometheus::Registry;
use serde::Deserialize;
use serde_json::Value;

use crate::metrics::{ApiMetrics, outcome, render};
use crate::{MetricsError, Result};

/// Largest accepted SQL request body.
const MAX_SQL_BODY: usize = 64 * 1024;

/// Up to when the store holds every event that reached keyshift (`None`:
/// not known yet).
pub type Watermark = Arc<dyn Fn() -> Option<chrono::DateTime<chrono::Utc>> + Send + Sync>;

/// What the read API's handlers share.
#[derive(Clone)]
pub struct SqlState {
    /// Runs the SQL requests and the KPI queries, under the store's limits.
    pub engine: QueryEngine,
    /// Checks bearer tokens on each request.
    pub auth: Arc<Authenticator>,
    /// Every keyshift metric, rendered by `GET /metrics`.
    pub registry: Registry,
    /// Request timings of the SQL and KPI endpoints.
    pub metrics: ApiMetrics,
    /// The ingest watermark: the KPI reports' default `to` and their `complete_to`.
    pub watermark: Watermark,
}

impl std::fmt::Debug for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlState").finish_non_exhaustive()
    }
}

impl FromRef<SqlState> for Arc<Authenticator> {
    fn from_ref(s: &SqlState) -> Self {
        s.auth.clone()
    }
}

/// The read API: `/v1/kpis`, `/v1/funnel`, `/v1/sql`, `/metrics` and
/// `/openapi.json`.
pub fn router(state: SqlState) -> Router {
    let registry = state.registry.clone();
    Router::new()
        .route("/v1/sql", post(post_sql))
        .route("/v1/kpis", get(crate::kpi_api::get_kpis))
        .route("/v1/funnel", get(crate::kpi_api::get_funnel))
        .with_state(state)
        .merge(metrics_router(registry))
        .merge(crate::openapi::router())
        .merge(crate::status::router())
}

/// `GET /metrics` alone (processes without a store).
pub fn metrics_router(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .with_state(registry)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

/// Renders batches as JSON objects, one per row, nulls explicit.
pub fn batches_to_rows(batches: &[RecordBatch]) -> Result<Vec<Value>> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .and_then(|()| writer.finish())
        .map_err(|e| MetricsError::Render(e.to_string()))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| MetricsError::Render(e.to_string()))
}

async fn post_sql(
    State(state): State<SqlState>,
    principal: Principal,
    body: Body,
) -> ApiResult<Json<Value>> {
    principal.require_reader()?;
    let bytes = read_body(body, MAX_SQL_BODY).await?;
    let req: SqlRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"sql\": \"…\"}}: {e}")))?;
    let started = Instant::now();
    let result: ApiResult<(Vec<Value>, bool)> = match state.engine.sql(&req.sql).await {
        // Rendering a large result is CPU work too: not on a server thread.
        Ok(out) => tokio::task::spawn_blocking(move || {
            batches_to_rows(&out.batches).map(|rows| (rows, out.truncated))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("rendering rows: {e}")))
        .and_then(|r| r.map_err(ApiError::from)),
        Err(e) => Err(ApiError::from(MetricsError::from(e))),
    };
    state
        .metrics
        .sql(outcome(&result), started.elapsed().as_secs_f64());
    let (rows, truncated) = result?;
    let mut body = serde_json::json!({ "rows": rows, "truncated": truncated });
    if truncated {
        body["row_limit"] = Value::from(state.engine.limits().max_rows);
    }
    Ok(Json(body))
}

async fn get_metrics(State(registry): State<Registry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&registry),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use keyshift_store::StoreError;
    use serde_json::json;

    #[test]
    fn rows_render_with_explicit_nulls_and_utc_timestamps() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![None, Some("x")])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_000_000), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .expect("batch");
        let rows = batches_to_rows(&[batch]).expect("rows");
        assert_eq!(
            rows[0],
            json!({"n": 1, "s": null, "t": "1970-01-01T00:00:01Z"})
        );
        assert_eq!(rows[1], json!({"n": null, "s": "x", "t": null}));
        assert!(batches_to_rows(&[]).expect("empty").is_empty());
    }

    #[test]
    fn store_errors_map_to_client_and_server_statuses() {
        let not_ro = ApiError::from(MetricsError::Store(StoreError::NotReadOnly("DDL".into())));
        assert_eq!(not_ro.status(), 400);
        let timeout = ApiError::from(MetricsError::Store(StoreError::QueryTimeout(
            std::time::Duration::from_secs(1),
        )));
        assert_eq!(timeout.status(), 504);
        let busy = ApiError::from(MetricsError::Store(StoreError::Busy {
            reason: "queue full".into(),
            retry_after: std::time::Duration::from_secs(2),
        }));
        assert_eq!(busy.status(), 429);
        let memory = ApiError::from(MetricsError::Store(StoreError::QueryMemory {
            limit_mib: 64,
            setting: "store.query_memory_mib",
            detail: "sort".into(),
        }));
        assert_eq!(memory.status(), 400);
        assert!(memory.to_string().contains("64 MiB"));
        let plan = ApiError::from(MetricsError::Store(StoreError::Query(
            datafusion::error::DataFusionError::Plan("no such column".into()),
        )));
        assert_eq!(plan.status(), 400);
    }
}
