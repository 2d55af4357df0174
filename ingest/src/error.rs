//! The ingest error type. [`IngestError::kind`] is the one place that
//! decides what trying again can do; store failures keep the kind the store
//! gave them.

use keyshift_store::{ErrorKind, StoreError};

/// Why ingest failed: at start-up, in the pipeline's commit, or in a Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store failed (a commit or a query); its error keeps the kind the store gave it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pseudonymization secret file could not be read, parsed or created.
    #[error("pseudonymization secret at {path}: {reason}")]
    Secret {
        /// Path of the secret file.
        path: String,
        /// What went wrong: an I/O error, text that is not 64 hex characters, or no
        /// randomness to create a new secret.
        reason: String,
    },
    /// Rows read from `auth_events` for the dedup index (its rebuild, or a
    /// check of keys it is unsure of) could not be decoded (a cast failed or
    /// a column had an unexpected type), or the index was misused; a bug.
    /// Holds the cause.
    #[error("reading dedup keys from auth_events: {0}")]
    DedupLoad(String),
    /// The broker or the client refused or did not answer.
    #[error("kafka topic {topic}: {message} ({kind})")]
    Kafka {
        /// The topic read or produced to (`kafka.dlq_topic` for a dead letter).
        topic: String,
        /// The client's error text, usually after what was being done (such as
        /// `producing a dead letter`).
        message: String,
        /// What a retry can do, judged from the client's error.
        kind: ErrorKind,
    },
    /// A task of the Kafka path ended without an answer: a panic (a bug) or
    /// the runtime stopping under it.
    #[error("kafka topic {topic}: the {what} failed: {message}")]
    Task {
        /// The topic the task was working on.
        topic: String,
        /// Which task ended, such as `batch task`.
        what: &'static str,
        /// The join error's text: the panic message, or that the task was cancelled.
        message: String,
        /// Whether the task panicked (else it was cancelled).
        panicked: bool,
    },
    /// A batch gave up because the batch before it was not committed; the
    /// earlier batch's error says why.
    #[error("kafka topic {topic}: an earlier batch was not committed")]
    EarlierBatchFailed {
        /// The topic being consumed.
        topic: String,
    },
    /// A partition's next offset has left the broker (retention deleted it) and
    /// `kafka.offset_out_of_range` is `stop`.
    #[error(
        "kafka topic {topic} partition {partition}: offset {expected} is no longer on the broker \
         (first available: {available}); stopping as kafka.offset_out_of_range = \"stop\" says"
    )]
    OffsetOutOfRange {
        /// The topic being consumed.
        topic: String,
        /// The partition with the gap.
        partition: i32,
        /// The offset the table's stored position calls for next (that position + 1).
        expected: i64,
        /// The offset the broker delivered instead: the oldest it still holds.
        available: i64,
    },
}

impl IngestError {
    /// What trying again can do.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::Store(e) => e.kind(),
            IngestError::Kafka { kind, .. } => *kind,
            IngestError::Task { panicked, .. } => {
                if *panicked {
                    ErrorKind::Bug
                } else {
                    ErrorKind::Transient
                }
            }
            IngestError::EarlierBatchFailed { .. } => ErrorKind::Transient,
            // Our own table did not decode.
            IngestError::DedupLoad(_) => ErrorKind::Bug,
            IngestError::Secret { .. } | IngestError::OffsetOutOfRange { .. } => ErrorKind::Fatal,
        }
    }

    /// Whether trying again can succeed, by [`IngestError::kind`].
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// The id under which the cause was logged, when there is one.
    pub fn error_id(&self) -> Option<&str> {
        match self {
            IngestError::Store(e) => e.error_id(),
            _ => None,
        }
    }

    /// A task's join failure: a panic is a bug, a cancelled task is not.
    pub(crate) fn task(topic: &str, what: &'static str, e: &tokio::task::JoinError) -> Self {
        IngestError::Task {
            topic: topic.to_owned(),
            what,
            message: e.to_string(),
            panicked: e.is_panic(),
        }
    }

    /// A job of the ingest threads that gave no result (see [`crate::cpu`]).
    pub(crate) fn lost(topic: &str, what: &'static str, e: crate::cpu::Lost) -> Self {
        IngestError::Task {
            topic: topic.to_owned(),
            what,
            message: e.message,
            panicked: e.panicked,
        }
    }
}

/// A result whose error is, by default, an [`IngestError`].
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

/// A failed `auth_events` commit of `kind`, logged under `error_id` (tests).
#[cfg(test)]
pub(crate) fn failed_commit(kind: ErrorKind, error_id: &str) -> IngestError {
    IngestError::Store(StoreError::CommitFailed {
        table: "auth_events",
        kind,
        error_id: error_id.to_owned(),
        message: "m".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_keeps_or_has_its_kind() {
        for kind in ErrorKind::ALL {
            let e = failed_commit(kind, "abc");
            assert_eq!(e.kind(), kind);
            assert_eq!(e.error_id(), Some("abc"));
            let e = IngestError::Kafka {
                topic: "t".into(),
                message: "m".into(),
                kind,
            };
            assert_eq!(e.kind(), kind);
        }
        let task = |panicked| IngestError::Task {
            topic: "t".into(),
            what: "batch task",
            message: "m".into(),
            panicked,
        };
        assert_eq!(task(true).kind(), ErrorKind::Bug);
        assert_eq!(task(false).kind(), ErrorKind::Transient);
        assert!(
            IngestError::EarlierBatchFailed { topic: "t".into() }.is_retryable(),
            "the earlier batch decides"
        );
        assert_eq!(IngestError::DedupLoad("x".into()).kind(), ErrorKind::Bug);
        assert!(
            !IngestError::OffsetOutOfRange {
                topic: "t".into(),
                partition: 0,
                expected: 1,
                available: 5
            }
            .is_retryable()
        );
    }

    #[tokio::test]
    async fn a_panicked_task_is_a_bug() {
        let join = tokio::spawn(async { panic!("boom") }).await;
        let e = IngestError::task("t", "batch task", &join.expect_err("panicked"));
        assert_eq!(e.kind(), ErrorKind::Bug);
        assert!(
            e.to_string()
                .contains("kafka topic t: the batch task failed"),
            "{e}"
        );
    }
}
