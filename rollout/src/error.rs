//! The rollout error type. [`RolloutError::is_retryable`] is the one place
//! that decides whether trying again can help.

use keyshift_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("no rollout {0:?}")]
    NotFound(String),
    #[error("rollout {rollout_id}: {message}")]
    Invalid { rollout_id: String, message: String },
    #[error("rollout {rollout_id}: reading the store: {source}")]
    Observe {
        rollout_id: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("rollout {rollout_id}: recording decision {seq}: {source}")]
    Record {
        rollout_id: String,
        seq: i64,
        #[source]
        source: Box<StoreError>,
    },
    #[error("loading the decision log: {0}")]
    Load(#[source] Box<StoreError>),
    #[error(
        "rollout {rollout_id}: another controller recorded decision {seq} first; this one is fenced \
         and stops"
    )]
    Fenced { rollout_id: String, seq: i64 },
    #[error("kafka topic {topic}: {message}")]
    Kafka {
        topic: String,
        message: String,
        /// Another controller claimed the transactional id.
        fenced: bool,
    },
    #[error("the controller lock {path} is held by another process (one controller per data dir)")]
    Locked { path: String },
    #[error("controller lock {path}: {source}")]
    LockIo {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl RolloutError {
    pub fn is_retryable(&self) -> bool {
        match self {
            RolloutError::Observe { source, .. } | RolloutError::Record { source, .. } => {
                source.is_retryable()
            }
            RolloutError::Load(e) => e.is_retryable(),
            RolloutError::Kafka { fenced, .. } => !fenced,
            RolloutError::NotFound(_)
            | RolloutError::Invalid { .. }
            | RolloutError::Fenced { .. }
            | RolloutError::Locked { .. }
            | RolloutError::LockIo { .. } => false,
        }
    }
}

pub type Result<T, E = RolloutError> = std::result::Result<T, E>;
