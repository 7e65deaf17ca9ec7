//! [`Subject`]: what a call is about, for messages (`get of key "k"`).

use std::sync::Arc;

/// How many names a message lists before it says how many more there are.
const SHOWN_KEYS: usize = 5;

/// What a call is about, kept apart from it for messages (cheap: the
/// names are reference counted, and a batch keeps only the first few).
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    None,
    Key(Arc<str>),
    Keys { first: Vec<Arc<str>>, total: usize },
    Prefix(Arc<str>),
}

impl Subject {
    /// The batch `keys`: the first few named, all counted.
    pub(crate) fn keys<'a>(keys: impl IntoIterator<Item = &'a Arc<str>>) -> Subject {
        let mut first = Vec::new();
        let mut total = 0;
        for k in keys {
            if first.len() < SHOWN_KEYS {
                first.push(k.clone());
            }
            total += 1;
        }
        Subject::Keys { first, total }
    }

    /// `get of key "k"`, `get_many of 3 keys ["a", "b", "c"]`,
    /// `delete_prefix of keys starting with "p:"`, or just `ping`.
    pub(crate) fn describe(&self, verb: &str) -> String {
        match self {
            Subject::None => verb.to_owned(),
            Subject::Key(k) => format!("{verb} of key {k:?}"),
            Subject::Keys { first, total } => {
                let more = total.saturating_sub(first.len());
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("{verb} of {total} keys {first:?}{tail}")
            }
            Subject::Prefix(p) => format!("{verb} of keys starting with {p:?}"),
        }
    }
}
