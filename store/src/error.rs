//! The store's error type and the one classification of failures,
//! [`ErrorKind`]: [`StoreError::kind`] decides whether a caller may try again,
//! and every crate above keeps that kind instead of deciding anew.

use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
use deltalake::{DeltaTableError, ObjectStoreError};

/// What trying again can do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Another writer committed first: reload and the retry succeeds.
    Conflict,
    /// I/O, capacity or shutdown: the same call may succeed later.
    Transient,
    /// Configuration, permissions or table state that retrying cannot fix.
    Fatal,
    /// keyshift produced something invalid (an encoding or schema error, a
    /// panic): retrying the same input fails the same way.
    Bug,
}

impl ErrorKind {
    /// Every kind, in label order.
    pub const ALL: [ErrorKind; 4] = [Self::Conflict, Self::Transient, Self::Fatal, Self::Bug];

    /// Whether the same operation may succeed if tried again.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Conflict | Self::Transient)
    }

    /// The metric label and log field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conflict => "conflict",
            Self::Transient => "transient",
            Self::Fatal => "fatal",
            Self::Bug => "bug",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A short random id that ties a client's error answer to the log line
/// holding the details.
pub fn new_error_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(16);
    id
}

/// Why a store operation (opening, writing or querying the tables) failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Delta Lake failed to load, read or commit to a table.
    #[error("table {table}: {source}")]
    Delta {
        /// The table the operation was on.
        table: &'static str,
        /// deltalake's error.
        #[source]
        source: DeltaTableError,
    },
    /// Arrow refused the columns built from records for a table.
    #[error("table {table}: building record batch: {source}")]
    Arrow {
        /// The table the batch was for.
        table: &'static str,
        /// Arrow's error.
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// DataFusion failed to plan or run a query (a SQL error, a missing
    /// column, a failed scan).
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// A query ran longer than its time limit (the duration held) and was
    /// cancelled.
    #[error("query exceeded its time limit of {0:?} (store.query_timeout) and was cancelled")]
    QueryTimeout(std::time::Duration),
    /// The query needed more memory than its lane may use.
    #[error(
        "query needs more memory than the limit of {limit_mib} MiB ({setting}) allows and was \
         stopped: {detail}"
    )]
    QueryMemory {
        /// The lane's memory limit, in MiB.
        limit_mib: usize,
        /// The setting that holds that limit (`store.query_memory_mib` or
        /// `store.control_query_memory_mib`).
        setting: &'static str,
        /// DataFusion's message about the refused reservation.
        detail: String,
    },
    /// No query slot: too many queries running and waiting.
    #[error("too many queries ({reason}); retry after {}s", .retry_after.as_secs())]
    Busy {
        /// Why no slot was free: the queue was full, or none freed up in time.
        reason: String,
        /// How long the client should wait before trying again.
        retry_after: std::time::Duration,
    },
    /// The process is stopping: the query was cancelled or refused.
    #[error("keyshift is shutting down; the query was cancelled")]
    ShuttingDown,
    /// A query task panicked: a bug, never retried.
    #[error("query failed unexpectedly: {0}")]
    QueryPanicked(String),
    /// The SQL was not a read-only query (DDL, DML or another statement);
    /// holds DataFusion's message.
    #[error("statement not allowed: {0}")]
    NotReadOnly(String),
    /// The table location is unusable: an invalid URL, a scheme this build
    /// does not support, no table there, or the decisions table not opened.
    #[error("invalid table location {uri:?}: {reason}")]
    Location {
        /// The location (root directory, URL or table name) that was refused.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object store at the root could let two writers overwrite each
    /// other's commits (it ignores conditional writes), or could not be
    /// probed for it (see `commit_safety`).
    #[error("refusing to write to {uri}: {reason}")]
    UnsafeObjectStore {
        /// The table root.
        uri: String,
        /// What the probe found.
        reason: String,
    },
    /// A table's schema cannot be brought to the one this build writes: a
    /// column's type differs, or the table has columns this build does not
    /// know (a newer keyshift wrote it).
    #[error("table {table} does not fit this build: {reason}")]
    SchemaMismatch {
        /// The table.
        table: &'static str,
        /// Every difference, one per column.
        reason: String,
    },
    /// A local file-system operation failed, or the query runtime could not
    /// be started.
    #[error("io error at {path}: {source}")]
    Io {
        /// The path involved (or `query runtime`).
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The writer task stopped before it took or answered the request: it
    /// may not have been committed.
    #[error("the writer has stopped")]
    WriterClosed,
    /// Rows read back from a table could not be turned into records (a
    /// missing column or an unexpected type); holds what was wrong.
    #[error("reading stored rows: {0}")]
    Decode(String),
    /// Another process holds the table root's maintenance lock (see
    /// `maintenance::lock`).
    #[error("another maintainer holds {path}; try again when it is done")]
    Locked {
        /// The lock file.
        path: String,
    },
    /// Another writer recorded this position first (a second controller).
    #[error("{app_id}: expected to record version {expected}, the table is at {found:?}")]
    Fenced {
        /// The `txn` app id of the rollout (`keyshift-rollout-<id>`).
        app_id: String,
        /// The sequence number this append tried to record.
        expected: i64,
        /// The last sequence number the table has recorded for the app id;
        /// `None` when it has none.
        found: Option<i64>,
    },
    /// A stream's position in the table is not the one the commit follows:
    /// another writer recorded the stream since this one read it (a topic
    /// partition that moved to another member). Nothing was committed.
    #[error(
        "{app_id}: the table holds stream position {found:?}, the commit follows {expected:?}; another writer recorded the stream meanwhile (a rebalance), nothing was committed"
    )]
    PositionMoved {
        /// The `txn` app id of the stream.
        app_id: String,
        /// The position the commit expected the table to hold.
        expected: Option<i64>,
        /// The position the table holds.
        found: Option<i64>,
    },
    /// A group commit failed; every request in it gets this, with the kind
    /// of the root cause and the id under which the cause was logged.
    #[error(
        "commit to {table} failed and was not applied ({kind}, error id {error_id}): {message}"
    )]
    CommitFailed {
        /// The table whose commit failed.
        table: &'static str,
        /// The kind of the root cause.
        kind: ErrorKind,
        /// The id under which the writer logged the root cause.
        error_id: String,
        /// The root cause's message.
        message: String,
    },
}

impl StoreError {
    pub(crate) fn delta(table: &'static str) -> impl FnOnce(DeltaTableError) -> Self {
        move |source| StoreError::Delta { table, source }
    }

    pub(crate) fn arrow(
        table: &'static str,
    ) -> impl FnOnce(deltalake::arrow::error::ArrowError) -> Self {
        move |source| StoreError::Arrow { table, source }
    }

    /// What trying again can do: the one place that classifies store
    /// failures.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Delta { source, .. } => delta_kind(source),
            StoreError::CommitFailed { kind, .. } => *kind,
            StoreError::Arrow { .. } | StoreError::QueryPanicked(_) | StoreError::Decode(_) => {
                ErrorKind::Bug
            }
            // Re-reading from the table's position is the remedy.
            StoreError::PositionMoved { .. } => ErrorKind::Conflict,
            StoreError::QueryTimeout(_)
            | StoreError::Busy { .. }
            | StoreError::ShuttingDown
            | StoreError::Locked { .. }
            | StoreError::Io { .. } => ErrorKind::Transient,
            // A lost decision race must stop the controller, and queries
            // keep their own HTTP mapping (see the metrics crate).
            StoreError::Fenced { .. }
            | StoreError::WriterClosed
            | StoreError::Location { .. }
            | StoreError::UnsafeObjectStore { .. }
            | StoreError::SchemaMismatch { .. }
            | StoreError::NotReadOnly(_)
            | StoreError::QueryMemory { .. }
            | StoreError::Query(_) => ErrorKind::Fatal,
        }
    }

    /// Whether the same operation may succeed if tried again (a lost commit
    /// race, transient I/O). Everything else is a bug or a misconfiguration.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// The table the failure happened on, when it was a table operation.
    pub fn table(&self) -> Option<&'static str> {
        match self {
            StoreError::Delta { table, .. }
            | StoreError::Arrow { table, .. }
            | StoreError::SchemaMismatch { table, .. }
            | StoreError::CommitFailed { table, .. } => Some(table),
            _ => None,
        }
    }

    /// The id under which the writer logged this failure's cause.
    pub fn error_id(&self) -> Option<&str> {
        match self {
            StoreError::CommitFailed { error_id, .. } => Some(error_id),
            _ => None,
        }
    }
}

/// deltalake's errors by what a retry can do. A commit race is a conflict;
/// storage I/O is transient unless the store refused us for good; whatever
/// says the data or the log we wrote is malformed is our bug.
fn delta_kind(e: &DeltaTableError) -> ErrorKind {
    use DeltaTableError as D;
    match e {
        D::VersionAlreadyExists(_) => ErrorKind::Conflict,
        D::Transaction { source } => transaction_kind(source),
        D::ObjectStore { source } => object_store_kind(source),
        D::Io { .. } => ErrorKind::Transient,
        D::Arrow { .. }
        | D::Parquet { .. }
        | D::SchemaMismatch { .. }
        | D::InvalidData { .. }
        | D::InvalidStatsJson { .. }
        | D::SerializeLogJson { .. }
        | D::CommitValidation { .. }
        | D::Generic(_)
        | D::GenericError { .. } => ErrorKind::Bug,
        _ => ErrorKind::Fatal,
    }
}

fn transaction_kind(e: &TransactionError) -> ErrorKind {
    use CommitConflictError as C;
    match e {
        TransactionError::VersionAlreadyExists(_) | TransactionError::MaxCommitAttempts(_) => {
            ErrorKind::Conflict
        }
        TransactionError::CommitConflict(conflict) => match conflict {
            C::ConcurrentAppend
            | C::ConcurrentDeleteRead
            | C::ConcurrentDeleteDelete
            | C::MetadataChanged
            | C::ConcurrentTransaction => ErrorKind::Conflict,
            C::Predicate { .. } => ErrorKind::Bug,
            _ => ErrorKind::Fatal,
        },
        TransactionError::ObjectStore { source } => object_store_kind(source),
        TransactionError::LogStoreError { .. } => ErrorKind::Transient,
        TransactionError::SerializeLogJson { .. } => ErrorKind::Bug,
        _ => ErrorKind::Fatal,
    }
}

fn object_store_kind(e: &ObjectStoreError) -> ErrorKind {
    use ObjectStoreError as O;
    match e {
        // Conditional puts: another writer created the object first.
        O::AlreadyExists { .. } | O::Precondition { .. } => ErrorKind::Conflict,
        O::PermissionDenied { .. }
        | O::Unauthenticated { .. }
        | O::UnknownConfigurationKey { .. }
        | O::NotSupported { .. }
        | O::NotImplemented { .. } => ErrorKind::Fatal,
        O::InvalidPath { .. } => ErrorKind::Bug,
        _ => ErrorKind::Transient,
    }
}

impl StoreError {
    /// Whether a query did not get the time, slot or memory it needed: the
    /// data was never looked at (a rollout evaluation records this as
    /// `starved`, never as a pass).
    pub fn is_starved(&self) -> bool {
        matches!(
            self,
            StoreError::QueryTimeout(_) | StoreError::Busy { .. } | StoreError::QueryMemory { .. }
        )
    }
}

/// A result whose error is a [`StoreError`] unless said otherwise.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(source: DeltaTableError) -> StoreError {
        StoreError::Delta { table: "t", source }
    }

    fn io_error() -> std::io::Error {
        std::io::Error::other("disk")
    }

    #[test]
    fn every_failure_has_the_kind_a_retry_can_use() {
        use ErrorKind::*;
        let store = |source| DeltaTableError::ObjectStore { source };
        let conflict = |c| DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(c),
        };
        let cases: Vec<(StoreError, ErrorKind)> = vec![
            (delta(DeltaTableError::VersionAlreadyExists(3)), Conflict),
            (
                delta(conflict(CommitConflictError::ConcurrentAppend)),
                Conflict,
            ),
            (
                delta(conflict(CommitConflictError::ConcurrentTransaction)),
                Conflict,
            ),
            (
                delta(DeltaTableError::Transaction {
                    source: TransactionError::MaxCommitAttempts(15),
                }),
                Conflict,
            ),
            (
                delta(conflict(CommitConflictError::ProtocolChanged("x".into()))),
                Fatal,
            ),
            (
                delta(DeltaTableError::Transaction {
                    source: TransactionError::DeltaTableAppendOnly,
                }),
                Fatal,
            ),
            (
                delta(store(ObjectStoreError::Generic {
                    store: "s3",
                    source: Box::new(io_error()),
                })),
                Transient,
            ),
            (
                delta(store(ObjectStoreError::Precondition {
                    path: "p".into(),
                    source: Box::new(io_error()),
                })),
                Conflict,
            ),
            (
                delta(store(ObjectStoreError::PermissionDenied {
                    path: "p".into(),
                    source: Box::new(io_error()),
                })),
                Fatal,
            ),
            (delta(DeltaTableError::Io { source: io_error() }), Transient),
            (
                delta(DeltaTableError::SchemaMismatch { msg: "x".into() }),
                Bug,
            ),
            (delta(DeltaTableError::Generic("x".into())), Bug),
            (
                delta(DeltaTableError::Parquet {
                    source: deltalake::parquet::errors::ParquetError::General("x".into()),
                }),
                Bug,
            ),
            (delta(DeltaTableError::NotATable("x".into())), Fatal),
            (delta(DeltaTableError::NotInitialized), Fatal),
            (
                StoreError::Arrow {
                    table: "t",
                    source: deltalake::arrow::error::ArrowError::ComputeError("x".into()),
                },
                Bug,
            ),
            (StoreError::QueryPanicked("x".into()), Bug),
            (
                StoreError::QueryTimeout(std::time::Duration::from_secs(1)),
                Transient,
            ),
            (StoreError::ShuttingDown, Transient),
            (
                StoreError::Io {
                    path: "p".into(),
                    source: io_error(),
                },
                Transient,
            ),
            (StoreError::WriterClosed, Fatal),
            (
                StoreError::PositionMoved {
                    app_id: "a".into(),
                    expected: Some(1),
                    found: Some(2),
                },
                Conflict,
            ),
            (
                StoreError::Fenced {
                    app_id: "a".into(),
                    expected: 2,
                    found: Some(2),
                },
                Fatal,
            ),
        ];
        for (error, kind) in &cases {
            assert_eq!(error.kind(), *kind, "{error}");
            assert_eq!(error.is_retryable(), kind.is_retryable(), "{error}");
        }
        for kind in ErrorKind::ALL {
            let failed = StoreError::CommitFailed {
                table: "auth_events",
                kind,
                error_id: "abc".into(),
                message: "m".into(),
            };
            assert_eq!(failed.kind(), kind);
            assert_eq!(failed.error_id(), Some("abc"));
            assert_eq!(failed.table(), Some("auth_events"));
            assert!(failed.to_string().contains(kind.as_str()));
        }
    }

    #[test]
    fn error_ids_are_short_and_distinct() {
        let (a, b) = (new_error_id(), new_error_id());
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
