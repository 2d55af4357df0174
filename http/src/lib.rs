//! HTTP plumbing shared by every keyshift API: the one error type (JSON
//! `{"error": …}` bodies), bearer-token authentication with RP scoping, the
//! rule that an unauthenticated server only listens on loopback, and body
//! reading with a size limit.

mod auth;
mod error;

pub use auth::{AuthConfig, Authenticator, Principal, RpToken, check_listen_address};
pub use error::{ApiError, ApiResult};

use axum::body::{Body, Bytes};

/// Reads a request body, refusing more than `limit` bytes with a 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes"))
        } else {
            ApiError::BadRequest(format!("reading request body: {inner}"))
        }
    })
}
