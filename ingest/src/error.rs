//! The ingest error type. [`IngestError::is_retryable`] is the one place that
//! decides whether trying again can help.

use keyshift_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("pseudonymization secret at {path}: {reason}")]
    Secret { path: String, reason: String },
    #[error("loading the dedup index from auth_events: {0}")]
    DedupLoad(String),
}

impl IngestError {
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Store(e) => e.is_retryable(),
            IngestError::Secret { .. } | IngestError::DedupLoad(_) => false,
        }
    }
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;
