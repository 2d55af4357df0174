//! The ingest error type. [`IngestError::kind`] is the one place that
//! decides what trying again can do; store failures keep the kind the store
//! gave them.

use keyshift_store::{ErrorKind, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("pseudonymization secret at {path}: {reason}")]
    Secret { path: String, reason: String },
    #[error("loading the dedup index from auth_events: {0}")]
    DedupLoad(String),
    /// The broker or the client refused or did not answer.
    #[error("kafka topic {topic}: {message} ({kind})")]
    Kafka {
        topic: String,
        message: String,
        kind: ErrorKind,
    },
    /// A task of the Kafka path ended without an answer: a panic (a bug) or
    /// the runtime stopping under it.
    #[error("kafka topic {topic}: the {what} failed: {message}")]
    Task {
        topic: String,
        what: &'static str,
        message: String,
        panicked: bool,
    },
    /// A batch gave up because the batch before it was not committed; the
    /// earlier batch's error says why.
    #[error("kafka topic {topic}: an earlier batch was not committed")]
    EarlierBatchFailed { topic: String },
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
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_keeps_or_has_its_kind() {
        for kind in ErrorKind::ALL {
            let e = IngestError::Store(StoreError::CommitFailed {
                table: "auth_events",
                kind,
                error_id: "abc".into(),
                message: "m".into(),
            });
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
