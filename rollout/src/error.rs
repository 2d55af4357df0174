//! The rollout error type. [`RolloutError::is_retryable`] is the one place
//! that decides whether trying again can help.

use keyshift_store::StoreError;

/// Why a rollout controller call or API request failed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// No rollout with this id is configured (the id is carried).
    #[error("no rollout {0:?}")]
    NotFound(String),
    /// A manual operation was refused: no reason given, or not allowed in the rollout's
    /// phase or at its step.
    #[error("rollout {rollout_id}: {message}")]
    Invalid {
        /// The rollout the operation was for.
        rollout_id: String,
        /// What was wrong, for the caller.
        message: String,
    },
    /// The store failed to answer an evaluation's queries about the rollout's window.
    #[error("rollout {rollout_id}: reading the store: {source}")]
    Observe {
        /// The rollout being evaluated.
        rollout_id: String,
        /// The store's error; it decides whether a retry can help.
        #[source]
        source: Box<StoreError>,
    },
    /// Appending a decision to the `rollout_decisions` table failed (other than by fencing).
    #[error("rollout {rollout_id}: recording decision {seq}: {source}")]
    Record {
        /// The rollout the decision belongs to.
        rollout_id: String,
        /// Sequence number of the decision that was not recorded.
        seq: i64,
        /// The store's error; it decides whether a retry can help.
        #[source]
        source: Box<StoreError>,
    },
    /// Reading the decision log at start-up failed (the query or decoding its rows).
    #[error("loading the decision log: {0}")]
    Load(#[source] Box<StoreError>),
    /// Another controller recorded this decision's sequence number (or claimed the Kafka
    /// transactional id) first; this controller stops.
    #[error(
        "rollout {rollout_id}: another controller recorded decision {seq} first; this one is fenced \
         and stops"
    )]
    Fenced {
        /// The rollout whose decision was refused; `"*"` when the controller stops running.
        rollout_id: String,
        /// Sequence number of the refused decision; 0 when the controller stops running.
        seq: i64,
    },
    /// Publishing a decision to Kafka failed.
    #[error("kafka topic {topic}: {message}")]
    Kafka {
        /// The topic decisions are published to.
        topic: String,
        /// What failed (creating the producer, claiming the id, sending) and librdkafka's error.
        message: String,
        /// Another controller claimed the transactional id.
        fenced: bool,
    },
    /// Another process holds the data dir's controller lock file.
    #[error("the controller lock {path} is held by another process (one controller per data dir)")]
    Locked {
        /// Path of the lock file.
        path: String,
    },
    /// The controller lock file could not be opened or locked.
    #[error("controller lock {path}: {source}")]
    LockIo {
        /// Path of the lock file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl RolloutError {
    /// True when trying again later can help: a retryable store error, or a Kafka error
    /// that is not fencing. Not-found, refused operations, fencing and lock errors are final.
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

/// A result whose error is a [`RolloutError`].
pub type Result<T, E = RolloutError> = std::result::Result<T, E>;
