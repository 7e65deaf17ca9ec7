//! [`Doc`]: a cursor over the YAML tree of a config file.
//!
//! Keys are pulled out of the tree by hand rather than through serde so that
//! every error names the file and the full key (`keystore.redis.port`), and so
//! that the lenient spellings the Python module's users wrote for PyYAML
//! (`ssl: yes`, `port: "6379"`) keep working under YAML 1.2. This module knows
//! YAML shapes (text, yes/no, ports, counts, seconds) but no config keys; which
//! keys exist is `parse`'s business.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde_yaml::Value;

use super::UnknownKey;
use crate::error::{ErrorKind, KeystoreError, Result};

/// The YAML tree with its origin, for path-aware lookups and errors.
pub(super) struct Doc<'a> {
    /// Names the file (or text) in error messages.
    pub(super) origin: &'a str,
    pub(super) root: &'a Value,
}

impl Doc<'_> {
    pub(super) fn err(&self, path: &[&str], what: impl fmt::Display) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::Config,
            format!("config {}: {}: {what}", self.origin, path.join(".")),
        )
    }

    /// The value at `path`; `None` when absent. An intermediate that is not a
    /// mapping is an error naming it.
    pub(super) fn get(&self, path: &[&str]) -> Result<Option<&Value>> {
        let mut cur = self.root;
        for (i, key) in path.iter().enumerate() {
            match cur {
                Value::Mapping(m) => match m.get(*key) {
                    Some(v) => cur = v,
                    None => return Ok(None),
                },
                Value::Null => return Ok(None),
                other => {
                    return Err(self.err(
                        &path[..i],
                        format!("expected a mapping of settings, got {}", show(other)),
                    ));
                }
            }
        }
        Ok(Some(cur))
    }

    pub(super) fn mapping_at(&self, path: &[&str]) -> Result<()> {
        match self.get(path)? {
            None | Some(Value::Null) | Some(Value::Mapping(_)) => Ok(()),
            Some(other) => Err(self.err(
                path,
                format!("expected a mapping of settings, got {}", show(other)),
            )),
        }
    }

    pub(super) fn string_at(&self, path: &[&str]) -> Result<Option<String>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.err(path, format!("expected text, got {}", show(other)))),
        }
    }

    /// YAML 1.2 booleans, plus the YAML 1.1 spellings PyYAML accepted.
    pub(super) fn bool_at(&self, path: &[&str]) -> Result<Option<bool>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "yes" | "y" | "true" | "on" | "1" => Ok(Some(true)),
                "no" | "n" | "false" | "off" | "0" => Ok(Some(false)),
                _ => Err(self.err(path, format!("expected yes/no (true/false), got {s:?}"))),
            },
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
            Some(other) => Err(self.err(
                path,
                format!("expected yes/no (true/false), got {}", show(other)),
            )),
        }
    }

    pub(super) fn port_at(&self, path: &[&str]) -> Result<Option<u16>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match as_u64(v) {
                Some(p) if (1..=65535).contains(&p) => Ok(Some(p as u16)),
                _ => Err(self.err(
                    path,
                    format!("expected a port number from 1 to 65535, got {}", show(v)),
                )),
            },
        }
    }

    pub(super) fn count_at(&self, path: &[&str], min: usize, max: usize) -> Result<Option<usize>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match as_u64(v) {
                Some(n) if (min as u64..=max as u64).contains(&n) => Ok(Some(n as usize)),
                _ => Err(self.err(
                    path,
                    format!(
                        "expected a whole number from {min} to {max}, got {}",
                        show(v)
                    ),
                )),
            },
        }
    }

    /// A number at `path` that `ok` accepts (absent or empty: `None`);
    /// `expected` says what it is, in the error otherwise.
    pub(super) fn fraction_at(
        &self,
        path: &[&str],
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> Result<Option<f64>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match number(v) {
                Some(f) if f.is_finite() && ok(f) => Ok(Some(f)),
                _ => Err(self.err(path, format!("expected {expected}, got {}", show(v)))),
            },
        }
    }

    pub(super) fn seconds_at(&self, path: &[&str]) -> Result<Option<Duration>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match number(v) {
                Some(s) if s.is_finite() && (0.0..=1e9).contains(&s) => {
                    Ok(Some(Duration::from_secs_f64(s)))
                }
                _ => Err(self.err(
                    path,
                    format!("expected a number of seconds, got {}", show(v)),
                )),
            },
        }
    }
}

/// A number written as one (`0.5`) or as a string of one (`"0.5"`), as
/// the original module's files have both.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// What loading found besides the settings: one sentence per warning
/// (deprecations, ignored keys), and the full name of each key that is not
/// one of ours (`check --strict` refuses a file with any).
#[derive(Default)]
pub(super) struct Notes {
    pub(super) warnings: Vec<String>,
    pub(super) unknown_keys: Vec<UnknownKey>,
}

impl Notes {
    /// Logs `msg` once per process, and keeps it.
    pub(super) fn warn(&mut self, msg: String) {
        warn_once(&msg);
        self.warnings.push(msg);
    }
}

/// Warns about each key of the mapping at `at` (one of our sections) that
/// is not in `known`, naming the nearest known key when one is close.
pub(super) fn warn_unknown(
    doc: &Doc<'_>,
    at: &[&str],
    known: &[&str],
    notes: &mut Notes,
) -> Result<()> {
    for name in unknown(doc, at, known)? {
        let hint = match nearest(&name, known) {
            Some(near) => format!("did you mean {near}?"),
            None => format!("known: {}", known.join(", ")),
        };
        note_unknown(doc, at, &name, &hint, notes);
    }
    Ok(())
}

/// Warns about each key of the mapping at `at` (a place other modules of
/// the platform write too: the top level, `system`) that is not in
/// `known` but close to a known key: a misspelling of ours, not someone
/// else's setting.
pub(super) fn warn_misspelt(
    doc: &Doc<'_>,
    at: &[&str],
    known: &[&str],
    notes: &mut Notes,
) -> Result<()> {
    for name in unknown(doc, at, known)? {
        if let Some(near) = nearest(&name, known) {
            note_unknown(doc, at, &name, &format!("did you mean {near}?"), notes);
        }
    }
    Ok(())
}

fn note_unknown(doc: &Doc<'_>, at: &[&str], name: &str, hint: &str, notes: &mut Notes) {
    let key = at
        .iter()
        .copied()
        .chain([name])
        .collect::<Vec<_>>()
        .join(".");
    let unknown = UnknownKey {
        file: doc.origin.to_owned(),
        key,
        hint: hint.to_owned(),
    };
    notes.warn(unknown.to_string());
    notes.unknown_keys.push(unknown);
}

/// The keys of the mapping at `at` that are not in `known`.
fn unknown(doc: &Doc<'_>, at: &[&str], known: &[&str]) -> Result<Vec<String>> {
    let Some(Value::Mapping(m)) = doc.get(at)? else {
        return Ok(Vec::new());
    };
    Ok(m.keys()
        .map(|k| match k {
            Value::String(s) => s.clone(),
            other => show(other),
        })
        .filter(|name| !known.contains(&name.as_str()))
        .collect())
}

/// The known key nearest to `name`, when it is close enough to be what was
/// meant: at most two edits (a letter added, dropped, changed, or two
/// swapped), or a quarter of the longer name's letters.
pub(super) fn nearest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= (name.chars().count().max(k.chars().count()) / 4).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to
/// `b`, case aside.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    // d[i][j]: edits from a[..i] to b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Each warning is logged once per process.
fn warn_once(msg: &str) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen.insert(msg.to_owned()) {
        tracing::warn!("{msg}");
    }
}

/// A value as named in error messages (`"text"`, `a list`, ...).
pub(super) fn show(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// A whole number, also when written as text (`"6379"`).
pub(super) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key_and_strangers_do_not() {
        let known = ["ttl_cleanup_interval", "path", "workers", "max_bytes"];
        assert_eq!(
            nearest("ttl_cleanup_intervall", &known),
            Some("ttl_cleanup_interval")
        );
        assert_eq!(nearest("max_byte", &known), Some("max_bytes"));
        assert_eq!(nearest("pth", &known), Some("path"));
        assert_eq!(nearest("wokrers", &known), Some("workers"));
        assert_eq!(nearest("Workers", &known), Some("workers"));
        assert_eq!(nearest("colour", &known), None);
        assert_eq!(
            nearest("keystroe", &["keystore", "system", "metrics"]),
            Some("keystore")
        );
        assert_eq!(
            nearest("database", &["keystore", "system", "metrics"]),
            None
        );
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }
}
