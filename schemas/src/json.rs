//! A JSON document that borrows from its input.
//!
//! Ingest parses every event once and keeps nothing of the tree: the decoder
//! copies out the fields it stores. `serde_json::Value` would allocate a
//! `String` for every key and value and a map node per object; [`Doc`] points
//! into the input bytes instead (only strings with escapes are copied) and
//! keeps each object's members in one `Vec`, in input order.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// One parsed JSON value, borrowing its strings from the input where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as serde_json holds it.
    Number(Number),
    /// A string: borrowed from the input, owned if it had escapes.
    String(Cow<'a, str>),
    /// An array, in input order.
    Array(Vec<Doc<'a>>),
    /// Members in input order. A repeated key is kept twice; lookups see
    /// the last one, as `serde_json::Value` does.
    Object(Vec<(Cow<'a, str>, Doc<'a>)>),
}

impl<'a> Doc<'a> {
    /// Parses one JSON document.
    pub fn parse(bytes: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    /// The member `key` of an object (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&Doc<'a>> {
        match self {
            Doc::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Doc::String(s) => Some(s),
            _ => None,
        }
    }

    /// An owned copy, for the rare values that are kept as they came
    /// (unknown fields).
    pub fn to_value(&self) -> Value {
        match self {
            Doc::Null => Value::Null,
            Doc::Bool(b) => Value::Bool(*b),
            Doc::Number(n) => Value::Number(n.clone()),
            Doc::String(s) => Value::String(s.clone().into_owned()),
            Doc::Array(items) => Value::Array(items.iter().map(Doc::to_value).collect()),
            Doc::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone().into_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Doc<'de>, E> {
        Number::from_f64(v)
            .map(Doc::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_none<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Doc::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        // serde_json gives no size hint; events have up to ~10 members.
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            members.push((key.0, map.next_value()?));
        }
        Ok(Doc::Object(members))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_without_escapes_borrow_from_the_input() {
        let doc = Doc::parse(br#"{"a": "plain", "b": "tab\tbed", "c\u0041": 1}"#).expect("json");
        assert!(matches!(
            doc.get("a"),
            Some(Doc::String(Cow::Borrowed("plain")))
        ));
        assert!(matches!(doc.get("b"), Some(Doc::String(Cow::Owned(s))) if s == "tab\tbed"));
        assert_eq!(doc.get("cA"), Some(&Doc::Number(1.into())));
    }

    #[test]
    fn converts_to_the_same_value_serde_json_parses() {
        let text = br#"{"n": null, "t": true, "i": -3, "u": 18446744073709551615, "f": 1.5,
            "s": "\u00e9", "a": [1, {"x": []}], "dup": 1, "dup": 2}"#;
        let value: Value = serde_json::from_slice(text).expect("json");
        let doc = Doc::parse(text).expect("json");
        assert_eq!(doc.to_value(), value);
        assert_eq!(doc.get("dup"), Some(&Doc::Number(2.into())));
        assert_eq!(value["dup"], json!(2));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(Doc::parse(b"{\"a\": ").is_err());
        assert!(Doc::parse(b"{} trailing").is_err());
    }
}
