//! `GET /v1/kpis` and `GET /v1/funnel`.
//!
//! Admin tokens (and an open loopback server) read every relying party, or
//! all of them at once without `rp_id`; an RP token reads its own `rp_id`
//! only, which is also its default.

use std::time::Instant;

use axum::Json;
use axum::extract::{RawQuery, State};
use keyshift_http::{ApiError, ApiResult, Principal};
use serde_json::Value;

use crate::kpi::{self, KpiRequest, RawParams};
use crate::metrics::outcome;
use crate::{MetricsError, SqlState};

/// The checked request, with the caller's scope applied.
fn request(state: &SqlState, principal: &Principal, query: Option<&str>) -> ApiResult<KpiRequest> {
    let mut raw = RawParams::from_query(query.unwrap_or_default()).map_err(ApiError::from)?;
    if let Principal::Rp(own) = principal {
        match &raw.rp_id {
            None => raw.rp_id = Some(own.clone()),
            Some(asked) if asked == own => {}
            Some(asked) => {
                return Err(ApiError::Forbidden(format!(
                    "this token reads rp_id {own:?} only, not {asked:?}"
                )));
            }
        }
    }
    let watermark = (state.watermark)().unwrap_or_else(chrono::Utc::now);
    raw.check(watermark).map_err(ApiError::from)
}

/// Which report an endpoint serves.
#[derive(Debug, Clone, Copy)]
enum Report {
    Kpis,
    Funnel,
}

impl Report {
    fn label(self) -> &'static str {
        match self {
            Report::Kpis => "kpis",
            Report::Funnel => "funnel",
        }
    }
}

async fn serve(
    state: SqlState,
    principal: Principal,
    query: Option<String>,
    report: Report,
) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let result = async {
        let req = request(&state, &principal, query.as_deref())?;
        let watermark = (state.watermark)();
        let body = match report {
            Report::Kpis => serde_json::to_value(kpi::kpis(&state.engine, &req, watermark).await?),
            Report::Funnel => {
                serde_json::to_value(kpi::funnels(&state.engine, &req, watermark).await?)
            }
        };
        body.map_err(|e| ApiError::from(MetricsError::Render(e.to_string())))
    }
    .await;
    state.metrics.kpi(
        report.label(),
        outcome(&result),
        started.elapsed().as_secs_f64(),
    );
    result.map(Json)
}

pub(crate) async fn get_kpis(
    State(state): State<SqlState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    serve(state, principal, query, Report::Kpis).await
}

pub(crate) async fn get_funnel(
    State(state): State<SqlState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    serve(state, principal, query, Report::Funnel).await
}
