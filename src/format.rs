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
    decode_in(bytes, Vec::new())
}

/// [`decode`], the data's text built in `buffer` (cleared first): no
/// allocation when it has room, and the text's `String` hands it back
/// (`into_bytes`) for the next decode.
pub(crate) fn decode_in(bytes: &[u8], mut data: Vec<u8>) -> Result<Entry, String> {
    data.clear();
    if let Some(expires_at) = canonical_into(bytes, &mut data)
        && let Ok(data) = String::from_utf8(data)
    {
        return Ok(Entry { data, expires_at });
    }
    let mut data = String::new();
    let expires_at = general_into(bytes, &mut data)?;
    Ok(Entry { data, expires_at })
}

/// [`decode`] for a batch: appends the JSON text of the data to `out`, as
/// UTF-8 (no allocation of its own when `out` has room), and answers
/// `expires_at`. On an error `out` is left as it was. Only the appended
/// part is checked, so a batch costs one pass over its text, and `out`
/// becomes a `String` without another allocation.
pub(crate) fn decode_into(bytes: &[u8], out: &mut Vec<u8>) -> Result<f64, String> {
    let start = out.len();
    if let Some(expires_at) = canonical_into(bytes, out)
        && std::str::from_utf8(&out[start..]).is_ok()
    {
        return Ok(expires_at);
    }
    out.truncate(start);
    let mut data = String::new();
    let expires_at = general_into(bytes, &mut data)?;
    out.extend_from_slice(data.as_bytes());
    Ok(expires_at)
}

/// The general decoder: any envelope serde_json reads (a float
/// `expires_at`, `\u` escapes, other fields and layouts, `data` holding the
/// value itself); appends the data's text to `out`.
fn general_into(bytes: &[u8], out: &mut String) -> Result<f64, String> {
    match serde_json::from_slice::<EnvelopeText<'_>>(bytes) {
        Ok(e) => {
            out.push_str(&e.data);
            Ok(e.expires_at)
        }
        Err(first) => match serde_json::from_slice::<EnvelopeRaw<'_>>(bytes) {
            Ok(e) => {
                out.push_str(e.data.get());
                Ok(e.expires_at)
            }
            Err(_) => Err(first.to_string()),
        },
    }
}

/// The envelope exactly as [`encode`] writes it (Python's `json.dumps`
/// spacing accepted too): appends the data's text (not yet checked as
/// UTF-8) to `out` and answers `expires_at`; no allocation when `out` has
/// room: warm reads spend most of their time here. `None` for anything
/// else (a float `expires_at`, `\u` escapes, other fields, other layouts,
/// bad bytes), which the general decoder then reads or explains; `out` may
/// then hold part of the text, which the caller drops.
fn canonical_into(bytes: &[u8], out: &mut Vec<u8>) -> Option<f64> {
    let rest = unescape_into(data_string(bytes)?, out)?;
    expires_at_field(rest)
}

/// The bytes of a canonical envelope just after the opening quote of its
/// data's string (`{"data":"`, spaces allowed before the quote).
fn data_string(bytes: &[u8]) -> Option<&[u8]> {
    skip_spaces(bytes.strip_prefix(b"{\"data\":")?).strip_prefix(b"\"")
}

/// A stored value's JSON text, as a read lends it to the caller's decoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Json<'a> {
    /// The JSON text.
    Text(&'a str),
    /// A value that is one JSON string with nothing to unescape in it: the
    /// string's value (the text between its quotes).
    PlainString(&'a str),
}

/// The envelope as [`canonical_into`] reads it, when its data is one JSON
/// string with nothing to unescape (`{"data":"\"…\"","expires_at":-1}`,
/// the commonest large value: a page, a token, a blob): that string's
/// value, borrowed from `bytes` (nothing copied: [`run_end`] finds its
/// end, then one UTF-8 check), and `expires_at`. `None` for any other
/// envelope, which [`decode_in`] reads.
pub(crate) fn plain_string(bytes: &[u8]) -> Option<(&str, f64)> {
    let rest = data_string(bytes)?.strip_prefix(b"\\\"")?;
    let (value, rest) = rest.split_at(run_end(rest, 0)?);
    let expires_at = expires_at_field(rest.strip_prefix(b"\\\"\"")?)?;
    Some((std::str::from_utf8(value).ok()?, expires_at))
}

/// What follows the data's string in a canonical envelope:
/// `, "expires_at": <integer>}`; answers the integer.
fn expires_at_field(rest: &[u8]) -> Option<f64> {
    let rest = skip_spaces(rest).strip_prefix(b",")?;
    let rest = skip_spaces(rest).strip_prefix(b"\"expires_at\":")?;
    let rest = skip_spaces(rest);
    let (negative, rest) = match rest.strip_prefix(b"-") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 18 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let value = rest[..digits]
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    if skip_spaces(&rest[digits..]) != b"}" {
        return None;
    }
    let expires_at = if negative { -value } else { value };
    Some(expires_at as f64)
}

fn skip_spaces(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    &b[n..]
}

/// Whether `run` holds a control character, which a JSON string may not
/// hold raw. (A fold, not `any`: without an early exit it compiles to
/// vector compares over the whole run.)
fn has_control(run: &[u8]) -> bool {
    run.iter().fold(false, |found, &c| found | (c < 0x20))
}

/// Appends the string starting at `b` (just after its opening quote),
/// unescaped, to `out`; answers what follows its closing quote.
///
/// A run between escapes is looked for a word (8 bytes) at a time over its
/// first [`SHORT_RUN`] bytes, then with `memchr2` (vector instructions,
/// tens of bytes a cycle): an object's text has an escape every few bytes
/// (`\"` around each name), where a `memchr2` call per run costs more
/// than the run, and a long string has one at each end, where `memchr2`
/// is the fastest way through. On 4 KiB values this decodes an object's
/// envelope markedly faster than `memchr2` alone, and a string's as fast
/// (see BENCHMARKS.md, object values).
fn unescape_into<'b>(b: &'b [u8], out: &mut Vec<u8>) -> Option<&'b [u8]> {
    out.reserve(b.len());
    let mut i = 0;
    loop {
        let end = run_end(b, i)?;
        out.extend_from_slice(&b[i..end]);
        if b[end] == b'"' {
            return Some(&b[end + 1..]);
        }
        out.push(match *b.get(end + 1)? {
            c @ (b'"' | b'\\' | b'/') => c,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            _ => return None,
        });
        i = end + 2;
    }
}

/// How far [`unescape_into`] looks for the end of a run a word at a time
/// before it hands the rest of the run to `memchr2`.
const SHORT_RUN: usize = 32;

/// Where the run of plain bytes starting at `start` ends: the index of the
/// next quote or backslash. `None` when a control character comes first
/// (a JSON string may not hold one raw) or the string never ends.
pub(crate) fn run_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while i - start < SHORT_RUN {
        let Some(word) = b.get(i..i + 8) else { break };
        let found = specials(u64::from_le_bytes(word.try_into().ok()?));
        if found != 0 {
            // The lowest flagged byte is exact (a borrow only runs upward).
            let end = i + found.trailing_zeros() as usize / 8;
            return (b[end] >= 0x20).then_some(end);
        }
        i += 8;
    }
    let end = i + memchr::memchr2(b'"', b'\\', &b[i..])?;
    (!has_control(&b[i..end])).then_some(end)
}

/// The high bit of each byte of `word` (little-endian) that is a quote, a
/// backslash or a control character, and possibly of bytes above the
/// first such (Mycroft's zero-byte test, as serde_json scans its strings).
fn specials(word: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = zero_in(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(word ^ (ONES * u64::from(b'\\')));
    (control | quote | backslash) & (ONES << 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical decoder as `decode` uses it: text checked as UTF-8.
    fn decode_canonical(bytes: &[u8]) -> Option<Entry> {
        let mut data = Vec::new();
        let expires_at = canonical_into(bytes, &mut data)?;
        Some(Entry {
            data: String::from_utf8(data).ok()?,
            expires_at,
        })
    }

    #[test]
    fn a_batch_decodes_into_one_buffer_as_one_at_a_time() {
        let envelopes: Vec<Vec<u8>> = vec![
            encode(r#"{"a":[1,"x\"y"]}"#, NEVER),
            br#"{"data": "1", "expires_at": 1700000000.5}"#.to_vec(),
            br#"{"data":"\u00e9","expires_at":-1}"#.to_vec(),
            br#"{"data": {"k": 1}, "expires_at": -1}"#.to_vec(),
            encode("\"caf\u{e9} \u{1F600}\"", 5),
        ];
        let mut out = Vec::new();
        let mut spans = Vec::new();
        for bytes in &envelopes {
            let start = out.len();
            let expires_at = decode_into(bytes, &mut out).expect("decodes");
            spans.push((start, out.len(), expires_at));
        }
        let text = String::from_utf8(out).expect("UTF-8");
        for (bytes, (a, b, expires_at)) in envelopes.iter().zip(spans) {
            let one = decode(bytes).expect("decodes");
            assert_eq!(
                (&text[a..b], expires_at),
                (one.data.as_str(), one.expires_at)
            );
        }
        // A bad envelope is an error and leaves the buffer as it was, even
        // when the fast path got part of the way (invalid UTF-8 in `data`).
        let mut out = b"kept".to_vec();
        for bad in [
            &b"{\"data\":\"\xff\",\"expires_at\":-1}"[..],
            b"{\"data\":\"abc",
            b"plain text",
        ] {
            assert!(decode_into(bad, &mut out).is_err());
            assert_eq!(out, b"kept");
        }
    }

    #[test]
    fn the_fast_decoder_agrees_with_the_general_one() {
        let texts = [
            "",
            "1",
            r#"{"a":[1,"x\"y"],"b":null}"#,
            "\"line\nbreak\ttab\\ and / slash\"",
            "\"caf\u{e9} \u{1F600} \u{7f}\"",
            &"x".repeat(4093),
            &format!("\"{}\"", "ab\"cd\\".repeat(300)),
        ];
        for text in texts {
            for expires in [NEVER, 0, 1_700_000_000] {
                let bytes = encode(text, expires);
                let fast = decode_canonical(&bytes).expect("canonical");
                assert_eq!(fast.data, text);
                assert_eq!(fast.expires_at, expires as f64);
                // The general decoder alone gives the same.
                let slow: EnvelopeText<'_> = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(
                    (slow.data.as_ref(), slow.expires_at),
                    (text, expires as f64)
                );
            }
        }
        // Python's spacing is canonical too.
        let py = br#"{"data": "[1, 2]", "expires_at": 1700000000}"#;
        assert_eq!(decode_canonical(py).unwrap().data, "[1, 2]");
        // Everything else is left to the general decoder.
        for other in [
            &br#"{"data": "1", "expires_at": 1700000000.5}"#[..],
            br#"{"data":"\u00e9","expires_at":-1}"#,
            br#"{"data":"1","expires_at":-1,"x":2}"#,
            br#"{"expires_at":-1,"data":"1"}"#,
            br#"{"data":{"k":1},"expires_at":-1}"#,
            br#"{"data":"1","expires_at":01}"#,
            br#"{"data":"1","expires_at":-1"#,
            br#"{"data":"1"#,
            b"{\"data\":\"a\nb\",\"expires_at\":-1}",
            b"{\"data\":\"\xff\",\"expires_at\":-1}",
            b"",
        ] {
            assert!(
                decode_canonical(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        assert_eq!(
            decode(br#"{"data":"\u00e9","expires_at":-1}"#)
                .unwrap()
                .data,
            "\u{e9}"
        );
        assert!(decode(b"{\"data\":\"\xff\",\"expires_at\":-1}").is_err());
    }

    /// A run's end is found wherever it falls: in each byte of the words
    /// looked at one at a time, and past them, where `memchr2` looks.
    #[test]
    fn every_escape_and_stray_byte_is_found_wherever_it_falls() {
        let strays: [&[u8]; 9] = [
            b"\"",
            b"\\",
            b"\\n",
            b"\\u0041",
            b"\n",
            b"\x1f",
            b"\x7f",
            b"\xc3\xa9",
            b"\xff",
        ];
        for at in 0..(SHORT_RUN + 24) {
            for stray in strays {
                for tail in [0, 1, 7, 8, 9, 40] {
                    let mut data = vec![b'x'; at];
                    data.extend_from_slice(stray);
                    data.extend(std::iter::repeat_n(b'y', tail));
                    let mut bytes = b"{\"data\":\"".to_vec();
                    bytes.extend_from_slice(&data);
                    bytes.extend_from_slice(b"\",\"expires_at\":-1}");
                    let ours = decode(&bytes).map(|e| e.data);
                    let theirs = serde_json::from_slice::<EnvelopeText<'_>>(&bytes)
                        .map(|e| e.data.into_owned());
                    // The fast path reads exactly what it accepts.
                    if let Some(fast) = decode_canonical(&bytes) {
                        assert_eq!(Some(&fast.data), theirs.as_ref().ok());
                    }
                    assert_eq!(
                        ours.is_ok(),
                        theirs.is_ok(),
                        "{}",
                        String::from_utf8_lossy(&bytes)
                    );
                    if let (Ok(a), Ok(b)) = (ours, theirs) {
                        assert_eq!(a, b);
                    }
                }
            }
        }
        // Written by `encode`, every text reads back through the fast path.
        for at in 0..(SHORT_RUN + 24) {
            for stray in ["\"", "\\", "\u{7f}", "é", "\u{1F600}", "/"] {
                let text = format!("{}{stray}{}", "x".repeat(at), "y".repeat(9));
                let bytes = encode(&text, NEVER);
                assert_eq!(decode_canonical(&bytes).expect("canonical").data, text);
            }
        }
    }

    #[test]
    fn a_plain_string_is_read_where_it_stands_and_agrees_with_decode() {
        let long = format!("\"{}\"", "x".repeat(4094));
        for text in [
            r#""""#,
            r#""hello""#,
            "\"caf\u{e9} \u{1F600} \u{7f}\"",
            long.as_str(),
        ] {
            for expires in [NEVER, 0, 1_700_000_000] {
                let bytes = encode(text, expires);
                let (value, expires_at) = plain_string(&bytes).expect("a plain string");
                assert_eq!(format!("\"{value}\""), decode(&bytes).unwrap().data);
                assert_eq!(expires_at, expires as f64);
                // The value is borrowed from the stored bytes.
                let start = bytes.as_ptr() as usize;
                assert!((start..start + bytes.len()).contains(&(value.as_ptr() as usize)));
            }
        }
        let py = br#"{"data": "\"page\"", "expires_at": 1700000000}"#;
        assert_eq!(plain_string(py), Some(("page", 1_700_000_000.0)));
        // Everything else goes to `decode_in`, which reads or refuses it.
        for other in [
            encode(r#""a\"b""#, NEVER),
            encode(r#""a\\b""#, NEVER),
            encode("\"a\nb\"", NEVER),
            encode(r#"{"a":"b"}"#, NEVER),
            encode(r#"["a"]"#, NEVER),
            encode("12", NEVER),
            encode(r#""a" "#, NEVER),
            encode(r#""a"#, NEVER),
            br#"{"data":"\"a\"","expires_at":1700000000.5}"#.to_vec(),
            br#"{"data":"\"a\"","expires_at":-1,"x":1}"#.to_vec(),
            br#"{"data":"\"\u00e9\"","expires_at":-1}"#.to_vec(),
            b"{\"data\":\"\\\"a\tb\\\"\",\"expires_at\":-1}".to_vec(),
            b"{\"data\":\"\\\"\xff\\\"\",\"expires_at\":-1}".to_vec(),
            br#"{"data":"\"a\""#.to_vec(),
            Vec::new(),
        ] {
            assert_eq!(
                plain_string(&other),
                None,
                "{}",
                String::from_utf8_lossy(&other)
            );
        }
        assert!(decode(b"{\"data\":\"\\\"\xff\\\"\",\"expires_at\":-1}").is_err());
    }

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
