//! Arrow schemas of the two tables and the conversion of records into
//! record batches.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;

mod columns;
use columns::{EventCols, SourceCols};

use crate::records::{EventRecord, RejectedRecord};
use crate::{AUTH_EVENTS, REJECTED_EVENTS, Result, StoreError};

/// Partition column of `auth_events` (UTC date of `occurred_at`).
pub const EVENT_DATE: &str = "event_date";
/// Partition column of `rejected_events` (UTC date of `received_at`).
pub const RECEIVED_DATE: &str = "received_date";

/// The `auth_events` columns whose minimum and maximum the Delta log keeps
/// per file (`delta.dataSkippingStatsColumns`): those queries filter on.
/// Keyed identifiers (`user_key`, `device_key`, `session_key`), free text
/// (`error_message`, `extra`) and client-chosen ids other than `event_id`
/// are left out: a file's statistics stay in the log after its rows are
/// erased, until the log entries expire.
pub const AUTH_EVENTS_STATS: &[&str] = &[
    "event_id",
    "event_type",
    "schema_version",
    "occurred_at",
    "received_at",
    "rp_id",
    "client_os",
    "client_browser",
    "client_form_factor",
    "client_app_type",
    "rollout_id",
    "rollout_variant",
    "method",
    "error_name",
    "source",
    "source_offset",
];

/// The `rejected_events` columns with statistics in the log: never the
/// refused input (`raw`) nor what was echoed from it (`event_id`, `error`).
pub const REJECTED_EVENTS_STATS: &[&str] = &[
    "received_at",
    "source",
    "source_topic",
    "source_partition",
    "source_offset",
    "rp_id",
];

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn list_item() -> Arc<Field> {
    // Delta's Arrow mapping names list items "element".
    Arc::new(Field::new("element", DataType::Utf8, true))
}

static AUTH_EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let b = |n: &str| Field::new(n, DataType::Boolean, true);
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("schema_version", DataType::Int32, false),
        Field::new("occurred_at", ts(), false),
        Field::new("received_at", ts(), false),
        Field::new(EVENT_DATE, DataType::Date32, false),
        Field::new("rp_id", DataType::Utf8, false),
        s("user_key"),
        s("device_key"),
        s("session_key"),
        s("attempt_id"),
        s("client_os"),
        s("client_os_version"),
        s("client_browser"),
        s("client_browser_version"),
        s("client_form_factor"),
        s("client_app_type"),
        s("rollout_id"),
        s("rollout_variant"),
        Field::new("rollout_percent", DataType::Float64, true),
        b("webauthn_available"),
        b("platform_authenticator_available"),
        b("conditional_mediation_available"),
        s("entry_point"),
        Field::new("nudge_index", DataType::Int32, true),
        s("method"),
        s("mediation"),
        b("cross_device"),
        Field::new("duration_ms", DataType::Int64, true),
        s("fallback_from"),
        s("fallback_to"),
        s("fallback_reason"),
        s("recovery_channel"),
        s("error_name"),
        s("error_message"),
        s("credential_aaguid"),
        s("credential_attachment"),
        Field::new("credential_transports", DataType::List(list_item()), true),
        b("credential_backup_eligible"),
        b("credential_backup_state"),
        b("credential_user_verified"),
        b("credential_discoverable"),
        s("credential_attestation_format"),
        s("revoke_reason"),
        b("backup_state_from"),
        b("backup_state_to"),
        s("support_topic"),
        s("extra"),
        Field::new("source", DataType::Utf8, false),
        s("source_topic"),
        Field::new("source_partition", DataType::Int32, true),
        Field::new("source_offset", DataType::Int64, true),
        // Schema v2. New columns go last and nullable: tables written
        // before gain them on open (see `migrate`), their rows read null.
        s("signal"),
        Field::new("hints", DataType::List(list_item()), true),
    ]))
});

static REJECTED_EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("received_at", ts(), false),
        Field::new(RECEIVED_DATE, DataType::Date32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("source_topic", DataType::Utf8, true),
        Field::new("source_partition", DataType::Int32, true),
        Field::new("source_offset", DataType::Int64, true),
        Field::new("rp_id", DataType::Utf8, true),
        Field::new("event_id", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, false),
        Field::new("error_pointer", DataType::Utf8, true),
        Field::new("raw", DataType::Utf8, false),
        Field::new("raw_truncated", DataType::Boolean, false),
        Field::new("raw_size", DataType::Int64, false),
    ]))
});

/// The Arrow schema of `auth_events`.
pub fn auth_events_schema() -> SchemaRef {
    AUTH_EVENTS_SCHEMA.clone()
}

/// The Arrow schema of `rejected_events`.
pub fn rejected_events_schema() -> SchemaRef {
    REJECTED_EVENTS_SCHEMA.clone()
}

fn days_since_epoch(t: &DateTime<Utc>) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).map_or(719_163, |d| d.num_days_from_ce());
    t.date_naive().num_days_from_ce() - epoch
}

/// Converts accepted events into one `auth_events` batch.
pub fn events_to_batch(records: &[EventRecord]) -> Result<RecordBatch> {
    let mut cols = EventCols::new(records.len());
    for r in records {
        cols.push(r);
    }
    RecordBatch::try_new(auth_events_schema(), cols.finish())
        .map_err(StoreError::arrow(AUTH_EVENTS))
}

/// Converts rejections into one `rejected_events` batch.
pub fn rejected_to_batch(records: &[RejectedRecord]) -> Result<RecordBatch> {
    let n = records.len();
    let mut received_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut received_date = Date32Builder::with_capacity(n);
    let mut source = SourceCols::default();
    let mut rp_id = StringBuilder::new();
    let mut event_id = StringBuilder::new();
    let mut error = StringBuilder::new();
    let mut pointer = StringBuilder::new();
    let mut raw = StringBuilder::new();
    let mut truncated = BooleanBuilder::with_capacity(n);
    let mut size = Int64Builder::with_capacity(n);
    for r in records {
        received_at.append_value(r.received_at.timestamp_micros());
        received_date.append_value(days_since_epoch(&r.received_at));
        source.push(&r.source);
        rp_id.append_option(r.rp_id.as_deref());
        event_id.append_option(r.event_id.as_deref());
        error.append_value(&r.error);
        pointer.append_option(r.error_pointer.as_deref());
        raw.append_value(&r.raw);
        truncated.append_value(r.raw_truncated);
        size.append_value(r.raw_size);
    }
    let [kind, topic, partition, offset] = source.finish();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(received_at.finish()),
        Arc::new(received_date.finish()),
        kind,
        topic,
        partition,
        offset,
        Arc::new(rp_id.finish()),
        Arc::new(event_id.finish()),
        Arc::new(error.finish()),
        Arc::new(pointer.finish()),
        Arc::new(raw.finish()),
        Arc::new(truncated.finish()),
        Arc::new(size.finish()),
    ];
    RecordBatch::try_new(rejected_events_schema(), cols).map_err(StoreError::arrow(REJECTED_EVENTS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_date_is_the_utc_day() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T00:30:00+01:00")
            .expect("time")
            .with_timezone(&Utc);
        // 2026-01-01 UTC is day 20454 since the epoch.
        assert_eq!(days_since_epoch(&t), 20_454);
    }

    #[test]
    fn statistics_columns_exist_and_name_no_identifier() {
        for (schema, columns) in [
            (auth_events_schema(), AUTH_EVENTS_STATS),
            (rejected_events_schema(), REJECTED_EVENTS_STATS),
        ] {
            for c in columns {
                assert!(schema.field_with_name(c).is_ok(), "no column {c}");
                assert!(
                    !c.ends_with("_key") && !["raw", "extra", "error_message", "error"].contains(c),
                    "{c} must not have statistics in the log"
                );
            }
        }
    }
}
