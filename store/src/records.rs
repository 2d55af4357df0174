//! What the store accepts: events whose identifiers are already pseudonymized,
//! and rejections with a redacted payload.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyshift_schemas::AuthEvent;

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Http,
    Kafka {
        /// Shared: every record of a batch names the same topic.
        topic: Arc<str>,
        partition: i32,
        offset: i64,
    },
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Kafka { .. } => "kafka",
        }
    }
}

/// An accepted event ready to be stored.
///
/// Built only by ingest's pseudonymizer: `event.user_id`, `event.device_id`
/// and `event.session_id` are `None` here and the keyed hashes sit beside.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub event: AuthEvent,
    pub user_key: Option<String>,
    pub device_key: Option<String>,
    pub session_key: Option<String>,
    pub received_at: DateTime<Utc>,
    pub source: Source,
}

/// An input that was refused.
#[derive(Debug, Clone)]
pub struct RejectedRecord {
    pub received_at: DateTime<Utc>,
    pub source: Source,
    pub rp_id: Option<String>,
    pub event_id: Option<String>,
    pub error: String,
    /// JSON pointer of the violation, when the input was JSON.
    pub error_pointer: Option<String>,
    /// The payload with identifiers replaced by their keyed hashes, cut to the
    /// configured maximum.
    pub raw: String,
    pub raw_truncated: bool,
    /// Size of the original payload in bytes.
    pub raw_size: i64,
}
