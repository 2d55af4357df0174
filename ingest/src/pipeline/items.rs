//! What goes into the pipeline and what comes out of its CPU stage: input
//! items, a prepared request waiting for its commit, and the summary a
//! source reports.

use keyshift_http::Principal;
use keyshift_store::{EventRecord, RejectedRecord, Source};
use serde::Serialize;
use serde_json::Value;

use crate::dedup::DedupKey;

/// One input item as a source hands it over: the bytes of one event (an
/// NDJSON line, an element of a JSON array body, a Kafka message). The
/// pipeline parses it; bytes that are not JSON become a rejected item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input(pub Vec<u8>);

impl From<&Value> for Input {
    fn from(value: &Value) -> Self {
        Input(serde_json::to_vec(value).unwrap_or_default())
    }
}

/// One refused item in a response.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rejection {
    /// Position of the item in the request (0-based; blank NDJSON lines are
    /// not counted).
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The item's `event_id`, cut to 256 characters; `None` when the item was not JSON or
    /// had no string `event_id`.
    pub event_id: Option<String>,
    /// What is wrong with the item.
    pub error: String,
}

/// What became of a request.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IngestSummary {
    /// Events stored: valid, and new within the dedup window.
    pub accepted: usize,
    /// Valid events dropped as repeats of an `event_id` (same `rp_id`) stored within the
    /// dedup window or earlier in the same request.
    pub duplicates: usize,
    /// One entry per refused item.
    pub rejected: Vec<Rejection>,
}

/// A request after the CPU work, ready to commit.
#[derive(Debug)]
pub struct Prepared {
    pub(super) records: Vec<EventRecord>,
    pub(super) rejected: Vec<RejectedRecord>,
    /// The dedup key of each record, in the same order.
    pub(super) reserved: Vec<DedupKey>,
    /// Records whose key the dedup index was unsure of (indices).
    pub(super) unsure: Vec<usize>,
    pub(super) summary: IngestSummary,
}

impl Prepared {
    /// Keeps only the rejections `keep` accepts (a stream source drops the
    /// dead letters it already recorded before a crash).
    pub fn retain_rejected(&mut self, keep: impl Fn(&RejectedRecord) -> bool) {
        self.rejected.retain(keep);
    }

    /// The records the commit will write to `rejected_events`.
    pub fn rejected(&self) -> &[RejectedRecord] {
        &self.rejected
    }

    /// Joins parts prepared in parallel into one commit. Rejection indices
    /// stay those of each part (stream sources do not report them).
    pub fn merge(parts: Vec<Prepared>) -> Prepared {
        let mut all = Prepared {
            records: Vec::new(),
            rejected: Vec::new(),
            reserved: Vec::new(),
            unsure: Vec::new(),
            summary: IngestSummary::default(),
        };
        for p in parts {
            let offset = all.records.len();
            all.unsure.extend(p.unsure.iter().map(|i| i + offset));
            all.records.extend(p.records);
            all.rejected.extend(p.rejected);
            all.reserved.extend(p.reserved);
            all.summary.accepted += p.summary.accepted;
            all.summary.duplicates += p.summary.duplicates;
            all.summary.rejected.extend(p.summary.rejected);
        }
        all
    }
}

/// An input refused before parsing (a line too long to take, say).
#[derive(Debug)]
pub struct Unparsed<'a> {
    /// Its position, as in [`Rejection::index`].
    pub index: usize,
    /// What is kept of it (cut again to `max_rejected_payload_bytes`).
    pub head: &'a [u8],
    /// Its full length in bytes.
    pub size: usize,
    /// Why it is refused.
    pub error: String,
    /// Where it came from.
    pub source: &'a Source,
}

/// One item for [`Pipeline::prepare_items`]: the input, where it came from
/// and who may vouch for it.
#[derive(Debug)]
pub struct Item {
    /// The item's bytes.
    pub input: Input,
    /// Where it came from: HTTP, or a Kafka topic, partition and offset.
    pub source: Source,
    /// Who submitted it; decides which `rp_id`s it may write.
    pub principal: Principal,
}
