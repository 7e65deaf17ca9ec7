//! [`ValueTexts`]: the JSON texts a batch read found, in one buffer.

/// The JSON texts of a batch read, in the order the names were asked: one
/// `String` holding them all and a span per name (`None`: missing or
/// expired). A batch of 100 values costs a few allocations, not 100: on a
/// warm RocksDB read the per-value allocations are as costly as the reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ValueTexts {
    text: String,
    spans: Vec<Option<(usize, usize)>>,
}

impl ValueTexts {
    /// The texts in `buffer` at `spans`; `None` when `buffer` is not UTF-8
    /// (the reader checks every part it appends, so it always is).
    pub(crate) fn from_parts(buffer: Vec<u8>, spans: Vec<Option<(usize, usize)>>) -> Option<Self> {
        Some(ValueTexts {
            text: String::from_utf8(buffer).ok()?,
            spans,
        })
    }

    /// How many names were asked.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// The text found for name `i`; `None` when it was missing or expired
    /// (or `i` is out of range).
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        let (from, to) = (*self.spans.get(i)?)?;
        self.text.get(from..to)
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
}
