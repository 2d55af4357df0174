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
    #[error("kafka topic {topic}: {message}")]
    Kafka { topic: String, message: String },
    #[error(
        "kafka topic {topic} partition {partition}: offset {expected} is no longer on the broker \
         (first available: {available}); stopping as kafka.offset_out_of_range = \"stop\" says"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        expected: i64,
        available: i64,
    },
}

impl IngestError {
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Store(e) => e.is_retryable(),
            IngestError::Kafka { .. } => true,
            IngestError::Secret { .. }
            | IngestError::DedupLoad(_)
            | IngestError::OffsetOutOfRange { .. } => false,
        }
    }
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;
