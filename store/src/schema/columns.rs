//! Column builders: one Arrow builder per column, filled record by record
//! and finished in the order of the table's schema.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use keyshift_schemas::{Credential, Hint, Payload};

use super::{days_since_epoch, list_item};
use crate::records::{EventRecord, Source};

#[derive(Default)]
pub(super) struct SourceCols {
    kind: StringBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
}

impl SourceCols {
    pub(super) fn push(&mut self, s: &Source) {
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
            Source::Import { file, line } => {
                self.topic.append_value(file);
                self.partition.append_null();
                self.offset.append_value(*line);
            }
        }
    }

    pub(super) fn finish(mut self) -> [ArrayRef; 4] {
        [
            Arc::new(self.kind.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
        ]
    }
}

/// One builder per `auth_events` column, in schema order.
pub(super) struct EventCols {
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
    signal: StringBuilder,
    hints: ListBuilder<StringBuilder>,
}

impl EventCols {
    pub(super) fn new(n: usize) -> Self {
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
            signal: s(),
            hints: ListBuilder::new(StringBuilder::new()).with_field(list_item()),
        }
    }

    pub(super) fn push(&mut self, r: &EventRecord) {
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
        let mut signal = None;
        let mut hints: &[Hint] = &[];
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
                hints: h,
            } => {
                method = Some(m.as_str());
                mediation = md.map(|v| v.as_str());
                cross_device = *cd;
                hints = h;
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
            Payload::CredentialSignaled { signal: sg } => signal = Some(sg.as_str()),
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
        self.signal.append_option(signal);
        // Null, not an empty list, when no hints were sent (all of v1).
        if hints.is_empty() {
            self.hints.append_null();
        } else {
            for h in hints {
                self.hints.values().append_value(h.as_str());
            }
            self.hints.append(true);
        }
    }

    pub(super) fn finish(mut self) -> Vec<ArrayRef> {
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
        cols.push(Arc::new(self.signal.finish()));
        cols.push(Arc::new(self.hints.finish()));
        cols
    }
}
