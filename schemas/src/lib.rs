//! The auth-event contract, schemas v1 and v2.
//!
//! This crate owns the published JSON Schemas (`auth-event.v1.schema.json`,
//! `auth-event.v2.schema.json`), the
//! Rust types a decoded event is turned into, and the decoder that enforces the
//! contract. The decoder and the JSON Schema must agree on every example under
//! `schemas/examples`; a test holds them to it. Rules the JSON Schema cannot
//! express (a timestamp too far in the future) are enforced here only, and the
//! examples that exercise them say so.

mod decode;
mod error;
mod event;
mod json;

pub use decode::{DecodeOptions, UnknownFields, decode_doc, decode_event, decode_value};
pub use error::{Result, SchemaError, ValidationError};
pub use event::*;
pub use json::Doc;

/// The published JSON Schema for auth events, version 1.
pub const AUTH_EVENT_V1_SCHEMA: &str = include_str!("../auth-event.v1.schema.json");

/// The published JSON Schema for auth events, version 2: version 1 plus the
/// `credential.signaled` event type and `data.hints` on `auth.started`.
pub const AUTH_EVENT_V2_SCHEMA: &str = include_str!("../auth-event.v2.schema.json");

/// The schema versions this build accepts; producers may send any of them,
/// and events of every version are stored side by side.
pub const SCHEMA_VERSIONS: [u8; 2] = [1, 2];

#[cfg(test)]
mod contract_tests;
