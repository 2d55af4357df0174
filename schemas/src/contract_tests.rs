//! The published JSON Schema and the Rust decoder must agree on every example.

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::Value;

use crate::{AUTH_EVENT_V1_SCHEMA, DecodeOptions, decode_event};

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

fn schema_verdict(validator: &jsonschema::Validator, bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => validator.is_valid(&v),
        Err(_) => false,
    }
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(AUTH_EVENT_V1_SCHEMA).expect("schema is JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
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
    let schema: Value = serde_json::from_str(AUTH_EVENT_V1_SCHEMA).expect("schema is JSON");
    let types: Vec<&str> = schema["properties"]["event_type"]["enum"]
        .as_array()
        .expect("enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types, crate::EventType::ALL);
    let methods: Vec<&str> = schema["$defs"]["method"]["enum"]
        .as_array()
        .expect("enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(methods, crate::Method::ALL);
}
