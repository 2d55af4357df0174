//! The rollout API.
//!
//! - `GET /v1/assign?rollout=ID&user=UID` → one assignment;
//!   `POST /v1/assign` `{"rollout": ID, "users": [...]}` → many (≤ 10,000).
//!   Admin, an RP token of the rollout's rp_id, or an open loopback server.
//! - `GET /v1/rollouts`, `GET /v1/rollouts/{id}`,
//!   `GET /v1/rollouts/{id}/decisions`: admin (or open).
//! - `POST /v1/rollouts/{id}/{pause|resume|promote|rollback|abort}`
//!   `{"reason": "…"}`: admin (or open), a reason required.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use keyshift_http::{ApiError, ApiResult, Authenticator, Principal, read_body};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::RolloutError;
use crate::controller::{Controller, Operation};

/// Most users in one batch assignment.
const MAX_BATCH_USERS: usize = 10_000;
/// Largest batch-assignment body.
const MAX_ASSIGN_BODY: usize = 1024 * 1024;

/// What the rollout API handlers share.
#[derive(Debug, Clone)]
pub struct RolloutState {
    /// The running controller the handlers read from and operate on.
    pub controller: Arc<Controller>,
    /// Checks bearer tokens (admin or relying-party) on each request.
    pub auth: Arc<Authenticator>,
}

impl FromRef<RolloutState> for Arc<Authenticator> {
    fn from_ref(s: &RolloutState) -> Self {
        s.auth.clone()
    }
}

/// The routes of the rollout API: `/v1/assign` (GET one user, POST a batch) and
/// `/v1/rollouts`, `/v1/rollouts/{id}`, `/v1/rollouts/{id}/decisions`,
/// `POST /v1/rollouts/{id}/{operation}`.
pub fn router(state: RolloutState) -> Router {
    Router::new()
        .route("/v1/assign", get(assign_one).post(assign_many))
        .route("/v1/rollouts", get(list))
        .route("/v1/rollouts/{id}", get(show))
        .route("/v1/rollouts/{id}/decisions", get(decisions))
        .route("/v1/rollouts/{id}/{op}", post(operate))
        .with_state(state)
}

fn api_error(e: RolloutError) -> ApiError {
    match e {
        RolloutError::NotFound(id) => ApiError::NotFoundWhat(format!("no rollout {id:?}")),
        RolloutError::Invalid { .. } => ApiError::BadRequest(e.to_string()),
        e if e.is_retryable() => ApiError::Unavailable(e.to_string()),
        e => ApiError::Internal(e.to_string()),
    }
}

/// Assignment is allowed to admins, to an open server, and to the RP the
/// rollout belongs to.
fn may_assign(state: &RolloutState, principal: &Principal, rollout: &str) -> ApiResult<()> {
    let rp = state
        .controller
        .rp_id(rollout)
        .ok_or_else(|| ApiError::NotFoundWhat(format!("no rollout {rollout:?}")))?;
    if principal.may_write(&rp) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this token may not read rollouts of rp_id {rp:?}"
        )))
    }
}

#[derive(Debug, Deserialize)]
struct AssignQuery {
    rollout: String,
    user: String,
}

async fn assign_one(
    State(state): State<RolloutState>,
    principal: Principal,
    Query(q): Query<AssignQuery>,
) -> ApiResult<Json<Value>> {
    may_assign(&state, &principal, &q.rollout)?;
    let a = state
        .controller
        .assign(&q.rollout, &q.user)
        .map_err(api_error)?;
    Ok(Json(json!({
        "rollout": a.rollout,
        "bucket": a.bucket,
        "percent": a.percent,
        "enabled": a.enabled,
        "variant": a.variant,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBatch {
    rollout: String,
    users: Vec<String>,
}

async fn assign_many(
    State(state): State<RolloutState>,
    principal: Principal,
    body: Body,
) -> ApiResult<Json<Value>> {
    let bytes = read_body(body, MAX_ASSIGN_BODY).await?;
    let req: AssignBatch = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"rollout\": …, \"users\": [...]}}: {e}"
        ))
    })?;
    if req.users.len() > MAX_BATCH_USERS {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} users in one request; at most {MAX_BATCH_USERS}",
            req.users.len()
        )));
    }
    may_assign(&state, &principal, &req.rollout)?;
    let all = state
        .controller
        .assign_many(&req.rollout, &req.users)
        .map_err(api_error)?;
    let percent = all.first().map(|a| a.percent);
    let assignments: Vec<Value> = all
        .into_iter()
        .map(|a| {
            json!({"user": a.user, "bucket": a.bucket, "enabled": a.enabled, "variant": a.variant})
        })
        .collect();
    Ok(Json(json!({
        "rollout": req.rollout,
        "percent": percent,
        "assignments": assignments,
    })))
}

async fn list(State(state): State<RolloutState>, principal: Principal) -> ApiResult<Json<Value>> {
    principal.require_reader()?;
    Ok(Json(json!({ "rollouts": state.controller.list() })))
}

async fn show(
    State(state): State<RolloutState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    principal.require_reader()?;
    let snap = state
        .controller
        .snapshot(&id)
        .ok_or_else(|| ApiError::NotFoundWhat(format!("no rollout {id:?}")))?;
    Ok(Json(
        serde_json::to_value(snap).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

async fn decisions(
    State(state): State<RolloutState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    principal.require_reader()?;
    let all = state.controller.decisions(&id).await.map_err(api_error)?;
    Ok(Json(json!({ "rollout": id, "decisions": all })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationBody {
    reason: String,
}

async fn operate(
    State(state): State<RolloutState>,
    principal: Principal,
    Path((id, op)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let actor = match principal {
        Principal::Admin => "admin",
        Principal::Open => "open",
        Principal::Rp(_) => {
            return Err(ApiError::Forbidden(
                "rollout operations need an admin token".to_owned(),
            ));
        }
    };
    let op = Operation::parse(&op).ok_or_else(|| {
        ApiError::NotFoundWhat(format!(
            "no operation {op:?}; one of pause, resume, promote, rollback, abort"
        ))
    })?;
    let bytes = read_body(body, 64 * 1024).await?;
    let req: OperationBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"reason\": \"…\"}}: {e}")))?;
    let d = state
        .controller
        .operate(&id, op, &req.reason, actor, Utc::now())
        .await
        .map_err(api_error)?;
    Ok(Json(json!({ "decision": d })))
}
