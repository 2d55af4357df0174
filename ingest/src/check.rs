//! The rules an item is judged by, free of side effects: schema validation
//! and RP scoping. The pipeline and the Kafka-mode collector share them.

use chrono::{DateTime, Utc};
use keyshift_http::Principal;
use keyshift_schemas::{AuthEvent, DecodeOptions, Doc, decode_doc};

use crate::IngestConfig;

/// Why an item was refused, with the JSON pointer of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What is wrong, as told to the client and kept in `rejected_events`.
    pub error: String,
    /// JSON pointer of the offending value (`""` for the whole document);
    /// [`Checker::check`] always sets it.
    pub pointer: Option<String>,
}

/// Schema validation and RP scoping, free of side effects: the pipeline and
/// the Kafka-mode collector decide each item by the same rules.
#[derive(Debug, Clone)]
pub struct Checker {
    decode: DecodeOptions,
}

impl Checker {
    /// A checker that applies `cfg`'s `max_future` and `unknown_fields`.
    pub fn new(cfg: &IngestConfig) -> Self {
        Self {
            decode: DecodeOptions {
                max_future: chrono::Duration::from_std(cfg.max_future)
                    .unwrap_or(chrono::Duration::hours(24)),
                unknown_fields: cfg.unknown_fields,
                ..DecodeOptions::default()
            },
        }
    }

    /// The event, or why `principal` may not submit `doc` at `now`.
    pub fn check(
        &self,
        principal: &Principal,
        doc: &Doc<'_>,
        now: DateTime<Utc>,
    ) -> std::result::Result<AuthEvent, Refusal> {
        match decode_doc(doc, now, &self.decode) {
            Ok(ev) if principal.may_write(&ev.rp_id) => Ok(ev),
            Ok(ev) => Err(Refusal {
                error: format!("this token may not write events for rp_id {:?}", ev.rp_id),
                pointer: Some("/rp_id".to_owned()),
            }),
            Err(e) => Err(Refusal {
                error: e.to_string(),
                pointer: Some(e.pointer),
            }),
        }
    }
}
