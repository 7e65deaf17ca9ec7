//! Group commit of the SETs written on the callers' threads: the SETs of
//! concurrent callers go to RocksDB as one write batch.
//!
//! # Why
//! Every RocksDB write passes once through the write queue and once through
//! the write-ahead log, whatever it holds. Two threads that each write
//! batches of keys store several times the keys per second of two threads
//! that each `put` one key at a time (see BENCHMARKS.md, RocksDB SET). A
//! handle serving many callers on few threads would pay the one-key price
//! for every SET.
//!
//! # How
//! A SET that finds nothing under way writes at once: a single
//! caller waits for nobody. A SET that finds another in-place write under
//! way, or a group already waiting, **joins** the waiting group instead: it
//! queues its key and encoded value and yields once (to the back of its
//! worker's queue), so that the callers that are ready to run on its thread
//! can join too. When it runs again its SET has either been written by
//! another member, which answered it, or it takes the whole group and
//! writes it as one batch itself (see
//! [`RocksStore::write_group`](super::RocksStore::write_group)). Every member
//! that resumes tries to write the group, so the group is written as soon as
//! its first member runs again, and no member waits on one that went away.
//!
//! # What a member is told
//! Each member gets its own answer:
//! - written: `Ok`, once the whole batch is in the log and the memtable;
//! - refused by RocksDB as a write stall (`Incomplete`, nothing of the batch
//!   written), or its key's stripe held by a sweep or delete: `None`, and the
//!   caller's SET goes to the worker pool, which waits, as a SET that would
//!   stall alone does;
//! - failed: the batch's error, named with the member's own key.
//!
//! A member whose caller stopped waiting (its call future dropped) before
//! the group was taken is left out of the batch: a SET nobody waits for is
//! not written later, over a SET that completed since.
//!
//! # Bounds
//! A member waits for nothing but the callers ready on its own thread and
//! one batch write, which never waits (`no_slowdown`), so the group needs no
//! timer of its own. A group holds at most [`GROUP_MAX`] SETs; what is
//! beyond is the next group.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::Result;
use crate::turn::requeue;

/// Most SETs one batch write takes. The members beyond wait for the next
/// batch (written by the first of them to run again).
pub(crate) const GROUP_MAX: usize = 256;

/// What a member of a group is told: `None` sends its SET to the pool.
pub(crate) type Answer = Option<Result<()>>;

/// The waiting group, and whether an in-place write is under way.
#[derive(Default)]
pub(crate) struct WriteGroup {
    /// SETs that joined and were not taken yet, in the order they joined
    /// (two SETs of one key keep that order in the batch).
    queue: Mutex<Vec<Queued>>,
    /// In-place writes under way (single SETs and group batches): while one
    /// is, a new SET joins the group rather than write beside it.
    writing: AtomicUsize,
}

/// One SET waiting in the group.
pub(crate) struct Queued {
    pub(crate) key: Arc<str>,
    /// The encoded envelope.
    pub(crate) value: Vec<u8>,
    /// `format::NEVER` (-1) or the unix second its index entry names.
    pub(crate) expires_at: i64,
    reply: oneshot::Sender<Answer>,
}

impl Queued {
    /// Its caller stopped waiting: leave it out of the batch.
    pub(crate) fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    /// Tells its caller how its SET went.
    pub(crate) fn answer(self, answer: Answer) {
        // A caller that stopped waiting meanwhile needs no answer.
        let _ = self.reply.send(answer);
    }
}

/// A SET's way in: write now, or wait in the group.
pub(crate) enum Entry<'g> {
    /// Nothing under way: write at once, counted as under way until the
    /// guard drops.
    Alone(Writing<'g>),
    /// Joined the waiting group.
    Joined(Member),
}

/// An in-place write under way; dropping it ends it.
pub(crate) struct Writing<'g>(&'g AtomicUsize);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl WriteGroup {
    /// Joins the waiting group when there is one or another write is under
    /// way (the entry built by `queued` only then, outside the group's
    /// lock); else the caller writes alone.
    pub(crate) fn enter(&self, queued: impl FnOnce() -> (Arc<str>, Vec<u8>, i64)) -> Entry<'_> {
        if self.queue.lock().is_empty() && self.writing.load(Ordering::Acquire) == 0 {
            return Entry::Alone(self.start());
        }
        let (key, value, expires_at) = queued();
        let (reply, rx) = oneshot::channel();
        // The group may have been taken meanwhile: this SET then starts the
        // next one, which its member writes when it runs again.
        self.queue.lock().push(Queued {
            key,
            value,
            expires_at,
            reply,
        });
        Entry::Joined(Member { rx })
    }

    /// Takes the waiting group (at most [`GROUP_MAX`] SETs, the earliest),
    /// counted as a write under way until the guard drops; `None` when no
    /// SET waits.
    pub(crate) fn take(&self) -> Option<(Vec<Queued>, Writing<'_>)> {
        let mut queue = self.queue.lock();
        if queue.is_empty() {
            return None;
        }
        let taken = if queue.len() <= GROUP_MAX {
            std::mem::take(&mut *queue)
        } else {
            queue.drain(..GROUP_MAX).collect()
        };
        // Counted before the lock is let go: a SET arriving now joins the
        // next group instead of writing beside this one.
        let writing = self.start();
        drop(queue);
        Some((taken, writing))
    }

    fn start(&self) -> Writing<'_> {
        self.writing.fetch_add(1, Ordering::AcqRel);
        Writing(&self.writing)
    }
}

/// A SET waiting in a group, until it is answered.
pub(crate) struct Member {
    rx: oneshot::Receiver<Answer>,
}

impl Member {
    /// Lets the callers ready on this thread join (a [`requeue`]: the
    /// member runs again after the tasks queued before it), then answers
    /// this SET: written by another member meanwhile, or by `write_group`
    /// (which writes whatever group waits now, this SET's included unless
    /// another member took it). `None` sends the SET to the pool, also when
    /// the member that took it panicked before answering.
    pub(crate) async fn answer(mut self, write_group: impl FnOnce()) -> Answer {
        requeue().await;
        if let Ok(answer) = self.rx.try_recv() {
            return answer;
        }
        write_group();
        self.rx.await.unwrap_or(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(key: &str) -> impl FnOnce() -> (Arc<str>, Vec<u8>, i64) {
        let key: Arc<str> = key.into();
        move || (key, Vec::new(), -1)
    }

    #[test]
    fn a_set_alone_writes_at_once_and_one_beside_a_write_joins() {
        let g = WriteGroup::default();
        let Entry::Alone(w) = g.enter(queued("a")) else {
            panic!("nothing was under way")
        };
        // Another write under way: the next SET joins, and so does the one
        // after it, even once that write is over.
        let Entry::Joined(_b) = g.enter(queued("b")) else {
            panic!("a write was under way")
        };
        drop(w);
        let Entry::Joined(_c) = g.enter(queued("c")) else {
            panic!("a group was waiting")
        };
        let (taken, w) = g.take().expect("a group waits");
        let keys: Vec<&str> = taken.iter().map(|q| &*q.key).collect();
        assert_eq!(keys, ["b", "c"]);
        assert!(g.take().is_none(), "the group was taken whole");
        // Its write is under way: a new SET joins the next group.
        assert!(matches!(g.enter(queued("d")), Entry::Joined(_)));
        drop(w);
    }

    #[test]
    fn a_group_is_taken_at_most_group_max_at_a_time_in_order() {
        let g = WriteGroup::default();
        let _w = g.start();
        let members: Vec<_> = (0..GROUP_MAX + 3)
            .map(|i| g.enter(queued(&i.to_string())))
            .collect();
        let (first, _) = g.take().unwrap();
        assert_eq!(first.len(), GROUP_MAX);
        assert_eq!(&*first[0].key, "0");
        let (rest, _) = g.take().unwrap();
        let keys: Vec<&str> = rest.iter().map(|q| &*q.key).collect();
        let expected: Vec<String> = (GROUP_MAX..GROUP_MAX + 3).map(|i| i.to_string()).collect();
        assert_eq!(keys, expected);
        drop(members);
    }

    #[test]
    fn a_member_whose_caller_left_is_abandoned() {
        let g = WriteGroup::default();
        let _w = g.start();
        let kept = g.enter(queued("kept"));
        let left = g.enter(queued("left"));
        drop(left);
        let (taken, _) = g.take().unwrap();
        let abandoned: Vec<(&str, bool)> = taken.iter().map(|q| (&*q.key, q.abandoned())).collect();
        assert_eq!(abandoned, [("kept", false), ("left", true)]);
        drop(kept);
    }
}
