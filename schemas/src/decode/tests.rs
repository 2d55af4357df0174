//! Decoding and validation, case by case.

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

#[test]
fn v2_adds_hints_and_the_signal_event_and_v1_stays_as_it_was() {
    let opts = DecodeOptions::default();
    let mut started = base();
    started["event_type"] = json!("auth.started");
    started["data"] = json!({"method": "passkey", "hints": ["hybrid", "security-key"]});

    // v1: `hints` is not part of the contract, so it is an unknown field.
    let v1 = decode_value(&started, now(), &opts).expect("v1");
    assert_eq!(v1.schema_version, 1);
    assert!(matches!(&v1.payload, Payload::AuthStarted { hints, .. } if hints.is_empty()));
    assert!(v1.extra.contains_key("/data/hints"), "{:?}", v1.extra);

    started["schema_version"] = json!(2);
    let v2 = decode_value(&started, now(), &opts).expect("v2");
    assert_eq!(v2.schema_version, 2);
    assert!(v2.extra.is_empty());
    assert!(matches!(&v2.payload, Payload::AuthStarted { hints, .. }
        if *hints == [Hint::Hybrid, Hint::SecurityKey]));

    let mut signaled = base();
    signaled["event_type"] = json!("credential.signaled");
    signaled["data"] = json!({"signal": "all_accepted_credentials"});
    let err = decode_value(&signaled, now(), &opts).expect_err("not in v1");
    assert_eq!(err.pointer, "/event_type");
    assert!(err.message.contains("schema_version 2"), "{err}");
    signaled["schema_version"] = json!(2);
    let ev = decode_value(&signaled, now(), &opts).expect("v2");
    assert_eq!(
        ev.payload,
        Payload::CredentialSignaled {
            signal: Signal::AllAcceptedCredentials
        }
    );

    signaled["schema_version"] = json!(3);
    let err = decode_value(&signaled, now(), &opts).expect_err("unknown version");
    assert_eq!(err.pointer, "/schema_version");
    assert!(err.message.contains("[1, 2]"), "{err}");
}
