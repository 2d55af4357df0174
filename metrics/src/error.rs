//! The metrics crate's error type.

use keyshift_http::ApiError;
use keyshift_store::StoreError;

/// Why a read-API request (SQL, KPI report, funnel) failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The store refused or failed the query (not read-only, busy, time or memory
    /// limit, planning or execution error); mapped to an HTTP status by its kind.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Query results could not be turned into JSON.
    #[error("rendering rows as JSON: {0}")]
    Render(String),
    /// The caller's request is wrong (a parameter, a range).
    #[error("{0}")]
    BadRequest(String),
    /// A KPI query of keyshift's own failed to plan or run: a bug, never
    /// the caller's fault.
    #[error("KPI query failed: {0}")]
    Kpi(String),
}

impl MetricsError {
    /// True only for a store error that is itself retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            MetricsError::Store(e) => e.is_retryable(),
            MetricsError::Render(_) | MetricsError::BadRequest(_) | MetricsError::Kpi(_) => false,
        }
    }
}

impl From<MetricsError> for ApiError {
    fn from(e: MetricsError) -> Self {
        use datafusion::error::DataFusionError as D;
        match e {
            MetricsError::BadRequest(m) => ApiError::BadRequest(m),
            MetricsError::Store(StoreError::NotReadOnly(m)) => ApiError::BadRequest(format!(
                "only a single SELECT, WITH or EXPLAIN statement is allowed: {m}"
            )),
            MetricsError::Store(e @ StoreError::QueryTimeout(_)) => {
                ApiError::Timeout(e.to_string())
            }
            MetricsError::Store(e @ StoreError::QueryMemory { .. }) => {
                ApiError::BadRequest(e.to_string())
            }
            MetricsError::Store(StoreError::Busy {
                reason,
                retry_after,
            }) => ApiError::TooManyRequests {
                message: format!("too many queries ({reason}); retry later"),
                retry_after: retry_after.as_secs().max(1),
            },
            MetricsError::Store(e @ StoreError::ShuttingDown) => {
                ApiError::Unavailable(e.to_string())
            }
            MetricsError::Store(StoreError::Query(q)) => match q.find_root() {
                D::SQL(..)
                | D::Plan(_)
                | D::SchemaError(..)
                | D::NotImplemented(_)
                | D::ResourcesExhausted(_) => ApiError::BadRequest(q.find_root().to_string()),
                _ => ApiError::Internal(q.to_string()),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A result whose error is a [`MetricsError`].
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;
