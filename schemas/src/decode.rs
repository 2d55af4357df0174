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
    if version != u64::from(crate::SCHEMA_VERSION) {
        return Err(ValidationError::new(
            "/schema_version",
            format!("unsupported schema_version {version}; this build accepts 1"),
        ));
    }
    let event_id = root.req_str("event_id", 64)?.to_owned();
    let event_type = root.req_enum("event_type", EventType::parse, EventType::ALL)?;
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
    let payload = decode_payload(event_type, &mut data, &mut extra, opts)?;
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
        schema_version: crate::SCHEMA_VERSION,
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
    let transports = match c.take("transports") {
        None => Vec::new(),
        Some(Doc::Array(items)) => {
            if items.len() > Transport::ALL.len() {
                return Err(c.err("transports", "at most 6 transports"));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let ptr = format!("{}/transports/{i}", c.ptr.render());
                let t = item
                    .as_str()
                    .and_then(Transport::parse)
                    .ok_or_else(|| ValidationError::new(&ptr, one_of(Transport::ALL)))?;
                if out.contains(&t) {
                    return Err(ValidationError::new(ptr, "transports must be unique"));
                }
                out.push(t);
            }
            out
        }
        Some(_) => return Err(c.err("transports", "must be an array of strings")),
    };
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

fn one_of(all: &[&str]) -> String {
    format!("must be one of: {}", all.join(", "))
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Where an object sits in the document: its keys from the root, rendered
/// as a JSON pointer only when an error needs one.
#[derive(Clone, Copy)]
struct Ptr {
    keys: [&'static str; 2],
    depth: usize,
}

impl Ptr {
    const ROOT: Ptr = Ptr {
        keys: [""; 2],
        depth: 0,
    };

    /// The pointer of member `key` of this object. The contract nests
    /// objects two deep (`/data/credential`), no further.
    fn child(self, key: &'static str) -> Ptr {
        let mut keys = self.keys;
        if let Some(slot) = keys.get_mut(self.depth) {
            *slot = key;
        }
        Ptr {
            keys,
            depth: (self.depth + 1).min(keys.len()),
        }
    }

    fn render(&self) -> String {
        self.keys[..self.depth]
            .iter()
            .map(|k| format!("/{}", escape(k)))
            .collect()
    }
}

/// Objects with more members than this are refused rather than tracked.
const MAX_MEMBERS: usize = 128;

/// A JSON object being consumed field by field; whatever is left at
/// [`Obj::finish`] is an unknown field.
struct Obj<'d, 'a> {
    members: &'d [(std::borrow::Cow<'a, str>, Doc<'a>)],
    ptr: Ptr,
    /// Bit `i` set: member `i` was consumed.
    seen: u128,
}

impl<'d, 'a> Obj<'d, 'a> {
    fn new(members: &'d [(std::borrow::Cow<'a, str>, Doc<'a>)], ptr: Ptr) -> VResult<Self> {
        if members.len() > MAX_MEMBERS {
            return Err(ValidationError::new(
                ptr.render(),
                format!(
                    "has {} members, at most {MAX_MEMBERS} allowed",
                    members.len()
                ),
            ));
        }
        Ok(Self {
            members,
            ptr,
            seen: 0,
        })
    }

    fn err(&self, key: &str, msg: impl Into<String>) -> ValidationError {
        ValidationError::new(format!("{}/{}", self.ptr.render(), escape(key)), msg)
    }

    /// The member `key` (the last one if repeated, as JSON parsers do).
    fn take(&mut self, key: &'static str) -> Option<&'d Doc<'a>> {
        let i = self.members.iter().rposition(|(k, _)| k == key)?;
        self.seen |= 1 << i;
        Some(&self.members[i].1)
    }

    fn opt_str(&mut self, key: &'static str, max: usize) -> VResult<Option<&'d str>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::String(s)) => {
                if s.is_empty() {
                    return Err(self.err(key, "must not be empty"));
                }
                // Bytes bound characters from above: count only when needed.
                if s.len() > max {
                    let n = s.chars().count();
                    if n > max {
                        return Err(self.err(
                            key,
                            format!("is {n} characters long, at most {max} allowed"),
                        ));
                    }
                }
                Ok(Some(s.as_ref()))
            }
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    fn req_str(&mut self, key: &'static str, max: usize) -> VResult<&'d str> {
        self.opt_str(key, max)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    fn opt_bool(&mut self, key: &'static str) -> VResult<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(key, "must be a boolean")),
        }
    }

    fn req_bool(&mut self, key: &'static str) -> VResult<bool> {
        self.opt_bool(key)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    /// JSON Schema counts `1.0` as an integer; so does this.
    fn opt_uint(&mut self, key: &'static str, min: u64, max: u64) -> VResult<Option<u64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::Number(n)) => {
                let v = n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                        .map(|f| f as u64)
                });
                match v {
                    Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                    _ => Err(self.err(key, format!("must be an integer in {min}..={max}"))),
                }
            }
            Some(_) => Err(self.err(key, format!("must be an integer in {min}..={max}"))),
        }
    }

    fn req_uint(&mut self, key: &'static str, min: u64, max: u64) -> VResult<u64> {
        self.opt_uint(key, min, max)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    fn opt_number(&mut self, key: &'static str, min: f64, max: f64) -> VResult<Option<f64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::Number(n)) => match n.as_f64() {
                Some(v) if v >= min && v <= max => Ok(Some(v)),
                _ => Err(self.err(key, format!("must be a number in {min}..={max}"))),
            },
            Some(_) => Err(self.err(key, format!("must be a number in {min}..={max}"))),
        }
    }

    fn opt_enum<T>(
        &mut self,
        key: &'static str,
        parse: fn(&str) -> Option<T>,
        all: &[&str],
    ) -> VResult<Option<T>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::String(s)) => parse(s).map(Some).ok_or_else(|| {
                self.err(
                    key,
                    format!("`{}` is not allowed; {}", truncate(s), one_of(all)),
                )
            }),
            Some(_) => Err(self.err(key, one_of(all))),
        }
    }

    fn req_enum<T>(
        &mut self,
        key: &'static str,
        parse: fn(&str) -> Option<T>,
        all: &[&str],
    ) -> VResult<T> {
        self.opt_enum(key, parse, all)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    fn opt_obj(&mut self, key: &'static str) -> VResult<Option<Obj<'d, 'a>>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::Object(m)) => Obj::new(m, self.ptr.child(key)).map(Some),
            Some(_) => Err(self.err(key, "must be an object")),
        }
    }

    fn req_obj(&mut self, key: &'static str) -> VResult<Obj<'d, 'a>> {
        self.opt_obj(key)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    fn req_credential(
        &mut self,
        key: &'static str,
        extra: &mut Map<String, Value>,
        opts: &DecodeOptions,
    ) -> VResult<Credential> {
        let mut c = self.req_obj(key)?;
        decode_credential(&mut c, extra, opts)
    }

    fn req_error(
        &mut self,
        key: &'static str,
        extra: &mut Map<String, Value>,
        opts: &DecodeOptions,
    ) -> VResult<ErrorInfo> {
        let mut e = self.req_obj(key)?;
        let info = ErrorInfo {
            name: e.req_str("name", 64)?.to_owned(),
            message: e.opt_str("message", 512)?.map(str::to_owned),
        };
        e.finish(extra, opts)?;
        Ok(info)
    }

    /// Moves every field not consumed so far into `extra`, or rejects the
    /// first one, as the options say.
    fn finish(&self, extra: &mut Map<String, Value>, opts: &DecodeOptions) -> VResult<()> {
        if self.seen.count_ones() as usize == self.members.len() {
            return Ok(());
        }
        for (i, (k, v)) in self.members.iter().enumerate() {
            // Consumed, or a repeated key whose last occurrence counts.
            if self.seen & (1 << i) != 0 || self.members[i + 1..].iter().any(|(k2, _)| k2 == k) {
                continue;
            }
            let ptr = format!("{}/{}", self.ptr.render(), escape(k));
            match opts.unknown_fields {
                UnknownFields::Reject => {
                    return Err(ValidationError::new(ptr, "unknown field"));
                }
                UnknownFields::Keep => {
                    extra.insert(ptr, v.to_value());
                }
            }
        }
        Ok(())
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn base() -> Value {
        json!({
            "schema_version": 1,
            "event_id": "e1",
            "event_type": "auth.succeeded",
            "occurred_at": "2026-11-26T11:00:00.123456789+01:00",
            "rp_id": "example.com",
            "user_id": "u1",
            "data": {"method": "passkey"}
        })
    }

    #[test]
    fn decodes_minimal_event_and_truncates_to_microseconds() {
        let ev = decode_value(&base(), now(), &DecodeOptions::default()).expect("valid");
        assert_eq!(ev.event_type, EventType::AuthSucceeded);
        assert_eq!(ev.occurred_at.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(
            ev.occurred_at.to_rfc3339(),
            "2026-11-26T10:00:00.123456+00:00"
        );
    }

    #[test]
    fn unknown_fields_are_kept_with_pointers_or_rejected() {
        let mut v = base();
        v["data"]["x/y"] = json!(1);
        v["colour"] = json!("red");
        let ev = decode_value(&v, now(), &DecodeOptions::default()).expect("kept");
        assert_eq!(ev.extra.get("/data/x~1y"), Some(&json!(1)));
        assert_eq!(ev.extra.get("/colour"), Some(&json!("red")));
        let strict = DecodeOptions {
            unknown_fields: UnknownFields::Reject,
            ..DecodeOptions::default()
        };
        let err = decode_value(&v, now(), &strict).expect_err("rejected");
        assert_eq!(err.message, "unknown field");
    }

    #[test]
    fn bs_without_be_is_rejected_with_its_pointer() {
        let mut v = base();
        v["data"]["credential"] = json!({"backup_eligible": false, "backup_state": true});
        let err = decode_value(&v, now(), &DecodeOptions::default()).expect_err("invalid");
        assert_eq!(err.pointer, "/data/credential/backup_state");
    }

    #[test]
    fn future_timestamps_are_rejected_past_the_allowance() {
        let mut v = base();
        v["occurred_at"] = json!("2026-11-27T11:59:00Z");
        assert!(decode_value(&v, now(), &DecodeOptions::default()).is_ok());
        v["occurred_at"] = json!("2026-11-27T12:01:00Z");
        let err = decode_value(&v, now(), &DecodeOptions::default()).expect_err("future");
        assert_eq!(err.pointer, "/occurred_at");
    }

    #[test]
    fn user_id_is_optional_only_before_identification() {
        let mut v = base();
        v.as_object_mut().map(|m| m.remove("user_id"));
        let err = decode_value(&v, now(), &DecodeOptions::default()).expect_err("required");
        assert_eq!(err.pointer, "/user_id");
        v["event_type"] = json!("auth.started");
        assert!(decode_value(&v, now(), &DecodeOptions::default()).is_ok());
    }

    #[test]
    fn string_bounds_count_characters_not_bytes() {
        let mut v = base();
        v["user_id"] = json!("é".repeat(128));
        assert!(decode_value(&v, now(), &DecodeOptions::default()).is_ok());
        v["user_id"] = json!("é".repeat(129));
        assert!(decode_value(&v, now(), &DecodeOptions::default()).is_err());
    }

    #[test]
    fn integral_floats_count_as_integers() {
        let mut v = base();
        v["schema_version"] = json!(1.0);
        v["data"]["duration_ms"] = json!(1500.0);
        let ev = decode_value(&v, now(), &DecodeOptions::default()).expect("valid");
        assert!(matches!(
            ev.payload,
            Payload::AuthSucceeded {
                duration_ms: Some(1500),
                ..
            }
        ));
    }

    #[test]
    fn a_repeated_key_counts_once_with_its_last_value() {
        let text = br#"{"schema_version": 1, "event_id": "first", "event_id": "e1",
            "event_type": "auth.succeeded", "occurred_at": "2026-11-26T11:00:00Z",
            "rp_id": "example.com", "user_id": "u1", "data": {"method": "passkey"}}"#;
        let strict = DecodeOptions {
            unknown_fields: UnknownFields::Reject,
            ..DecodeOptions::default()
        };
        let ev = decode_event(text, now(), &strict).expect("valid");
        assert_eq!(ev.event_id, "e1");
        assert!(ev.extra.is_empty());
    }

    #[test]
    fn nested_pointers_and_member_limits() {
        let mut v = base();
        v["event_type"] = json!("enrollment.succeeded");
        v["data"] = json!({"credential": {"backup_eligible": true, "backup_state": true,
            "transports": ["usb", "usb"]}});
        let err = decode_value(&v, now(), &DecodeOptions::default()).expect_err("dup");
        assert_eq!(err.pointer, "/data/credential/transports/1");
        for i in 0..200 {
            v["data"][format!("k{i}")] = json!(i);
        }
        let err = decode_value(&v, now(), &DecodeOptions::default()).expect_err("too many");
        assert_eq!(err.pointer, "/data");
        assert!(err.message.contains("at most 128"), "{err}");
    }

    #[test]
    fn malformed_json_reports_its_position() {
        let err = decode_event(b"{\"a\": ", now(), &DecodeOptions::default()).expect_err("bad");
        assert!(matches!(err, SchemaError::Json { line: 1, .. }));
    }
}
