//! `POST /v1/admin/erasures`: the erasure of one user (see
//! `keyshift erase`), for tools that file data subjects' requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use keyshift_http::{ApiError, ApiResult, Authenticator, Principal, read_body};
use keyshift_ingest::pseudonym::Pseudonymizer;
use keyshift_store::WriterHandle;
use keyshift_store::maintenance::erase::{ErasureReport, erase};
use keyshift_store::maintenance::lock::lock_dir;
use serde::Deserialize;
use tracing::error;

/// Largest request body: two identifiers.
const MAX_BODY: usize = 16 * 1024;

/// What the erasure route needs.
#[derive(Clone)]
pub(crate) struct ErasureState {
    pub auth: Arc<Authenticator>,
    pub pseudo: Arc<Pseudonymizer>,
    pub root: String,
    pub options: HashMap<String, String>,
    pub gone_within: Duration,
    pub writer: WriterHandle,
}

impl FromRef<ErasureState> for Arc<Authenticator> {
    fn from_ref(s: &ErasureState) -> Self {
        s.auth.clone()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseRequest {
    rp_id: String,
    user_id: String,
}

pub(crate) fn router(state: ErasureState) -> Router {
    Router::new()
        .route("/v1/admin/erasures", post(post_erasure))
        .with_state(state)
}

/// Admin only (an RP token may not erase, not even its own users: erasure
/// is a decision of the data controller, made with an admin token).
async fn post_erasure(
    State(s): State<ErasureState>,
    principal: Principal,
    body: Body,
) -> ApiResult<(StatusCode, Json<ErasureReport>)> {
    if !matches!(principal, Principal::Admin | Principal::Open) {
        return Err(ApiError::Forbidden(
            "erasure needs an admin token".to_owned(),
        ));
    }
    let bytes = read_body(body, MAX_BODY).await?;
    let req: EraseRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"rp_id\": \"…\", \"user_id\": \"…\"}}: {e}"
        ))
    })?;
    if req.rp_id.is_empty() || req.user_id.is_empty() {
        return Err(ApiError::BadRequest(
            "rp_id and user_id must not be empty".to_owned(),
        ));
    }
    let target = crate::erase_cmd::target(&s.pseudo, &req.rp_id, &req.user_id);
    let report = erase(
        &s.root,
        &s.options,
        lock_dir(&s.root).as_deref(),
        &target,
        s.gone_within,
        // A maintenance pass holds the lock for minutes at most.
        Duration::from_secs(600),
    )
    .await
    .map_err(|e| {
        if e.is_retryable() {
            ApiError::Unavailable(format!("the erasure did not complete; retry: {e}"))
        } else {
            let error_id = keyshift_store::new_error_id();
            error!(error_id, error = %e, "erasure failed");
            ApiError::Failed {
                message: "the erasure failed; it may have removed part of the rows, retry \
                          after fixing the cause"
                    .to_owned(),
                error_id,
                bug: e.kind() == keyshift_store::ErrorKind::Bug,
            }
        }
    })?;
    // Queries read the writer's snapshot: reload it now, not at the next
    // commit, so that the user's rows are gone from answers as of this reply.
    if let Err(e) = s.writer.refresh(Vec::new()).await {
        error!(error = %e, "reloading the tables after an erasure failed");
    }
    Ok((StatusCode::OK, Json(report)))
}
