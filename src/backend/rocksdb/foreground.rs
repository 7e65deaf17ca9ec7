//! [`Foreground`]: whether callers used the store since the janitor's last
//! sweep batch, so a sweep rests only when it has someone to make room for.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by every foreground call on the store, taken by every sweep batch.
///
/// Aligned to its own cache line: callers on every core read it on every
/// call, so it must not share a line with anything written often.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Foreground(AtomicBool);

impl Foreground {
    /// Notes a foreground call. The flag is written only when it was clear,
    /// once per sweep batch at most: the hot path reads a line that every
    /// core keeps, instead of writing one that they would pass around.
    #[inline]
    pub(crate) fn note(&self) {
        if !self.0.load(Ordering::Relaxed) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a call was noted since the last `take` (or since the store
    /// opened); clears the flag.
    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::Foreground;

    #[test]
    fn a_take_answers_whether_a_call_was_noted_since_the_last_one() {
        let fg = Foreground::default();
        assert!(!fg.take(), "nothing noted yet");
        fg.note();
        fg.note();
        assert!(fg.take(), "two calls noted");
        assert!(!fg.take(), "the take cleared them");
        fg.note();
        assert!(fg.take());
    }
}
