//! Arrow schemas of the two tables and the conversion of records into
//! record batches.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use keyshift_schemas::{Credential, Payload};

use crate::records::{EventRecord, RejectedRecord, Source};
use crate::{AUTH_EVENTS, REJECTED_EVENTS, Result, StoreError};

/// Partition column of `auth_events` (UTC date of `occurred_at`).
pub const EVENT_DATE: &str = "event_date";
/// Partition column of `rejected_events` (UTC date of `received_at`).
pub const RECEIVED_DATE: &str = "received_date";

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

pub fn auth_events_schema() -> SchemaRef {
    AUTH_EVENTS_SCHEMA.clone()
}

pub fn rejected_events_schema() -> SchemaRef {
    REJECTED_EVENTS_SCHEMA.clone()
}

fn days_since_epoch(t: &DateTime<Utc>) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).map_or(719_163, |d| d.num_days_from_ce());
    t.date_naive().num_days_from_ce() - epoch
}

#[derive(Default)]
struct SourceCols {
    kind: StringBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
}

impl SourceCols {
    fn push(&mut self, s: &Source) {
        self.kind.append_value(s.kind());
        match s {
            Source::Http => {
                self.topic.append_null();
                self.partition.append_null();
                self.offset.append_null();
            }
            Source::Kafka {
                topic,
                partition,
                offset,
            } => {
                self.topic.append_value(topic);
                self.partition.append_value(*partition);
                self.offset.append_value(*offset);
            }
        }
    }

    fn finish(mut self) -> [ArrayRef; 4] {
        [
            Arc::new(self.kind.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
        ]
    }
}

/// One builder per `auth_events` column, in schema order.
struct EventCols {
    event_id: StringBuilder,
    event_type: StringBuilder,
    schema_version: Int32Builder,
    occurred_at: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    event_date: Date32Builder,
    rp_id: StringBuilder,
    user_key: StringBuilder,
    device_key: StringBuilder,
    session_key: StringBuilder,
    attempt_id: StringBuilder,
    client: [StringBuilder; 6],
    rollout_id: StringBuilder,
    rollout_variant: StringBuilder,
    rollout_percent: Float64Builder,
    capability: [BooleanBuilder; 3],
    entry_point: StringBuilder,
    nudge_index: Int32Builder,
    method: StringBuilder,
    mediation: StringBuilder,
    cross_device: BooleanBuilder,
    duration_ms: Int64Builder,
    fallback: [StringBuilder; 3],
    recovery_channel: StringBuilder,
    error_name: StringBuilder,
    error_message: StringBuilder,
    cred_aaguid: StringBuilder,
    cred_attachment: StringBuilder,
    cred_transports: ListBuilder<StringBuilder>,
    cred_flags: [BooleanBuilder; 4],
    cred_attestation: StringBuilder,
    revoke_reason: StringBuilder,
    backup_from: BooleanBuilder,
    backup_to: BooleanBuilder,
    support_topic: StringBuilder,
    extra: StringBuilder,
    source: SourceCols,
}

impl EventCols {
    fn new(n: usize) -> Self {
        let s = || StringBuilder::with_capacity(n, n * 8);
        let b = || BooleanBuilder::with_capacity(n);
        Self {
            event_id: s(),
            event_type: s(),
            schema_version: Int32Builder::with_capacity(n),
            occurred_at: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            received_at: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            event_date: Date32Builder::with_capacity(n),
            rp_id: s(),
            user_key: s(),
            device_key: s(),
            session_key: s(),
            attempt_id: s(),
            client: std::array::from_fn(|_| s()),
            rollout_id: s(),
            rollout_variant: s(),
            rollout_percent: Float64Builder::with_capacity(n),
            capability: std::array::from_fn(|_| b()),
            entry_point: s(),
            nudge_index: Int32Builder::with_capacity(n),
            method: s(),
            mediation: s(),
            cross_device: b(),
            duration_ms: Int64Builder::with_capacity(n),
            fallback: std::array::from_fn(|_| s()),
            recovery_channel: s(),
            error_name: s(),
            error_message: s(),
            cred_aaguid: s(),
            cred_attachment: s(),
            cred_transports: ListBuilder::new(StringBuilder::new()).with_field(list_item()),
            cred_flags: std::array::from_fn(|_| b()),
            cred_attestation: s(),
            revoke_reason: s(),
            backup_from: b(),
            backup_to: b(),
            support_topic: s(),
            extra: s(),
            source: SourceCols::default(),
        }
    }

    fn push(&mut self, r: &EventRecord) {
        let e = &r.event;
        self.event_id.append_value(&e.event_id);
        self.event_type.append_value(e.event_type.as_str());
        self.schema_version
            .append_value(i32::from(e.schema_version));
        self.occurred_at
            .append_value(e.occurred_at.timestamp_micros());
        self.received_at
            .append_value(r.received_at.timestamp_micros());
        self.event_date
            .append_value(days_since_epoch(&e.occurred_at));
        self.rp_id.append_value(&e.rp_id);
        self.user_key.append_option(r.user_key.as_deref());
        self.device_key.append_option(r.device_key.as_deref());
        self.session_key.append_option(r.session_key.as_deref());
        self.attempt_id.append_option(e.attempt_id.as_deref());
        let c = &e.client;
        self.client[0].append_option(c.os.as_deref());
        self.client[1].append_option(c.os_version.as_deref());
        self.client[2].append_option(c.browser.as_deref());
        self.client[3].append_option(c.browser_version.as_deref());
        self.client[4].append_option(c.form_factor.map(|v| v.as_str()));
        self.client[5].append_option(c.app_type.map(|v| v.as_str()));
        let ro = e.rollout.as_ref();
        self.rollout_id
            .append_option(ro.map(|r| r.rollout_id.as_str()));
        self.rollout_variant
            .append_option(ro.map(|r| r.variant.as_str()));
        self.rollout_percent
            .append_option(ro.and_then(|r| r.percent));

        let mut capability = [None; 3];
        let mut entry_point = None;
        let mut nudge_index = None;
        let mut method = None;
        let mut mediation = None;
        let mut cross_device = None;
        let mut duration_ms = None;
        let mut fallback = [None; 3];
        let mut channel = None;
        let mut error = None;
        let mut credential: Option<&Credential> = None;
        let mut revoke_reason = None;
        let mut backup = [None; 2];
        let mut topic = None;
        match &e.payload {
            Payload::CapabilityProbed {
                webauthn_available,
                platform_authenticator_available,
                conditional_mediation_available,
            } => {
                capability = [
                    Some(*webauthn_available),
                    *platform_authenticator_available,
                    *conditional_mediation_available,
                ];
            }
            Payload::Enrollment {
                entry_point: ep,
                nudge_index: ni,
            } => {
                entry_point = Some(ep.as_str());
                nudge_index = ni.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
            }
            Payload::EnrollmentSucceeded { credential: c } => credential = Some(c),
            Payload::EnrollmentFailed { error: er } => error = Some(er),
            Payload::AuthStarted {
                method: m,
                mediation: md,
                cross_device: cd,
            } => {
                method = Some(m.as_str());
                mediation = md.map(|v| v.as_str());
                cross_device = *cd;
            }
            Payload::AuthSucceeded {
                method: m,
                credential: c,
                cross_device: cd,
                duration_ms: d,
            } => {
                method = Some(m.as_str());
                credential = c.as_ref();
                cross_device = *cd;
                duration_ms = d.map(|d| i64::try_from(d).unwrap_or(i64::MAX));
            }
            Payload::AuthFailed {
                method: m,
                error: er,
                cross_device: cd,
            } => {
                method = Some(m.as_str());
                error = Some(er);
                cross_device = *cd;
            }
            Payload::AuthFallback {
                from_method,
                to_method,
                reason,
            } => {
                fallback = [
                    Some(from_method.as_str()),
                    Some(to_method.as_str()),
                    Some(reason.as_str()),
                ];
            }
            Payload::Recovery { channel: ch } => channel = Some(ch.as_str()),
            Payload::CredentialRevoked { reason } => revoke_reason = Some(reason.as_str()),
            Payload::BackupStateChanged { from, to } => backup = [Some(*from), Some(*to)],
            Payload::SupportContacted { topic: t } => topic = Some(t.as_str()),
        }
        for (col, v) in self.capability.iter_mut().zip(capability) {
            col.append_option(v);
        }
        self.entry_point.append_option(entry_point);
        self.nudge_index.append_option(nudge_index);
        self.method.append_option(method);
        self.mediation.append_option(mediation);
        self.cross_device.append_option(cross_device);
        self.duration_ms.append_option(duration_ms);
        for (col, v) in self.fallback.iter_mut().zip(fallback) {
            col.append_option(v);
        }
        self.recovery_channel.append_option(channel);
        self.error_name
            .append_option(error.map(|e| e.name.as_str()));
        self.error_message
            .append_option(error.and_then(|e| e.message.as_deref()));
        match credential {
            None => {
                self.cred_aaguid.append_null();
                self.cred_attachment.append_null();
                self.cred_transports.append_null();
                for col in &mut self.cred_flags {
                    col.append_null();
                }
                self.cred_attestation.append_null();
            }
            Some(c) => {
                self.cred_aaguid.append_option(c.aaguid.as_deref());
                self.cred_attachment
                    .append_option(c.authenticator_attachment.map(|a| a.as_str()));
                for t in &c.transports {
                    self.cred_transports.values().append_value(t.as_str());
                }
                self.cred_transports.append(true);
                self.cred_flags[0].append_value(c.backup_eligible);
                self.cred_flags[1].append_value(c.backup_state);
                self.cred_flags[2].append_option(c.user_verified);
                self.cred_flags[3].append_option(c.discoverable);
                self.cred_attestation
                    .append_option(c.attestation_format.map(|a| a.as_str()));
            }
        }
        self.revoke_reason.append_option(revoke_reason);
        self.backup_from.append_option(backup[0]);
        self.backup_to.append_option(backup[1]);
        self.support_topic.append_option(topic);
        if e.extra.is_empty() {
            self.extra.append_null();
        } else {
            self.extra
                .append_value(serde_json::Value::Object(e.extra.clone()).to_string());
        }
        self.source.push(&r.source);
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.schema_version.finish()),
            Arc::new(self.occurred_at.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.event_date.finish()),
            Arc::new(self.rp_id.finish()),
            Arc::new(self.user_key.finish()),
            Arc::new(self.device_key.finish()),
            Arc::new(self.session_key.finish()),
            Arc::new(self.attempt_id.finish()),
        ];
        cols.extend(
            self.client
                .iter_mut()
                .map(|c| Arc::new(c.finish()) as ArrayRef),
        );
        cols.push(Arc::new(self.rollout_id.finish()));
        cols.push(Arc::new(self.rollout_variant.finish()));
        cols.push(Arc::new(self.rollout_percent.finish()));
        cols.extend(
            self.capability
                .iter_mut()
                .map(|c| Arc::new(c.finish()) as ArrayRef),
        );
        cols.push(Arc::new(self.entry_point.finish()));
        cols.push(Arc::new(self.nudge_index.finish()));
        cols.push(Arc::new(self.method.finish()));
        cols.push(Arc::new(self.mediation.finish()));
        cols.push(Arc::new(self.cross_device.finish()));
        cols.push(Arc::new(self.duration_ms.finish()));
        cols.extend(
            self.fallback
                .iter_mut()
                .map(|c| Arc::new(c.finish()) as ArrayRef),
        );
        cols.push(Arc::new(self.recovery_channel.finish()));
        cols.push(Arc::new(self.error_name.finish()));
        cols.push(Arc::new(self.error_message.finish()));
        cols.push(Arc::new(self.cred_aaguid.finish()));
        cols.push(Arc::new(self.cred_attachment.finish()));
        cols.push(Arc::new(self.cred_transports.finish()));
        cols.extend(
            self.cred_flags
                .iter_mut()
                .map(|c| Arc::new(c.finish()) as ArrayRef),
        );
        cols.push(Arc::new(self.cred_attestation.finish()));
        cols.push(Arc::new(self.revoke_reason.finish()));
        cols.push(Arc::new(self.backup_from.finish()));
        cols.push(Arc::new(self.backup_to.finish()));
        cols.push(Arc::new(self.support_topic.finish()));
        cols.push(Arc::new(self.extra.finish()));
        let [kind, topic, partition, offset] = self.source.finish();
        cols.extend([kind, topic, partition, offset]);
        cols
    }
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
}
