//! Errors raised while decoding an event against the contract.

use std::fmt;

/// One violation of the contract, located by a JSON pointer (RFC 6901) into the
/// offending document. `""` is the document itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Where the violation is: a JSON pointer, `""` for the whole document.
    pub pointer: String,
    /// What is wrong, for the producer to read.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

/// Every way decoding can fail.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The bytes are not a JSON document.
    #[error("malformed JSON at line {line} column {column}: {message}")]
    Json {
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
        /// serde_json's description of the error.
        message: String,
    },
    /// The document is JSON but breaks the contract.
    #[error("{0}")]
    Invalid(ValidationError),
}

impl SchemaError {
    /// The JSON pointer of the violation, when there is one.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            SchemaError::Json { .. } => None,
            SchemaError::Invalid(v) => Some(&v.pointer),
        }
    }
}

impl From<serde_json::Error> for SchemaError {
    fn from(e: serde_json::Error) -> Self {
        SchemaError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

impl From<ValidationError> for SchemaError {
    fn from(e: ValidationError) -> Self {
        SchemaError::Invalid(e)
    }
}

/// A result whose error is a [`SchemaError`] unless said otherwise.
pub type Result<T, E = SchemaError> = std::result::Result<T, E>;
