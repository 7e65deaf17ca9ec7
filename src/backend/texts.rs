//! [`ValueTexts`]: the JSON texts a batch read found, in the order asked.

use std::sync::Arc;

/// The JSON texts of a batch read, in the order the names were asked
/// (`None`: missing or expired). Each backend keeps the form it reads in:
/// RocksDB one `String` holding every text and a span per name (a batch of
/// 100 values costs a few allocations, not 100: on a warm read per-value
/// allocations cost as much as the reads), a Redis `MGET` the texts its
/// reply parser made, a read through the in-process tier its copies'
/// texts (shared, not copied) beside the backend's.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ValueTexts(Form);

#[derive(Debug, PartialEq, Eq)]
enum Form {
    Spans {
        text: String,
        spans: Vec<Option<(usize, usize)>>,
    },
    Each(Vec<Option<String>>),
    Texts(Vec<Option<Text>>),
}

/// One name's text in a read through the in-process tier.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Text {
    /// A tier copy's text (or a stale copy's), shared with the tier.
    Shared(Arc<str>),
    /// The text the backend answered.
    Owned(String),
}

impl Text {
    /// The JSON text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl ValueTexts {
    /// The texts in `buffer` at `spans`; `None` when `buffer` is not UTF-8
    /// (the reader checks every part it appends, so it always is).
    pub(crate) fn from_parts(buffer: Vec<u8>, spans: Vec<Option<(usize, usize)>>) -> Option<Self> {
        Some(ValueTexts(Form::Spans {
            text: String::from_utf8(buffer).ok()?,
            spans,
        }))
    }

    /// One text per name, as a server answered them.
    pub(crate) fn each(texts: Vec<Option<String>>) -> Self {
        ValueTexts(Form::Each(texts))
    }

    /// One text per name, as the tier and the backend found them.
    pub(crate) fn texts(texts: Vec<Option<Text>>) -> Self {
        ValueTexts(Form::Texts(texts))
    }

    /// `n` names, none found.
    pub(crate) fn missing(n: usize) -> Self {
        ValueTexts(Form::Each(vec![None; n]))
    }

    /// How many names were asked.
    pub(crate) fn len(&self) -> usize {
        match &self.0 {
            Form::Spans { spans, .. } => spans.len(),
            Form::Each(texts) => texts.len(),
            Form::Texts(texts) => texts.len(),
        }
    }

    /// The text found for name `i`; `None` when it was missing or expired
    /// (or `i` is out of range).
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        match &self.0 {
            Form::Spans { text, spans } => {
                let (from, to) = (*spans.get(i)?)?;
                text.get(from..to)
            }
            Form::Each(texts) => texts.get(i)?.as_deref(),
            Form::Texts(texts) => texts.get(i)?.as_ref().map(Text::as_str),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_gets_its_own_span_and_bad_spans_answer_none() {
        let texts = ValueTexts::from_parts(
            b"\"a\"[1]\"\xc3\xa9\"".to_vec(),
            vec![
                Some((0, 3)),
                None,
                Some((3, 6)),
                Some((6, 10)),
                Some((7, 8)),
                Some((9, 99)),
            ],
        )
        .expect("UTF-8");
        assert_eq!(texts.len(), 6);
        assert_eq!(texts.get(0), Some("\"a\""));
        assert_eq!(texts.get(1), None);
        assert_eq!(texts.get(2), Some("[1]"));
        assert_eq!(texts.get(3), Some("\"\u{e9}\""));
        // Inside a character, past the end, past the names: no panic.
        assert_eq!(texts.get(4), None);
        assert_eq!(texts.get(5), None);
        assert_eq!(texts.get(6), None);
        assert!(ValueTexts::from_parts(vec![0xff], vec![Some((0, 1))]).is_none());
    }

    #[test]
    fn shared_and_owned_texts_read_alike() {
        let texts = ValueTexts::texts(vec![
            Some(Text::Shared(Arc::from("1"))),
            None,
            Some(Text::Owned("[2]".to_owned())),
        ]);
        assert_eq!(texts.len(), 3);
        assert_eq!(texts.get(0), Some("1"));
        assert_eq!(texts.get(1), None);
        assert_eq!(texts.get(2), Some("[2]"));
        assert_eq!(texts.get(3), None);
    }
}
