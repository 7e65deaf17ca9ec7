//! What travels on the backplane channel: which names changed, and who
//! changed them.
//!
//! A message is a small JSON object, so it can be read with `redis-cli
//! SUBSCRIBE` and published by a program in another language:
//! `{"from":"3f2a…","names":["a","b"]}`, `{"from":"…","prefix":"user:"}` or
//! `{"from":"…","clear":true}`. `from` is the publishing keystore's instance
//! id: an instance skips its own messages (it has already updated its tier).
//! A message without `from` is applied by everyone.

use serde::{Deserialize, Serialize};

/// Which copies to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// These names.
    Names(Vec<String>),
    /// Every name that starts with this.
    Prefix(String),
    /// Everything.
    Clear,
}

/// One invalidation, as sent and received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalidation {
    /// The publishing instance, if it said.
    pub from: Option<String>,
    pub scope: Scope,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    clear: bool,
}

impl Invalidation {
    /// The JSON text published.
    pub(crate) fn encode(&self) -> String {
        let mut wire = Wire {
            from: self.from.clone(),
            names: None,
            prefix: None,
            clear: false,
        };
        match &self.scope {
            Scope::Names(n) => wire.names = Some(n.clone()),
            Scope::Prefix(p) => wire.prefix = Some(p.clone()),
            Scope::Clear => wire.clear = true,
        }
        // A struct of strings and a bool always encodes.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// A received payload; `Err` says why it is not an invalidation.
    pub(crate) fn decode(payload: &[u8]) -> Result<Invalidation, String> {
        let wire: Wire = serde_json::from_slice(payload)
            .map_err(|e| format!("not an invalidation message ({e})"))?;
        let scope = match (wire.names, wire.prefix, wire.clear) {
            (Some(names), None, false) => Scope::Names(names),
            (None, Some(prefix), false) => Scope::Prefix(prefix),
            (None, None, true) => Scope::Clear,
            _ => return Err("expected exactly one of names, prefix or clear".into()),
        };
        Ok(Invalidation {
            from: wire.from,
            scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_what_is_not_one() {
        for scope in [
            Scope::Names(vec!["a".into(), "b\"c".into()]),
            Scope::Prefix("user:".into()),
            Scope::Clear,
        ] {
            let m = Invalidation {
                from: Some("ab".into()),
                scope,
            };
            assert_eq!(Invalidation::decode(m.encode().as_bytes()).unwrap(), m);
        }
        assert_eq!(
            Invalidation::decode(br#"{"names":["x"]}"#).unwrap().from,
            None
        );
        for bad in [
            &b"hello"[..],
            b"{}",
            br#"{"names":["x"],"clear":true}"#,
            b"\xff\xfe",
            br#"{"names":"x"}"#,
        ] {
            assert!(Invalidation::decode(bad).is_err());
        }
    }
}
