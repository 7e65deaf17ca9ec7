//! Decoding a stored value's JSON text as the caller's type.
//!
//! Everything goes through serde_json, with one shortcut: a value that is a
//! single JSON string with nothing to unescape in it (a rendered page, a
//! token, a serialized blob: the commonest large cache value) is handed to
//! the caller's type as the text between its quotes. serde_json would scan
//! that text eight bytes at a time for quotes, backslashes and control
//! characters; the shortcut is told by a RocksDB read that found the string
//! in the stored envelope ([`Json::PlainString`]), or finds out with the
//! envelope decoder's own scan (`format::run_end`: `memchr2` and a vector
//! compare), in a fraction of serde_json's time on a 4 KiB value (see
//! BENCHMARKS.md, RocksDB GET).
//!
//! The shortcut answers exactly what serde_json answers. [`PlainString`]
//! takes only the requests serde_json answers by visiting the string itself
//! (`any`, `str`, `string`, `option`, `newtype_struct`, `ignored_any`) and
//! declines every other one; a declined or refused string is decoded again
//! by serde_json from the start, so every other answer, and every error
//! (with its line and column), is serde_json's own.

use serde::de::{DeserializeOwned, Deserializer, Error as _, Visitor};

use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format::{Json, run_end};

/// The value stored under `name`, `json` decoded as `T`.
pub(super) fn decode<T: DeserializeOwned>(name: &str, json: Json<'_>) -> Result<T> {
    let decoded = match json {
        Json::Text(text) => match plain_value(text) {
            Some(value) => {
                T::deserialize(PlainString(value)).or_else(|_| serde_json::from_str(text))
            }
            None => serde_json::from_str(text),
        },
        Json::PlainString(value) => T::deserialize(PlainString(value))
            .or_else(|_| serde_json::from_str(&format!("\"{value}\""))),
    };
    decoded.map_err(|e| {
        KeystoreError::new(
            ErrorKind::Serialization,
            format!(
                "the value of key {name:?} is not a valid {}",
                std::any::type_name::<T>()
            ),
        )
        .with_source(e)
    })
}

/// The value of `json` when it is exactly one JSON string with no escape
/// and no control character in it: the text between its quotes, as it
/// stands (the string's first quote or backslash is its last byte, a
/// quote).
fn plain_value(json: &str) -> Option<&str> {
    let rest = json.strip_prefix('"')?;
    let end = run_end(rest.as_bytes(), 0)?;
    (end + 1 == rest.len() && rest.as_bytes()[end] == b'"').then(|| &rest[..end])
}

/// A deserializer over a JSON string's value (see [`plain_value`]).
struct PlainString<'de>(&'de str);

/// Requests serde_json answers some other way than by visiting the string
/// (an error naming it, a unit variant, bytes…): declined, for
/// [`decode`] to pass the text to serde_json.
macro_rules! declined {
    ($($method:ident $(($($arg:ident: $ty:ty),*))?;)*) => {
        $(
            fn $method<V: Visitor<'de>>(
                self,
                $($(_: $ty,)*)?
                _: V,
            ) -> serde_json::Result<V::Value> {
                Err(declined())
            }
        )*
    };
}

/// The error of a declined request (never shown: [`decode`] then asks
/// serde_json).
fn declined() -> serde_json::Error {
    serde_json::Error::custom("left to serde_json")
}

impl<'de> Deserializer<'de> for PlainString<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> serde_json::Result<V::Value> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> serde_json::Result<V::Value> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> serde_json::Result<V::Value> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> serde_json::Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> serde_json::Result<V::Value> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        // serde_json's private markers (`RawValue`, `Number`) take its own path.
        if name.starts_with("$serde_json") {
            return Err(declined());
        }
        visitor.visit_newtype_struct(self)
    }

    declined! {
        deserialize_bool;
        deserialize_i8;
        deserialize_i16;
        deserialize_i32;
        deserialize_i64;
        deserialize_i128;
        deserialize_u8;
        deserialize_u16;
        deserialize_u32;
        deserialize_u64;
        deserialize_u128;
        deserialize_f32;
        deserialize_f64;
        deserialize_char;
        deserialize_bytes;
        deserialize_byte_buf;
        deserialize_unit;
        deserialize_unit_struct(name: &'static str);
        deserialize_seq;
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map;
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Debug;

    use serde::de::IgnoredAny;
    use serde::{Deserialize, Serialize};
    use serde_json::value::RawValue;

    use super::*;

    /// `decode` and serde_json give the same answer for `json` as `T`: the
    /// same value, or both an error with serde_json's own text.
    fn same_as_serde_json<T: DeserializeOwned + PartialEq + Debug>(json: &str) {
        let theirs = serde_json::from_str::<T>(json);
        same_answer(json, decode::<T>("k", Json::Text(json)), &theirs);
        if let Some(value) = plain_value(json) {
            same_answer(json, decode::<T>("k", Json::PlainString(value)), &theirs);
        }
    }

    fn same_answer<T: PartialEq + Debug>(
        json: &str,
        ours: Result<T>,
        theirs: &serde_json::Result<T>,
    ) {
        match (ours, theirs) {
            (Ok(a), Ok(b)) => assert_eq!(&a, b, "{json} as {}", std::any::type_name::<T>()),
            (Err(a), Err(b)) => {
                let (a, b) = (a.to_string(), b.to_string());
                assert!(
                    a.ends_with(&format!(": {b}")),
                    "{json}: ours {a}, serde_json {b}"
                );
            }
            (a, b) => panic!("{json}: ours {a:?}, serde_json {b:?}"),
        }
    }

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    struct Wrapped(String);

    #[derive(Debug, PartialEq, Deserialize)]
    enum Colour {
        Red,
        Green(u8),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Page {
        body: String,
    }

    #[test]
    fn only_a_string_with_nothing_to_unescape_is_plain() {
        assert_eq!(plain_value(r#""hello world""#), Some("hello world"));
        assert_eq!(plain_value(r#""""#), Some(""));
        assert_eq!(
            plain_value("\"caf\u{e9} \u{1F600}\""),
            Some("caf\u{e9} \u{1F600}")
        );
        for not_plain in [
            r#""a\"b""#,
            r#""a\\b""#,
            r#""a\u0041""#,
            "\"a\nb\"",
            "\"a\u{1f}\"",
            r#"""#,
            r#""a"#,
            r#" "a""#,
            r#""a" "#,
            r#""a""b""#,
            r#"{"a":"b"}"#,
            "12",
            "",
        ] {
            assert_eq!(plain_value(not_plain), None, "{not_plain:?}");
        }
    }

    #[test]
    fn every_type_decodes_a_plain_string_as_serde_json_does() {
        for json in [
            r#""hello""#,
            r#""""#,
            r#""Red""#,
            r#""Green""#,
            r#""42""#,
            r#""x""#,
        ] {
            same_as_serde_json::<String>(json);
            same_as_serde_json::<Option<String>>(json);
            same_as_serde_json::<Wrapped>(json);
            same_as_serde_json::<serde_json::Value>(json);
            same_as_serde_json::<Colour>(json);
            same_as_serde_json::<Either>(json);
            same_as_serde_json::<char>(json);
            same_as_serde_json::<Vec<u8>>(json);
            same_as_serde_json::<u64>(json);
            same_as_serde_json::<f64>(json);
            same_as_serde_json::<bool>(json);
            same_as_serde_json::<()>(json);
            same_as_serde_json::<Vec<String>>(json);
            same_as_serde_json::<(String,)>(json);
            same_as_serde_json::<BTreeMap<String, String>>(json);
            same_as_serde_json::<Page>(json);
            same_as_serde_json::<std::net::Ipv4Addr>(json);
        }
        // A string that only parses as some types.
        same_as_serde_json::<std::net::Ipv4Addr>(r#""127.0.0.1""#);
        same_as_serde_json::<Option<std::net::Ipv4Addr>>(r#""127.0.0.1""#);
    }

    #[test]
    fn ignored_and_raw_values_are_answered_as_serde_json_answers_them() {
        for json in [Json::Text(r#""anything""#), Json::PlainString("anything")] {
            assert!(decode::<IgnoredAny>("k", json).is_ok());
            let raw = decode::<Box<RawValue>>("k", json).expect("a raw value");
            assert_eq!(raw.get(), r#""anything""#);
            let number = decode::<serde_json::Number>("k", json);
            assert!(serde_json::from_str::<serde_json::Number>(r#""anything""#).is_err());
            assert_eq!(
                number.expect_err("not a number").kind(),
                ErrorKind::Serialization
            );
        }
    }

    #[test]
    fn other_texts_go_to_serde_json_unchanged() {
        same_as_serde_json::<String>(r#""a\"b""#);
        same_as_serde_json::<String>(r#""a\u00e9""#);
        same_as_serde_json::<String>(r#" "padded" "#);
        same_as_serde_json::<String>(r#""a" x"#);
        same_as_serde_json::<Page>(r#"{"body":"text"}"#);
        same_as_serde_json::<u64>("12");
        same_as_serde_json::<String>("12");
        same_as_serde_json::<String>("not json");
    }

    #[test]
    fn a_refused_string_carries_serde_json_s_error_and_the_key() {
        for json in [Json::Text(r#""abc""#), Json::PlainString("abc")] {
            let e = decode::<u64>("user:1", json).expect_err("a string is not a u64");
            assert_eq!(e.kind(), ErrorKind::Serialization);
            assert!(e.to_string().contains("\"user:1\""), "{e}");
            assert!(e.to_string().ends_with("at line 1 column 5"), "{e}");
        }
    }
}
