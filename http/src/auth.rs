//! Bearer-token authentication.
//!
//! Admin tokens may do everything. RP tokens are bound to one `rp_id`: they
//! may post events for that RP only (checked per event by the collector) and
//! may not read the store. With no token configured at all the server is
//! open, and [`check_listen_address`] keeps it on loopback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ApiError;

/// Minimum token length, so that tokens cannot be guessed.
const MIN_TOKEN_CHARS: usize = 16;

/// The `[auth]` settings: who may call the API. With no token at all the
/// server is open and must listen on loopback.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Tokens with full access.
    pub admin_tokens: Vec<String>,
    /// Tokens that may only post events for their `rp_id`.
    pub rp_tokens: Vec<RpToken>,
}

/// A token bound to one relying party.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpToken {
    /// The bearer token (at least 16 characters).
    pub token: String,
    /// The relying party it may post events for.
    pub rp_id: String,
}

impl AuthConfig {
    /// Whether no token is configured, so that anyone may call.
    pub fn is_open(&self) -> bool {
        self.admin_tokens.is_empty() && self.rp_tokens.is_empty()
    }

    /// Every problem with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, t) in self.admin_tokens.iter().enumerate() {
            if t.chars().count() < MIN_TOKEN_CHARS {
                errors.push(format!(
                    "auth.admin_tokens[{i}] is shorter than {MIN_TOKEN_CHARS} characters"
                ));
            }
        }
        for (i, t) in self.rp_tokens.iter().enumerate() {
            if t.token.chars().count() < MIN_TOKEN_CHARS {
                errors.push(format!(
                    "auth.rp_tokens[{i}].token is shorter than {MIN_TOKEN_CHARS} characters"
                ));
            }
            if t.rp_id.is_empty() {
                errors.push(format!("auth.rp_tokens[{i}].rp_id is empty"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for t in self
            .admin_tokens
            .iter()
            .chain(self.rp_tokens.iter().map(|t| &t.token))
        {
            if !seen.insert(t) {
                errors.push("auth: the same token is configured twice".to_owned());
                break;
            }
        }
        errors
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No tokens are configured (loopback only): everything is allowed.
    Open,
    /// Holds an admin token: may do everything.
    Admin,
    /// May post events for this rp_id only.
    Rp(String),
}

impl Principal {
    /// Whether this caller may submit an event for `rp_id`.
    pub fn may_write(&self, rp_id: &str) -> bool {
        match self {
            Principal::Open | Principal::Admin => true,
            Principal::Rp(own) => own == rp_id,
        }
    }

    /// Reading the store (SQL, KPIs) needs admin rights or an open server.
    pub fn require_reader(&self) -> Result<(), ApiError> {
        match self {
            Principal::Open | Principal::Admin => Ok(()),
            Principal::Rp(_) => Err(ApiError::Forbidden(
                "an RP token may post events only; reading needs an admin token".to_owned(),
            )),
        }
    }

    /// A label for logs and metrics (bounded: never the token or rp_id).
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Open => "open",
            Principal::Admin => "admin",
            Principal::Rp(_) => "rp",
        }
    }
}

/// Resolves bearer tokens to principals. Tokens are kept only as SHA-256
/// digests.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: HashMap<[u8; 32], Principal>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    /// An authenticator for the tokens of `cfg`, which it keeps as digests only.
    pub fn new(cfg: &AuthConfig) -> Self {
        let mut tokens = HashMap::new();
        for t in &cfg.admin_tokens {
            tokens.insert(digest(t), Principal::Admin);
        }
        for t in &cfg.rp_tokens {
            tokens.insert(digest(&t.token), Principal::Rp(t.rp_id.clone()));
        }
        Self { tokens }
    }

    /// Whether no token is configured: every request is [`Principal::Open`].
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The principal for an `Authorization` header value (or its absence).
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        if self.is_open() {
            return Ok(Principal::Open);
        }
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        self.tokens
            .get(&digest(token))
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<Authenticator>::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        auth.authenticate(header)
    }
}

/// Refuses a non-loopback listen address when no token is configured.
pub fn check_listen_address(addr: SocketAddr, auth: &AuthConfig) -> Result<(), String> {
    if auth.is_open() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr} without authentication: configure auth.admin_tokens / \
             auth.rp_tokens, or listen on a loopback address such as 127.0.0.1"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AuthConfig {
        AuthConfig {
            admin_tokens: vec!["admin-token-0123456789".into()],
            rp_tokens: vec![RpToken {
                token: "rp-token-a-0123456789".into(),
                rp_id: "a.example".into(),
            }],
        }
    }

    #[test]
    fn tokens_resolve_to_their_principal() {
        let auth = Authenticator::new(&cfg());
        assert_eq!(
            auth.authenticate(Some("Bearer admin-token-0123456789"))
                .ok(),
            Some(Principal::Admin)
        );
        let rp = auth
            .authenticate(Some("Bearer rp-token-a-0123456789"))
            .expect("rp");
        assert!(rp.may_write("a.example"));
        assert!(!rp.may_write("b.example"));
        assert!(rp.require_reader().is_err());
        assert!(auth.authenticate(Some("Bearer nope")).is_err());
        assert!(auth.authenticate(None).is_err());
    }

    #[test]
    fn open_server_must_stay_on_loopback() {
        let open = AuthConfig::default();
        assert!(check_listen_address("127.0.0.1:8080".parse().expect("addr"), &open).is_ok());
        assert!(check_listen_address("[::1]:8080".parse().expect("addr"), &open).is_ok());
        assert!(check_listen_address("0.0.0.0:8080".parse().expect("addr"), &open).is_err());
        assert!(check_listen_address("0.0.0.0:8080".parse().expect("addr"), &cfg()).is_ok());
    }

    #[test]
    fn short_and_duplicate_tokens_are_reported() {
        let mut c = cfg();
        c.admin_tokens.push("short".into());
        c.admin_tokens.push("admin-token-0123456789".into());
        let errors = c.validate();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
