//! Decoding and validation: JSON bytes in, [`AuthEvent`] or a located error out.
//!
//! The decoder walks the parsed document by hand rather than through serde
//! derive so that every error carries the JSON pointer of the offending value
//! and unknown fields can be collected instead of dropped. It walks a [`Doc`],
//! which borrows from the input: an event costs the allocations of the fields
//! it keeps, not one per JSON token.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::{Map, Value};

use crate::json::Doc;

mod object;
use object::{Obj, Ptr};

use crate::error::{Result, SchemaError, ValidationError};
use crate::event::*;

/// What the decoder does with fields the contract does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Accept the event and keep the fields in [`AuthEvent::extra`] (default).
    #[default]
    Keep,
    /// Reject the event, naming the first unknown field.
    Reject,
}

/// Runtime rules the JSON Schema cannot express.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// How far in the future `occurred_at` may be (clock skew allowance).
    pub max_future: Duration,
    /// What to do with fields the contract does not define (default: keep them).
    pub unknown_fields: UnknownFields,
    /// Upper bound on the serialized size of kept unknown fields.
    pub max_extra_bytes: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_future: Duration::hours(24),
            unknown_fields: UnknownFields::Keep,
            max_extra_bytes: 4096,
        }
    }
}

/// Decodes one event from JSON bytes.
pub fn decode_event(bytes: &[u8], now: DateTime<Utc>, opts: &DecodeOptions) -> Result<AuthEvent> {
    let doc = Doc::parse(bytes)?;
    decode_doc(&doc, now, opts).map_err(SchemaError::Invalid)
}

/// Decodes one event from a `serde_json::Value` (tests and tools; ingest
/// decodes bytes).
pub fn decode_value(value: &Value, now: DateTime<Utc>, opts: &DecodeOptions) -> VResult<AuthEvent> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| ValidationError::new("", format!("cannot serialize: {e}")))?;
    let doc =
        Doc::parse(&bytes).map_err(|e| ValidationError::new("", format!("cannot parse: {e}")))?;
    decode_doc(&doc, now, opts)
}

type VResult<T> = std::result::Result<T, ValidationError>;

/// Decodes one event from an already parsed document.
pub fn decode_doc(doc: &Doc<'_>, now: DateTime<Utc>, opts: &DecodeOptions) -> VResult<AuthEvent> {
    let Doc::Object(members) = doc else {
        return Err(ValidationError::new("", "an event must be a JSON object"));
    };
    let mut extra = Map::new();
    let mut root = Obj::new(members, Ptr::ROOT)?;

    let version = root.req_uint("schema_version", 1, 255)?;
    let Some(version) = crate::SCHEMA_VERSIONS
        .into_iter()
        .find(|v| u64::from(*v) == version)
    else {
        return Err(ValidationError::new(
            "/schema_version",
            format!(
                "unsupported schema_version {version}; this build accepts {:?}",
                crate::SCHEMA_VERSIONS
            ),
        ));
    };
    let event_id = root.req_str("event_id", 64)?.to_owned();
    let event_type = root.req_enum("event_type", EventType::parse, EventType::ALL)?;
    if event_type.since() > version {
        return Err(ValidationError::new(
            "/event_type",
            format!(
                "{event_type} needs schema_version {} or later",
                event_type.since()
            ),
        ));
    }
    let occurred_at = parse_time(root.req_str("occurred_at", 64)?, now, opts)?;
    let rp_id = root.req_str("rp_id", 253)?.to_owned();
    let user_id = root.opt_str("user_id", 128)?.map(str::to_owned);
    if user_id.is_none()
        && !matches!(
            event_type,
            EventType::CapabilityProbed | EventType::AuthStarted
        )
    {
        return Err(ValidationError::new(
            "/user_id",
            format!("user_id is required for {event_type}"),
        ));
    }
    let device_id = root.opt_str("device_id", 128)?.map(str::to_owned);
    let session_id = root.opt_str("session_id", 128)?.map(str::to_owned);
    let attempt_id = root.opt_str("attempt_id", 128)?.map(str::to_owned);

    let client = match root.opt_obj("client")? {
        None => Client::default(),
        Some(mut c) => {
            let client = Client {
                os: c.opt_str("os", 64)?.map(str::to_owned),
                os_version: c.opt_str("os_version", 64)?.map(str::to_owned),
                browser: c.opt_str("browser", 64)?.map(str::to_owned),
                browser_version: c.opt_str("browser_version", 64)?.map(str::to_owned),
                form_factor: c.opt_enum("form_factor", FormFactor::parse, FormFactor::ALL)?,
                app_type: c.opt_enum("app_type", AppType::parse, AppType::ALL)?,
            };
            c.finish(&mut extra, opts)?;
            client
        }
    };

    let rollout = match root.opt_obj("rollout")? {
        None => None,
        Some(mut r) => {
            let tag = RolloutTag {
                rollout_id: r.req_str("rollout_id", 128)?.to_owned(),
                variant: r.req_enum("variant", Variant::parse, Variant::ALL)?,
                percent: r.opt_number("percent", 0.0, 100.0)?,
            };
            r.finish(&mut extra, opts)?;
            Some(tag)
        }
    };

    let mut data = root.req_obj("data")?;
    let payload = decode_payload(event_type, version, &mut data, &mut extra, opts)?;
    data.finish(&mut extra, opts)?;
    root.finish(&mut extra, opts)?;

    if !extra.is_empty() {
        let size = serde_json::to_vec(&extra)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > opts.max_extra_bytes {
            return Err(ValidationError::new(
                "",
                format!(
                    "unknown fields take {size} bytes, more than the {} allowed",
                    opts.max_extra_bytes
                ),
            ));
        }
    }

    Ok(AuthEvent {
        schema_version: version,
        event_id,
        event_type,
        occurred_at,
        rp_id,
        user_id,
        device_id,
        session_id,
        attempt_id,
        client,
        rollout,
        payload,
        extra,
    })
}

fn decode_payload(
    event_type: EventType,
    version: u8,
    data: &mut Obj<'_, '_>,
    extra: &mut Map<String, Value>,
    opts: &DecodeOptions,
) -> VResult<Payload> {
    use EventType as T;
    Ok(match event_type {
        T::CapabilityProbed => Payload::CapabilityProbed {
            webauthn_available: data.req_bool("webauthn_available")?,
            platform_authenticator_available: data.opt_bool("platform_authenticator_available")?,
            conditional_mediation_available: data.opt_bool("conditional_mediation_available")?,
        },
        T::EnrollmentOffered | T::EnrollmentSkipped | T::EnrollmentStarted => Payload::Enrollment {
            entry_point: data.req_str("entry_point", 64)?.to_owned(),
            nudge_index: data
                .opt_uint("nudge_index", 0, 10_000)?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        },
        T::EnrollmentSucceeded => Payload::EnrollmentSucceeded {
            credential: data.req_credential("credential", extra, opts)?,
        },
        T::EnrollmentFailed => Payload::EnrollmentFailed {
            error: data.req_error("error", extra, opts)?,
        },
        T::AuthStarted => Payload::AuthStarted {
            method: data.req_enum("method", Method::parse, Method::ALL)?,
            mediation: data.opt_enum("mediation", Mediation::parse, Mediation::ALL)?,
            cross_device: data.opt_bool("cross_device")?,
            // A v1 event's `hints` is not part of its contract: an unknown
            // field, kept or refused as configured.
            hints: if version >= 2 {
                data.opt_enum_set("hints", Hint::parse, Hint::ALL)?
            } else {
                Vec::new()
            },
        },
        T::AuthSucceeded => Payload::AuthSucceeded {
            method: data.req_enum("method", Method::parse, Method::ALL)?,
            credential: match data.opt_obj("credential")? {
                None => None,
                Some(mut c) => Some(decode_credential(&mut c, extra, opts)?),
            },
            cross_device: data.opt_bool("cross_device")?,
            duration_ms: data.opt_uint("duration_ms", 0, 86_400_000)?,
        },
        T::AuthFailed => Payload::AuthFailed {
            method: data.req_enum("method", Method::parse, Method::ALL)?,
            error: data.req_error("error", extra, opts)?,
            cross_device: data.opt_bool("cross_device")?,
        },
        T::AuthFallback => Payload::AuthFallback {
            from_method: data.req_enum("from_method", Method::parse, Method::ALL)?,
            to_method: data.req_enum("to_method", Method::parse, Method::ALL)?,
            reason: data.req_enum("reason", FallbackReason::parse, FallbackReason::ALL)?,
        },
        T::RecoveryStarted | T::RecoveryCompleted | T::RecoveryFailed => Payload::Recovery {
            channel: data.req_enum("channel", RecoveryChannel::parse, RecoveryChannel::ALL)?,
        },
        T::CredentialRevoked => Payload::CredentialRevoked {
            reason: data.req_str("reason", 64)?.to_owned(),
        },
        T::CredentialBackupStateChanged => Payload::BackupStateChanged {
            from: data.req_bool("from")?,
            to: data.req_bool("to")?,
        },
        T::SupportContacted => Payload::SupportContacted {
            topic: data.req_str("topic", 64)?.to_owned(),
        },
        T::CredentialSignaled => Payload::CredentialSignaled {
            signal: data.req_enum("signal", Signal::parse, Signal::ALL)?,
        },
    })
}

fn decode_credential(
    c: &mut Obj<'_, '_>,
    extra: &mut Map<String, Value>,
    opts: &DecodeOptions,
) -> VResult<Credential> {
    let aaguid = match c.opt_str("aaguid", 36)? {
        None => None,
        Some(s) => {
            let ok = s.len() == 36
                && s.char_indices().all(|(i, ch)| match i {
                    8 | 13 | 18 | 23 => ch == '-',
                    _ => ch.is_ascii_hexdigit(),
                });
            if !ok {
                return Err(c.err("aaguid", "must be a UUID (8-4-4-4-12 hex digits)"));
            }
            Some(s.to_ascii_lowercase())
        }
    };
    let authenticator_attachment = c.opt_enum(
        "authenticator_attachment",
        Attachment::parse,
        Attachment::ALL,
    )?;
    let transports = c.opt_enum_set("transports", Transport::parse, Transport::ALL)?;
    let backup_eligible = c.req_bool("backup_eligible")?;
    let backup_state = c.req_bool("backup_state")?;
    if backup_state && !backup_eligible {
        return Err(c.err(
            "backup_state",
            "backup_state is true while backup_eligible is false (BS=1 requires BE=1)",
        ));
    }
    let credential = Credential {
        aaguid,
        authenticator_attachment,
        transports,
        backup_eligible,
        backup_state,
        user_verified: c.opt_bool("user_verified")?,
        discoverable: c.opt_bool("discoverable")?,
        attestation_format: c.opt_enum(
            "attestation_format",
            AttestationFormat::parse,
            AttestationFormat::ALL,
        )?,
    };
    c.finish(extra, opts)?;
    Ok(credential)
}

fn parse_time(s: &str, now: DateTime<Utc>, opts: &DecodeOptions) -> VResult<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| {
            ValidationError::new(
                "/occurred_at",
                format!("must be an RFC 3339 date-time with offset ({e})"),
            )
        })?
        .with_timezone(&Utc)
        .trunc_subsecs(6);
    if t > now + opts.max_future {
        return Err(ValidationError::new(
            "/occurred_at",
            format!(
                "{s} is more than {}h in the future",
                opts.max_future.num_hours()
            ),
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests;
