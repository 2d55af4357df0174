//! What the store accepts: events whose identifiers are already pseudonymized,
//! and rejections with a redacted payload.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyshift_schemas::AuthEvent;

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Posted to the HTTP collector.
    Http,
    /// Consumed from a Kafka topic.
    Kafka {
        /// Shared: every record of a batch names the same topic.
        topic: Arc<str>,
        /// The message's partition.
        partition: i32,
        /// The message's offset in its partition.
        offset: i64,
    },
    /// Read from a file by `keyshift import`.
    Import {
        /// The file's content id (hex, see `keyshift import`), or `stdin`;
        /// shared by every record of the file.
        file: Arc<str>,
        /// The line's number in the file, from 1.
        line: i64,
    },
}

impl Source {
    /// The source's name as stored and labelled: `http`, `kafka` or
    /// `import`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Kafka { .. } => "kafka",
            Source::Import { .. } => "import",
        }
    }
}

/// An accepted event ready to be stored.
///
/// Built only by ingest's pseudonymizer: `event.user_id`, `event.device_id`
/// and `event.session_id` are `None` here and the keyed hashes sit beside.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// The validated event, its raw identifiers removed.
    pub event: AuthEvent,
    /// Keyed hash of the event's `user_id` (32 hex digits); `None` when the
    /// event had none.
    pub user_key: Option<String>,
    /// Keyed hash of the event's `device_id`; `None` when the event had none.
    pub device_key: Option<String>,
    /// Keyed hash of the event's `session_id`; `None` when the event had none.
    pub session_key: Option<String>,
    /// When keyshift received the event.
    pub received_at: DateTime<Utc>,
    /// Where the event came from.
    pub source: Source,
}

/// An input that was refused.
#[derive(Debug, Clone)]
pub struct RejectedRecord {
    /// When keyshift received the input.
    pub received_at: DateTime<Utc>,
    /// Where the input came from.
    pub source: Source,
    /// The input's `rp_id` (at most 256 characters); `None` when it had no
    /// readable one (not JSON, missing or not a string).
    pub rp_id: Option<String>,
    /// The input's `event_id` (at most 256 characters); `None` when it had
    /// no readable one.
    pub event_id: Option<String>,
    /// Why the input was refused.
    pub error: String,
    /// JSON pointer of the violation, when the input was JSON.
    pub error_pointer: Option<String>,
    /// The payload with identifiers replaced by their keyed hashes, cut to the
    /// configured maximum.
    pub raw: String,
    /// Whether `raw` was cut to the maximum.
    pub raw_truncated: bool,
    /// Size of the original payload in bytes.
    pub raw_size: i64,
}
