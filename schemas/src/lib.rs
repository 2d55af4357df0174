//! The auth-event contract, schema v1.
//!
//! This crate owns the published JSON Schema (`auth-event.v1.schema.json`), the
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

/// The only schema version this build understands.
pub const SCHEMA_VERSION: u8 = 1;

#[cfg(test)]
mod contract_tests;
