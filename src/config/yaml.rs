//! [`Doc`]: a cursor over the YAML tree of a config file.
//!
//! Keys are pulled out of the tree by hand rather than through serde so that
//! every error names the file and the full key (`keystore.redis.port`), and so
//! that the lenient spellings the Python module's users wrote for PyYAML
//! (`ssl: yes`, `port: "6379"`) keep working under YAML 1.2. This module knows
//! YAML shapes (text, yes/no, ports, counts, seconds) but no config keys; which
//! keys exist is `parse`'s business.

use std::fmt;
use std::time::Duration;

use serde_yaml::Value;

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

    pub(super) fn seconds_at(&self, path: &[&str]) -> Result<Option<Duration>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let secs = match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                match secs {
                    Some(s) if s.is_finite() && (0.0..=1e9).contains(&s) => {
                        Ok(Some(Duration::from_secs_f64(s)))
                    }
                    _ => Err(self.err(
                        path,
                        format!("expected a number of seconds, got {}", show(v)),
                    )),
                }
            }
        }
    }
}

/// Warns about (and records in `out`) each key of the mapping at `at` that is
/// not in `known`.
pub(super) fn warn_unknown(
    doc: &Doc<'_>,
    at: &[&str],
    known: &[&str],
    out: &mut Vec<String>,
) -> Result<()> {
    if let Some(Value::Mapping(m)) = doc.get(at)? {
        for k in m.keys() {
            let name = match k {
                Value::String(s) => s.clone(),
                other => show(other),
            };
            if !known.contains(&name.as_str()) {
                let msg = format!(
                    "{}: {}.{name} is not a known key; ignored (known: {})",
                    doc.origin,
                    at.join("."),
                    known.join(", ")
                );
                tracing::warn!("{msg}");
                out.push(msg);
            }
        }
    }
    Ok(())
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
