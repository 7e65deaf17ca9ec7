//! The stored value formats shared with the Python services.
//!
//! - Redis/Dragonfly: the value is the JSON text of the data.
//! - RocksDB: the value is `{"data": "<the JSON text of the data>", "expires_at": <unix seconds>}`
//!   with `expires_at: -1` for never-expire (`data` is JSON text inside a JSON string).
//!
//! Reading is lenient where that loses nothing: `expires_at` may be a float
//! (Python's `time.time() + ttl`), and `data` may hold the JSON value itself
//! rather than its text.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `expires_at` of an entry that never expires.
pub const NEVER: i64 = -1;

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    data: &'a str,
    expires_at: i64,
}

#[derive(Deserialize)]
struct EnvelopeText<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
    expires_at: f64,
}

#[derive(Deserialize)]
struct EnvelopeRaw<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
    expires_at: f64,
}

/// A decoded RocksDB entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The JSON text of the data.
    pub data: String,
    /// Unix seconds; negative means never.
    pub expires_at: f64,
}

impl Entry {
    /// Whether the entry has expired at `now` (unix seconds).
    pub fn is_expired(&self, now: f64) -> bool {
        is_expired(self.expires_at, now)
    }
}

/// Whether `expires_at` (unix seconds; negative: never) has passed at `now`.
pub(crate) fn is_expired(expires_at: f64, now: f64) -> bool {
    expires_at >= 0.0 && now >= expires_at
}

/// `expires_at` for a value written at `now` (unix seconds) living `ttl` seconds.
/// Rounded up, so an entry never expires early; `Some(0)` is already expired.
pub(crate) fn expires_at(now: f64, ttl: Option<u64>) -> i64 {
    match ttl {
        None => NEVER,
        Some(0) => now.floor() as i64,
        Some(t) => (now + t as f64).ceil() as i64,
    }
}

/// Encodes the RocksDB envelope.
pub(crate) fn encode(json: &str, expires_at: i64) -> Vec<u8> {
    // Serializing a &str and an i64 cannot fail.
    serde_json::to_vec(&EnvelopeOut {
        data: json,
        expires_at,
    })
    .unwrap_or_default()
}

/// Decodes the RocksDB envelope; the error text says what is wrong with it.
pub(crate) fn decode(bytes: &[u8]) -> Result<Entry, String> {
    match serde_json::from_slice::<EnvelopeText<'_>>(bytes) {
        Ok(e) => Ok(Entry {
            data: e.data.into_owned(),
            expires_at: e.expires_at,
        }),
        Err(first) => match serde_json::from_slice::<EnvelopeRaw<'_>>(bytes) {
            Ok(e) => Ok(Entry {
                data: e.data.get().to_owned(),
                expires_at: e.expires_at,
            }),
            Err(_) => Err(first.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_python_spellings() {
        let b = encode(r#"{"a":[1,"x\"y"]}"#, 1700000000);
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"data":"{\"a\":[1,\"x\\\"y\"]}","expires_at":1700000000}"#
        );
        let e = decode(&b).unwrap();
        assert_eq!(e.data, r#"{"a":[1,"x\"y"]}"#);
        // Python's json.dumps spacing, a float expiry, and never-expire.
        let py = br#"{"data": "[1, 2]", "expires_at": 1700000000.5}"#;
        assert_eq!(decode(py).unwrap().expires_at, 1700000000.5);
        let never = br#"{"data": "1", "expires_at": -1}"#;
        assert!(!decode(never).unwrap().is_expired(f64::MAX));
        // data holding the value itself rather than its text.
        assert_eq!(
            decode(br#"{"data": {"k": 1}, "expires_at": -1}"#)
                .unwrap()
                .data,
            r#"{"k": 1}"#
        );
        for bad in [&b"plain text"[..], b"{\"data\":1}", b"\xff\xfe", b"[]", b""] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expiry_rounds_up() {
        assert_eq!(expires_at(100.2, Some(1)), 102);
        assert_eq!(expires_at(100.0, Some(1)), 101);
        assert_eq!(expires_at(100.7, Some(0)), 100);
        assert_eq!(expires_at(100.7, None), NEVER);
        assert!(is_expired(101.0, 101.0));
        assert!(!is_expired(101.0, 100.99));
    }
}
