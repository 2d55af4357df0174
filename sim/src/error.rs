//! The simulator's error type. Nothing here is retryable: a scenario that
//! does not parse or validate stays wrong until someone edits it.

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("no scenario {name:?}; shipped: {known}")]
    UnknownScenario { name: String, known: String },
    #[error("reading scenario {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario {name}: {source}")]
    Parse {
        name: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("scenario {name} is invalid:\n  - {}", errors.join("\n  - "))]
    Invalid { name: String, errors: Vec<String> },
}

pub type Result<T, E = SimError> = std::result::Result<T, E>;
