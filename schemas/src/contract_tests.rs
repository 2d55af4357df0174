//! The published JSON Schemas and the Rust decoder must agree on every
//! example; each example is checked against the schema of its
//! `schema_version` (v1 when it has no valid one).

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::Value;

use crate::{AUTH_EVENT_V1_SCHEMA, AUTH_EVENT_V2_SCHEMA, DecodeOptions, decode_event};

fn examples(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    files
}

/// The JSON Schema's verdict on `bytes`, by the schema of its version.
fn schema_verdict(v: &Validators, bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => match value["schema_version"].as_u64() {
            Some(2) => v.v2.is_valid(&value),
            _ => v.v1.is_valid(&value),
        },
        Err(_) => false,
    }
}

struct Validators {
    v1: jsonschema::Validator,
    v2: jsonschema::Validator,
}

fn compile(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("schema is JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

fn validator() -> Validators {
    Validators {
        v1: compile(AUTH_EVENT_V1_SCHEMA),
        v2: compile(AUTH_EVENT_V2_SCHEMA),
    }
}

#[test]
fn valid_examples_pass_both_validators() {
    let v = validator();
    for path in examples("valid") {
        let bytes = std::fs::read(&path).expect("read example");
        assert!(
            schema_verdict(&v, &bytes),
            "JSON Schema rejects {}",
            path.display()
        );
        if let Err(e) = decode_event(&bytes, Utc::now(), &DecodeOptions::default()) {
            panic!("decoder rejects {}: {e}", path.display());
        }
    }
}

#[test]
fn invalid_examples_fail_both_validators() {
    let v = validator();
    for path in examples("invalid") {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let bytes = std::fs::read(&path).expect("read example");
        let decoded = decode_event(&bytes, Utc::now(), &DecodeOptions::default());
        assert!(decoded.is_err(), "decoder accepts {name}");
        let by_schema = schema_verdict(&v, &bytes);
        if name.starts_with("runtime-only.") {
            assert!(
                by_schema,
                "{name} is runtime-only but the JSON Schema rejects it"
            );
        } else {
            assert!(!by_schema, "JSON Schema accepts {name}");
        }
    }
}

#[test]
fn every_event_type_has_a_valid_example() {
    let mut seen = std::collections::BTreeSet::new();
    for path in examples("valid") {
        let bytes = std::fs::read(&path).expect("read example");
        let ev = decode_event(&bytes, Utc::now(), &DecodeOptions::default()).expect("valid");
        seen.insert(ev.event_type.as_str());
    }
    for t in crate::EventType::ALL {
        assert!(seen.contains(t), "no valid example for {t}");
    }
}

#[test]
fn schema_enums_match_rust_enums() {
    for (version, text) in [(1u8, AUTH_EVENT_V1_SCHEMA), (2, AUTH_EVENT_V2_SCHEMA)] {
        let schema: Value = serde_json::from_str(text).expect("schema is JSON");
        assert_eq!(schema["properties"]["schema_version"]["const"], version);
        let types: Vec<&str> = schema["properties"]["event_type"]["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let expected: Vec<&str> = crate::EventType::ALL
            .iter()
            .copied()
            .filter(|t| crate::EventType::parse(t).is_some_and(|t| t.since() <= version))
            .collect();
        assert_eq!(types, expected, "event types of v{version}");
        let methods: Vec<&str> = schema["$defs"]["method"]["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(methods, crate::Method::ALL);
    }
}

/// v2 is v1 plus additions only: every v1 rule holds in v2, so a producer
/// moving to v2 changes the version number and may then use what is new.
#[test]
fn v2_only_adds_to_v1() {
    let v1: Value = serde_json::from_str(AUTH_EVENT_V1_SCHEMA).expect("v1");
    let mut v2: Value = serde_json::from_str(AUTH_EVENT_V2_SCHEMA).expect("v2");
    // Undo the documented additions; what is left must be v1.
    v2["properties"]["event_type"]["enum"]
        .as_array_mut()
        .expect("enum")
        .retain(|t| t != "credential.signaled");
    let all_of = v2["allOf"].as_array_mut().expect("allOf");
    all_of.retain(|c| c["if"]["properties"]["event_type"]["const"] != "credential.signaled");
    for c in all_of.iter_mut() {
        if let Some(data) = c
            .pointer_mut("/then/properties/data/properties")
            .and_then(Value::as_object_mut)
        {
            data.remove("hints");
        }
    }
    for key in ["$id", "title", "description"] {
        v2[key] = v1[key].clone();
    }
    v2["properties"]["schema_version"] = v1["properties"]["schema_version"].clone();
    assert_eq!(v1, v2);
}

/// Every valid v1 example with its version raised is a valid v2 event.
#[test]
fn v1_events_are_valid_v2_events() {
    let v = validator();
    for path in examples("valid") {
        let mut value: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        if value["schema_version"] != 1 {
            continue;
        }
        value["schema_version"] = 2.into();
        let bytes = serde_json::to_vec(&value).expect("json");
        let name = path.display();
        assert!(v.v2.is_valid(&value), "v2 JSON Schema rejects {name} as v2");
        if let Err(e) = decode_event(&bytes, Utc::now(), &DecodeOptions::default()) {
            panic!("decoder rejects {name} as v2: {e}");
        }
    }
}
