//! The API error type. Every handler returns it; it renders as
//! `{"error": "…"}` with the matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request failed. Each variant is sent with one HTTP status (see
/// [`ApiError::status`]); the text is the body's `error`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or asks for something invalid; the text
    /// says what.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the bearer token is missing or unknown. Sent with
    /// `WWW-Authenticate: Bearer`.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 403: the token is valid but may not do this; the text says why.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no route matches the path.
    #[error("not found")]
    NotFound,
    /// A named thing that does not exist (a rollout, say).
    #[error("{0}")]
    NotFoundWhat(String),
    /// 405: the path exists, but not for this HTTP method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413: the body is larger than the endpoint accepts; the text gives the
    /// limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the endpoint does not accept the body's `Content-Type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A transient failure: the client should retry (with the same event ids).
    #[error("{0}")]
    Unavailable(String),
    /// Too much work at once: retry after `retry_after` seconds (sent as the
    /// `Retry-After` header).
    #[error("{message}")]
    TooManyRequests {
        /// What is busy, for the client.
        message: String,
        /// Seconds to wait before retrying.
        retry_after: u64,
    },
    /// 504: the work (a query, say) took longer than its time limit.
    #[error("{0}")]
    Timeout(String),
    /// 500: an unexpected failure; the text is sent to the client.
    #[error("internal error: {0}")]
    Internal(String),
    /// The work was not done and retrying will not help; the details are in
    /// the log under `error_id`, which the body carries.
    #[error("{message} (error id {error_id})")]
    Failed {
        /// What was not done, for the client.
        message: String,
        /// Names the log entry that holds the details.
        error_id: String,
        /// Whether keyshift itself is at fault (a bug) rather than its
        /// environment.
        bug: bool,
    },
}

impl ApiError {
    /// The HTTP status the error is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NotFoundWhat(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) | ApiError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "request failed");
        }
        let body = match &self {
            ApiError::Failed { error_id, .. } => {
                serde_json::json!({ "error": self.to_string(), "error_id": error_id })
            }
            _ => serde_json::json!({ "error": self.to_string() }),
        };
        let mut resp = (status, Json(body)).into_response();
        let headers = resp.headers_mut();
        match &self {
            ApiError::Unauthorized => {
                headers.insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                headers.insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(*retry_after),
                );
            }
            _ => {}
        }
        resp
    }
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failed_is_a_500_that_names_its_error_id() {
        let resp = ApiError::Failed {
            message: "not stored".into(),
            error_id: "0123456789abcdef".into(),
            bug: true,
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error_id"], "0123456789abcdef");
        assert_eq!(v["error"], "not stored (error id 0123456789abcdef)");
    }
}
