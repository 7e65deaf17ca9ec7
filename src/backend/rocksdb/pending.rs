//! [`PendingIndex`]: expiry index entries waiting to be written together.
//!
//! Every write with a TTL adds an index entry to a second database (see the
//! [store's module docs](super::store)). Written with each value, it doubled
//! the work of a SET: two trips through RocksDB's write path (the write
//! group, the log record, its checksum) for one value. The index is only
//! read by sweeps, so its entries can wait: they collect here and go out as
//! one write batch when [`FLUSH_AT`] are waiting or the oldest has waited
//! [`FLUSH_AFTER`] (checked by the next write), before every sweep, and
//! when the store closes.
//!
//! What a process crash (or a failed index write) loses is at most the
//! entries still waiting: their values stay on disk until the compaction
//! filter, which drops every expired envelope it meets, removes them (within
//! about a day; see the store's docs). Their values are never served after
//! expiry: reads check `expires_at` themselves.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Entries that make a batch worth writing at once.
pub(super) const FLUSH_AT: usize = 256;
/// Longest the oldest entry waits while writes keep coming.
pub(super) const FLUSH_AFTER: Duration = Duration::from_millis(200);
/// Entries kept while index writes keep failing; beyond it the oldest are
/// given up to the compaction filter, so memory stays bounded.
const KEEP_AT_MOST: usize = 1 << 16;

/// The waiting entries (see the module docs).
#[derive(Default)]
pub(super) struct PendingIndex {
    state: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    keys: Vec<Vec<u8>>,
    /// When the oldest waiting entry came (`None`: none waits).
    since: Option<Instant>,
}

impl PendingIndex {
    /// Adds `keys`; answers the entries to write now (all that wait) when
    /// they are due, and then none waits any more.
    pub(super) fn add(&self, keys: impl IntoIterator<Item = Vec<u8>>) -> Option<Vec<Vec<u8>>> {
        let mut w = self.state.lock();
        let before = w.keys.len();
        w.keys.extend(keys);
        if w.keys.len() == before {
            return None;
        }
        let since = *w.since.get_or_insert_with(Instant::now);
        let due = w.keys.len() >= FLUSH_AT || (before > 0 && since.elapsed() >= FLUSH_AFTER);
        due.then(|| take(&mut w))
    }

    /// Every waiting entry (none waits after).
    pub(super) fn take(&self) -> Vec<Vec<u8>> {
        take(&mut self.state.lock())
    }

    /// Entries whose write failed or would have stalled: they wait again,
    /// ahead of newer ones. Answers how many were given up (see
    /// [`KEEP_AT_MOST`]).
    pub(super) fn put_back(&self, mut keys: Vec<Vec<u8>>) -> usize {
        let mut w = self.state.lock();
        keys.append(&mut w.keys);
        let over = keys.len().saturating_sub(KEEP_AT_MOST);
        keys.drain(..over);
        w.keys = keys;
        if !w.keys.is_empty() {
            w.since.get_or_insert_with(Instant::now);
        }
        over
    }

    /// How many entries wait.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().keys.len()
    }
}

fn take(w: &mut Waiting) -> Vec<Vec<u8>> {
    w.since = None;
    std::mem::take(&mut w.keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    #[test]
    fn entries_wait_until_a_batch_is_full() {
        let p = PendingIndex::default();
        for i in 0..FLUSH_AT - 1 {
            assert!(p.add([key(i)]).is_none());
        }
        let batch = p.add([key(FLUSH_AT)]).expect("a full batch is due");
        assert_eq!(batch.len(), FLUSH_AT);
        assert_eq!(p.len(), 0);
        assert!(p.add(std::iter::empty()).is_none());
    }

    #[test]
    fn the_next_write_takes_entries_that_waited_too_long() {
        let p = PendingIndex::default();
        assert!(p.add([key(1)]).is_none());
        std::thread::sleep(FLUSH_AFTER + Duration::from_millis(5));
        assert_eq!(p.add([key(2)]), Some(vec![key(1), key(2)]));
        // A fresh wait starts with the next entry.
        assert!(p.add([key(3)]).is_none());
    }

    #[test]
    fn entries_put_back_go_first_and_memory_stays_bounded() {
        let p = PendingIndex::default();
        p.add([key(9)]);
        assert_eq!(p.put_back(vec![key(1), key(2)]), 0);
        assert_eq!(p.take(), vec![key(1), key(2), key(9)]);
        let many: Vec<_> = (0..KEEP_AT_MOST + 10).map(key).collect();
        assert_eq!(p.put_back(many), 10);
        let kept = p.take();
        assert_eq!(kept.len(), KEEP_AT_MOST);
        assert_eq!(kept[0], key(10), "the oldest are given up");
    }
}
