//! Walking a parsed JSON object field by field: every value is read
//! through a typed accessor that knows the value's JSON pointer, and
//! whatever is left at the end is an unknown field.

use serde_json::{Map, Value};

use super::{DecodeOptions, UnknownFields, VResult, decode_credential};
use crate::error::ValidationError;
use crate::event::*;
use crate::json::Doc;

pub(super) fn one_of(all: &[&str]) -> String {
    format!("must be one of: {}", all.join(", "))
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
pub(super) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Where an object sits in the document: its keys from the root, rendered
/// as a JSON pointer only when an error needs one.
#[derive(Clone, Copy)]
pub(super) struct Ptr {
    keys: [&'static str; 2],
    depth: usize,
}

impl Ptr {
    pub(super) const ROOT: Ptr = Ptr {
        keys: [""; 2],
        depth: 0,
    };

    /// The pointer of member `key` of this object. The contract nests
    /// objects two deep (`/data/credential`), no further.
    pub(super) fn child(self, key: &'static str) -> Ptr {
        let mut keys = self.keys;
        if let Some(slot) = keys.get_mut(self.depth) {
            *slot = key;
        }
        Ptr {
            keys,
            depth: (self.depth + 1).min(keys.len()),
        }
    }

    pub(super) fn render(&self) -> String {
        self.keys[..self.depth]
            .iter()
            .map(|k| format!("/{}", escape(k)))
            .collect()
    }
}

/// Objects with more members than this are refused rather than tracked.
const MAX_MEMBERS: usize = 128;

/// A JSON object being consumed field by field; whatever is left at
/// [`Obj::finish`] is an unknown field.
pub(super) struct Obj<'d, 'a> {
    members: &'d [(std::borrow::Cow<'a, str>, Doc<'a>)],
    pub(super) ptr: Ptr,
    /// Bit `i` set: member `i` was consumed.
    seen: u128,
}

impl<'d, 'a> Obj<'d, 'a> {
    pub(super) fn new(
        members: &'d [(std::borrow::Cow<'a, str>, Doc<'a>)],
        ptr: Ptr,
    ) -> VResult<Self> {
        if members.len() > MAX_MEMBERS {
            return Err(ValidationError::new(
                ptr.render(),
                format!(
                    "has {} members, at most {MAX_MEMBERS} allowed",
                    members.len()
                ),
            ));
        }
        Ok(Self {
            members,
            ptr,
            seen: 0,
        })
    }

    pub(super) fn err(&self, key: &str, msg: impl Into<String>) -> ValidationError {
        ValidationError::new(format!("{}/{}", self.ptr.render(), escape(key)), msg)
    }

    /// The member `key` (the last one if repeated, as JSON parsers do).
    pub(super) fn take(&mut self, key: &'static str) -> Option<&'d Doc<'a>> {
        let i = self.members.iter().rposition(|(k, _)| k == key)?;
        self.seen |= 1 << i;
        Some(&self.members[i].1)
    }

    pub(super) fn opt_str(&mut self, key: &'static str, max: usize) -> VResult<Option<&'d str>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::String(s)) => {
                if s.is_empty() {
                    return Err(self.err(key, "must not be empty"));
                }
                // Bytes bound characters from above: count only when needed.
                if s.len() > max {
                    let n = s.chars().count();
                    if n > max {
                        return Err(self.err(
                            key,
                            format!("is {n} characters long, at most {max} allowed"),
                        ));
                    }
                }
                Ok(Some(s.as_ref()))
            }
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    pub(super) fn req_str(&mut self, key: &'static str, max: usize) -> VResult<&'d str> {
        self.opt_str(key, max)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    pub(super) fn opt_bool(&mut self, key: &'static str) -> VResult<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(key, "must be a boolean")),
        }
    }

    pub(super) fn req_bool(&mut self, key: &'static str) -> VResult<bool> {
        self.opt_bool(key)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    /// JSON Schema counts `1.0` as an integer; so does this.
    pub(super) fn opt_uint(
        &mut self,
        key: &'static str,
        min: u64,
        max: u64,
    ) -> VResult<Option<u64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::Number(n)) => {
                let v = n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                        .map(|f| f as u64)
                });
                match v {
                    Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                    _ => Err(self.err(key, format!("must be an integer in {min}..={max}"))),
                }
            }
            Some(_) => Err(self.err(key, format!("must be an integer in {min}..={max}"))),
        }
    }

    pub(super) fn req_uint(&mut self, key: &'static str, min: u64, max: u64) -> VResult<u64> {
        self.opt_uint(key, min, max)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    pub(super) fn opt_number(
        &mut self,
        key: &'static str,
        min: f64,
        max: f64,
    ) -> VResult<Option<f64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::Number(n)) => match n.as_f64() {
                Some(v) if v >= min && v <= max => Ok(Some(v)),
                _ => Err(self.err(key, format!("must be a number in {min}..={max}"))),
            },
            Some(_) => Err(self.err(key, format!("must be a number in {min}..={max}"))),
        }
    }

    pub(super) fn opt_enum<T>(
        &mut self,
        key: &'static str,
        parse: fn(&str) -> Option<T>,
        all: &[&str],
    ) -> VResult<Option<T>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::String(s)) => parse(s).map(Some).ok_or_else(|| {
                self.err(
                    key,
                    format!("`{}` is not allowed; {}", truncate(s), one_of(all)),
                )
            }),
            Some(_) => Err(self.err(key, one_of(all))),
        }
    }

    /// An optional array of unique enum values (at most one of each);
    /// empty when absent.
    pub(super) fn opt_enum_set<T: PartialEq>(
        &mut self,
        key: &'static str,
        parse: fn(&str) -> Option<T>,
        all: &[&str],
    ) -> VResult<Vec<T>> {
        let items = match self.take(key) {
            None => return Ok(Vec::new()),
            Some(Doc::Array(items)) => items,
            Some(_) => return Err(self.err(key, "must be an array of strings")),
        };
        if items.len() > all.len() {
            return Err(self.err(key, format!("at most {} {key}", all.len())));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let ptr = format!("{}/{key}/{i}", self.ptr.render());
            let v = item
                .as_str()
                .and_then(parse)
                .ok_or_else(|| ValidationError::new(&ptr, one_of(all)))?;
            if out.contains(&v) {
                return Err(ValidationError::new(ptr, format!("{key} must be unique")));
            }
            out.push(v);
        }
        Ok(out)
    }

    pub(super) fn req_enum<T>(
        &mut self,
        key: &'static str,
        parse: fn(&str) -> Option<T>,
        all: &[&str],
    ) -> VResult<T> {
        self.opt_enum(key, parse, all)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    pub(super) fn opt_obj(&mut self, key: &'static str) -> VResult<Option<Obj<'d, 'a>>> {
        match self.take(key) {
            None => Ok(None),
            Some(Doc::Object(m)) => Obj::new(m, self.ptr.child(key)).map(Some),
            Some(_) => Err(self.err(key, "must be an object")),
        }
    }

    pub(super) fn req_obj(&mut self, key: &'static str) -> VResult<Obj<'d, 'a>> {
        self.opt_obj(key)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    pub(super) fn req_credential(
        &mut self,
        key: &'static str,
        extra: &mut Map<String, Value>,
        opts: &DecodeOptions,
    ) -> VResult<Credential> {
        let mut c = self.req_obj(key)?;
        decode_credential(&mut c, extra, opts)
    }

    pub(super) fn req_error(
        &mut self,
        key: &'static str,
        extra: &mut Map<String, Value>,
        opts: &DecodeOptions,
    ) -> VResult<ErrorInfo> {
        let mut e = self.req_obj(key)?;
        let info = ErrorInfo {
            name: e.req_str("name", 64)?.to_owned(),
            message: e.opt_str("message", 512)?.map(str::to_owned),
        };
        e.finish(extra, opts)?;
        Ok(info)
    }

    /// Moves every field not consumed so far into `extra`, or rejects the
    /// first one, as the options say.
    pub(super) fn finish(
        &self,
        extra: &mut Map<String, Value>,
        opts: &DecodeOptions,
    ) -> VResult<()> {
        if self.seen.count_ones() as usize == self.members.len() {
            return Ok(());
        }
        for (i, (k, v)) in self.members.iter().enumerate() {
            // Consumed, or a repeated key whose last occurrence counts.
            if self.seen & (1 << i) != 0 || self.members[i + 1..].iter().any(|(k2, _)| k2 == k) {
                continue;
            }
            let ptr = format!("{}/{}", self.ptr.render(), escape(k));
            match opts.unknown_fields {
                UnknownFields::Reject => {
                    return Err(ValidationError::new(ptr, "unknown field"));
                }
                UnknownFields::Keep => {
                    extra.insert(ptr, v.to_value());
                }
            }
        }
        Ok(())
    }
}

pub(super) fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
