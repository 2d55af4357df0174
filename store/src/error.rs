//! The store's error type. [`StoreError::is_retryable`] is the one place that
//! decides whether a caller may try again.

use deltalake::DeltaTableError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("table {table}: {source}")]
    Delta {
        table: &'static str,
        #[source]
        source: DeltaTableError,
    },
    #[error("table {table}: building record batch: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("query exceeded its time limit of {0:?} (store.query_timeout) and was cancelled")]
    QueryTimeout(std::time::Duration),
    /// The query needed more memory than its lane may use.
    #[error(
        "query needs more memory than the limit of {limit_mib} MiB ({setting}) allows and was \
         stopped: {detail}"
    )]
    QueryMemory {
        limit_mib: usize,
        setting: &'static str,
        detail: String,
    },
    /// No query slot: too many queries running and waiting.
    #[error("too many queries ({reason}); retry after {}s", .retry_after.as_secs())]
    Busy {
        reason: String,
        retry_after: std::time::Duration,
    },
    #[error("keyshift is shutting down; the query was cancelled")]
    ShuttingDown,
    /// A query task panicked: a bug, never retried.
    #[error("query failed unexpectedly: {0}")]
    QueryPanicked(String),
    #[error("statement not allowed: {0}")]
    NotReadOnly(String),
    #[error("invalid table location {uri:?}: {reason}")]
    Location { uri: String, reason: String },
    #[error("io error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the writer has stopped")]
    WriterClosed,
    #[error("reading stored rows: {0}")]
    Decode(String),
    /// Another writer recorded this position first (a second controller).
    #[error("{app_id}: expected to record version {expected}, the table is at {found:?}")]
    Fenced {
        app_id: String,
        expected: i64,
        found: Option<i64>,
    },
    #[error("commit to {table} failed and was not applied: {message}")]
    CommitFailed {
        table: &'static str,
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

    /// Whether the same operation may succeed if tried again (transient I/O,
    /// a lost commit race). Everything else is a bug or a misconfiguration.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Delta { source, .. } => matches!(
                source,
                DeltaTableError::ObjectStore { .. }
                    | DeltaTableError::Io { .. }
                    | DeltaTableError::VersionAlreadyExists(_)
                    | DeltaTableError::Transaction { .. }
            ),
            StoreError::CommitFailed { .. }
            | StoreError::QueryTimeout(_)
            | StoreError::Busy { .. }
            | StoreError::ShuttingDown => true,
            StoreError::Io { .. } => true,
            _ => false,
        }
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

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
