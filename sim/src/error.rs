//! The simulator's error type. Nothing here is retryable: a scenario that
//! does not parse or validate stays wrong until someone edits it.

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The name is neither a shipped scenario nor a path, or a `base` names
    /// no shipped scenario.
    #[error("no scenario {name:?}; shipped: {known}")]
    UnknownScenario {
        /// The name asked for.
        name: String,
        /// The shipped scenarios' names, comma-separated.
        known: String,
    },
    /// The scenario file could not be read.
    #[error("reading scenario {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The scenario, or one of its bases, is not TOML or does not have the
    /// scenario's keys and types.
    #[error("scenario {name}: {source}")]
    Parse {
        /// The scenario (or base) name, or the file's path.
        name: String,
        /// What the TOML parser said.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The scenario parsed but breaks the rules (a rate outside 0..1, an
    /// unknown channel, bases nested more than 4 deep, …).
    #[error("scenario {name} is invalid:\n  - {}", errors.join("\n  - "))]
    Invalid {
        /// The scenario's name or path.
        name: String,
        /// Every problem found, one sentence each.
        errors: Vec<String>,
    },
}

/// A result whose error is a [`SimError`] unless said otherwise.
pub type Result<T, E = SimError> = std::result::Result<T, E>;
