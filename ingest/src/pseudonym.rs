//! Keyed hashing of identifiers, and redaction of payloads kept for rejects.
//!
//! `user_key = HMAC-SHA256(secret, "user" ‖ 0 ‖ rp_id ‖ 0 ‖ user_id)`, hex,
//! first 128 bits. The rp_id is part of the input so the same user id at two
//! RPs gives unrelated keys; the kind is part of it so a user id and a device
//! id that happen to be equal do not collide. Raw identifiers are never
//! written anywhere: rejected payloads get the same treatment.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::{IngestError, Result};

/// Identifier fields that are hashed wherever they appear.
pub const PSEUDONYMIZED_FIELDS: [&str; 3] = ["user_id", "device_id", "session_id"];

/// Keyed hashing (HMAC-SHA256 under the pseudonymization secret) of identifiers, and
/// redaction of the payloads kept for rejects.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(..)")
    }
}

impl Pseudonymizer {
    /// A pseudonymizer keyed with the 32-byte `secret`.
    pub fn new(secret: &[u8; 32]) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { mac }
    }

    /// Loads the secret from `path`; an error when there is none. For tools
    /// that must derive the keys already stored (`keyshift erase`): a new
    /// secret would silently derive other keys and match nothing.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) => Err(IngestError::Secret {
                path: path.display().to_string(),
                reason: format!(
                    "{e} (the secret the stored events were keyed with is needed: is this the \
                     right data dir or ingest.secret_file?)"
                ),
            }),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self> {
        let err = |reason: String| IngestError::Secret {
            path: path.display().to_string(),
            reason,
        };
        let bytes = hex::decode(text.trim()).map_err(|e| err(format!("not hex: {e}")))?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| err("must hold exactly 32 bytes (64 hex characters)".to_owned()))?;
        Ok(Self::new(&secret))
    }

    /// Loads the secret from `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let err = |reason: String| IngestError::Secret {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| err(format!("no randomness: {e}")))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut f) => {
                        f.write_all(format!("{}\n", hex::encode(secret)).as_bytes())
                            .and_then(|()| f.sync_all())
                            .map_err(|e| err(e.to_string()))?;
                        tracing::info!(path = %path.display(), "created pseudonymization secret");
                        Ok(Self::new(&secret))
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(err(e.to_string())),
                }
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// The keyed hash of one identifier.
    pub fn key(&self, kind: &str, rp_id: &str, id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(rp_id.as_bytes());
        mac.update(&[0]);
        mac.update(id.as_bytes());
        let out = mac.finalize().into_bytes();
        // Three keys an event: `hex::encode` builds its string a char at a
        // time; encoding into a buffer does not.
        let mut digits = [0u8; 32];
        match hex::encode_to_slice(&out[..16], &mut digits) {
            Ok(()) => String::from_utf8_lossy(&digits).into_owned(),
            // 16 bytes always fill 32 digits.
            Err(_) => hex::encode(&out[..16]),
        }
    }

    /// A copy of a payload that is safe to store: identifier values replaced
    /// by `"hmac:<key>"`, cut to `max_bytes`. Works on JSON and, best effort,
    /// on text that does not parse. Returns the text and whether it was cut.
    pub fn redact(&self, raw: &[u8], max_bytes: usize) -> (String, bool) {
        let text = match serde_json::from_slice::<Value>(raw) {
            Ok(mut v) => {
                let rp = v
                    .get("rp_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.redact_value(&mut v, &rp);
                v.to_string()
            }
            Err(_) => self.redact_text(&String::from_utf8_lossy(raw)),
        };
        truncate(text, max_bytes)
    }

    fn redact_value(&self, v: &mut Value, rp: &str) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if PSEUDONYMIZED_FIELDS.contains(&k.as_str())
                        && let Value::String(s) = child
                    {
                        *s = format!("hmac:{}", self.key(kind_of(k), rp, s));
                        continue;
                    }
                    self.redact_value(child, rp);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|c| self.redact_value(c, rp)),
            _ => {}
        }
    }

    /// Replaces the string value after every `"user_id"`-like key in text that
    /// is not valid JSON. An unterminated value is replaced to the end.
    fn redact_text(&self, text: &str) -> String {
        let rp = find_string_value(text, "rp_id").unwrap_or_default();
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'outer: while !rest.is_empty() {
            let mut next: Option<(usize, &str)> = None;
            for field in PSEUDONYMIZED_FIELDS {
                let pat = format!("\"{field}\"");
                if let Some(i) = rest.find(&pat)
                    && next.is_none_or(|(j, _)| i < j)
                {
                    next = Some((i, field));
                }
            }
            let Some((i, field)) = next else {
                out.push_str(rest);
                break;
            };
            let key_end = i + field.len() + 2;
            out.push_str(&rest[..key_end]);
            rest = &rest[key_end..];
            // Expect optional spaces, a colon, optional spaces, a quote.
            let after = rest.trim_start();
            let Some(after) = after.strip_prefix(':') else {
                continue;
            };
            let after = after.trim_start();
            let Some(value) = after.strip_prefix('"') else {
                continue;
            };
            let prefix_len = rest.len() - value.len();
            out.push_str(&rest[..prefix_len]);
            let mut escaped = false;
            for (j, ch) in value.char_indices() {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == '"' {
                    out.push_str(&format!(
                        "hmac:{}",
                        self.key(kind_of(field), &rp, &value[..j])
                    ));
                    rest = &value[j..];
                    continue 'outer;
                }
            }
            out.push_str(&format!("hmac:{}", self.key(kind_of(field), &rp, value)));
            rest = "";
        }
        out
    }
}

fn kind_of(field: &str) -> &'static str {
    match field {
        "user_id" => "user",
        "device_id" => "device",
        _ => "session",
    }
}

fn find_string_value(text: &str, field: &str) -> Option<String> {
    let pat = format!("\"{field}\"");
    let i = text.find(&pat)?;
    let rest = text[i + pat.len()..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let value = rest.strip_prefix('"')?;
    let end = value.find('"')?;
    Some(value[..end].to_owned())
}

fn truncate(mut s: String, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    (s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Pseudonymizer {
        Pseudonymizer::new(&[7u8; 32])
    }

    #[test]
    fn keys_are_the_first_16_bytes_of_the_hmac_in_lowercase_hex() {
        // Stored keys must not change across versions: joins depend on it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[7u8; 32]).expect("key");
        mac.update(b"user\0a.example\0alice");
        let want = hex::encode(&mac.finalize().into_bytes()[..16]);
        assert_eq!(p().key("user", "a.example", "alice"), want);
    }

    #[test]
    fn keys_depend_on_secret_rp_and_kind() {
        let a = p().key("user", "a.example", "alice");
        assert_eq!(a.len(), 32);
        assert_eq!(a, p().key("user", "a.example", "alice"));
        assert_ne!(a, p().key("user", "b.example", "alice"));
        assert_ne!(a, p().key("device", "a.example", "alice"));
        assert_ne!(
            a,
            Pseudonymizer::new(&[8u8; 32]).key("user", "a.example", "alice")
        );
    }

    #[test]
    fn json_payloads_are_redacted_at_any_depth() {
        let raw = br#"{"rp_id":"a.example","user_id":"alice-secret","x":{"device_id":"dev-secret"},"n":[{"session_id":"s-secret"}]}"#;
        let (out, cut) = p().redact(raw, 1 << 16);
        assert!(!cut);
        for secret in ["alice-secret", "dev-secret", "s-secret"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains(&p().key("user", "a.example", "alice-secret")));
    }

    #[test]
    fn malformed_payloads_are_redacted_too() {
        let raw = br#"{"rp_id": "a.example", "user_id" : "alice-secret", "device_id":"dev-sec"#;
        let (out, _) = p().redact(raw, 1 << 16);
        assert!(!out.contains("alice-secret"), "{out}");
        assert!(!out.contains("dev-sec"), "{out}");
        assert!(
            out.contains(&p().key("user", "a.example", "alice-secret")),
            "{out}"
        );
    }

    #[test]
    fn long_payloads_are_cut_on_a_char_boundary() {
        let raw = format!("\"{}\"", "é".repeat(100));
        let (out, cut) = p().redact(raw.as_bytes(), 51);
        assert!(cut);
        assert!(out.len() <= 51);
    }

    #[test]
    fn the_secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        let a = Pseudonymizer::load_or_create(&path)
            .expect("create")
            .key("user", "r", "u");
        let b = Pseudonymizer::load_or_create(&path)
            .expect("load")
            .key("user", "r", "u");
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
