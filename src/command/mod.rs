//! The commands: what each keystore operation is, how each backend applies
//! it, and what it changes in the in-process tier, one file per command
//! (the model is mini-redis's `src/cmd/`).
//!
//! A command is a type implementing [`Command`]. Its answer has its own
//! type ([`Command::Answer`]), so no backend can answer it with the answer
//! of another, and every step a backend or the tier needs is a method of
//! the trait with no catch-all: a new command that forgets one does not
//! compile. The steps:
//! - [`Command::disabled`]: the answer of a disabled keystore
//!   (`keystore.enabled: false`, the no-op engine);
//! - [`Command::in_place`]: what RocksDB can do on the caller's thread
//!   without waiting (memtables and block cache for reads, `no_slowdown`
//!   for writes); anything else goes to the pool;
//! - [`Command::on_rocks`]: the call on a RocksDB pool worker;
//! - [`Command::on_redis`]: the call over a Redis-protocol connection
//!   (Redis, Cluster, Dragonfly), through [`over_redis`] or the direct
//!   path's combining GET and SET;
//! - [`Command::touch`]: what a write changes in the tier (a read: nothing).
//!
//! [`Call`] is what `Engine::call` takes: every command, and the reads
//! that lend what memory holds to the caller's decoder ([`get::Read`],
//! [`get_many::ReadMany`], [`entries::ReadEntry`]) so a warm RocksDB read
//! copies nothing; each of those names the command it sends when memory
//! cannot answer, and is a [`TierRead`]: with the in-process tier on, the
//! engine answers it from the tier's copies first (`engine/tiered.rs`).
//!
//! [`Job`] carries a command to a backend actor with its reply channel, its
//! type erased (the backends run [`Work`], never a named command).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::backend::redis::commands::Answer;
use crate::backend::redis::{Conn, RedisDirect};
use crate::backend::rocksdb::RocksStore;
use crate::backend::rocksdb::group::Member;
use crate::backend::{Deadline, OnPanic, Subject, Text, Work};
use crate::error::Result;
use crate::tier::{Tier, Touch};

pub(crate) mod delete;
pub(crate) mod delete_many;
pub(crate) mod delete_prefix;
pub(crate) mod entries;
#[cfg(feature = "fault-injection")]
pub(crate) mod fault;
pub(crate) mod get;
pub(crate) mod get_many;
pub(crate) mod lock;
pub(crate) mod ping;
pub(crate) mod publish;
pub(crate) mod set;
pub(crate) mod set_many;
pub(crate) mod sweep;
pub(crate) mod ttl;

pub(crate) use delete::Delete;
pub(crate) use delete_many::DeleteMany;
pub(crate) use delete_prefix::DeletePrefix;
pub(crate) use entries::{Entries, Found, ReadEntry};
pub(crate) use get::{Get, Read};
pub(crate) use get_many::ReadMany;
pub(crate) use lock::{Lock, Unlock};
pub(crate) use ping::Ping;
pub(crate) use publish::Publish;
pub(crate) use set::Set;
pub(crate) use set_many::SetMany;
pub(crate) use sweep::Sweep;
pub(crate) use ttl::TtlOf;

/// One keystore operation as the engine runs it on any backend (see the
/// module docs).
pub(crate) trait Command: Send + Sync + 'static {
    /// What it answers.
    type Answer: Send + 'static;

    /// The operation's name in messages (`get`, `delete_prefix`).
    fn verb(&self) -> &'static str;

    /// What it is about, for messages.
    fn subject(&self) -> Subject;

    /// `get of key "k"`, for messages.
    fn describe(&self) -> String {
        self.subject().describe(self.verb())
    }

    /// A caller's call, not the janitor's (the janitor rests between sweep
    /// batches only while callers use the store).
    fn foreground(&self) -> bool {
        true
    }

    /// The answer of a disabled keystore (`keystore.enabled: false`).
    fn disabled(&self) -> Result<Self::Answer>;

    /// RocksDB on the caller's thread, when that needs no wait (see
    /// `engine/in_place.rs`); [`InPlace::Elsewhere`] sends it to the pool.
    fn in_place(&self, _store: &Arc<RocksStore>) -> InPlace<Self::Answer> {
        InPlace::Elsewhere
    }

    /// RocksDB, on a pool worker (where a call may block).
    fn on_rocks(&self, store: &RocksStore) -> Result<Self::Answer>;

    /// A Redis-protocol server (Redis, Cluster, Dragonfly), over `conn`.
    fn on_redis(
        &self,
        direct: &RedisDirect,
        conn: Conn,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Self::Answer>> + Send;

    /// What it changes in the in-process tier, taken before it is sent
    /// (the tickets of the names it writes); `None` for a read.
    fn touch(&self, tier: &Tier) -> Option<Touch>;
}

/// How a command started on the caller's thread (RocksDB).
pub(crate) enum InPlace<A> {
    /// Answered.
    Answered(Result<A>),
    /// A SET waiting in a group of concurrent SETs written as one batch
    /// (see `backend/rocksdb/group.rs`); `done` is its answer once written.
    Joined {
        store: Arc<RocksStore>,
        member: Member,
        done: fn() -> A,
    },
    /// To send the normal way.
    Elsewhere,
}

impl<A> InPlace<A> {
    /// `Answered`, or `Elsewhere` when memory or a free write could not
    /// answer (`None`).
    pub(crate) fn answered(answer: Option<Result<A>>) -> Self {
        match answer {
            Some(answer) => InPlace::Answered(answer),
            None => InPlace::Elsewhere,
        }
    }
}

/// What `Engine::call` runs: a [`Command`], or a read that lends what
/// memory holds to the caller before it would build one.
pub(crate) trait Call: Sized {
    /// What the caller gets.
    type Answer;
    /// The command sent when the call is not answered in place.
    type Command: Command;
    /// The call as a read through the in-process tier ([`NotTiered`] for
    /// a command: the reads the tier itself sends, and every write).
    type Tiered: TierRead<Answer = Self::Answer>;

    /// The call as a read the tier answers first (`Ok`), or itself
    /// (`Err`), for the engine to run past the tier.
    fn through_tier(self) -> std::result::Result<Self::Tiered, Self>;

    /// See [`Command::in_place`].
    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<Self::Answer>;

    /// See [`Command::touch`].
    fn touch(&self, tier: &Tier) -> Option<Touch>;

    /// The command to send, and how its answer becomes the caller's.
    fn into_command(
        self,
    ) -> (
        Self::Command,
        impl FnOnce(Sent<Self>) -> Result<Self::Answer>,
    );
}

/// The answer of the command a [`Call`] sends.
pub(crate) type Sent<K> = <<K as Call>::Command as Command>::Answer;

impl<C: Command> Call for C {
    type Answer = C::Answer;
    type Command = C;
    type Tiered = NotTiered<C::Answer>;

    fn through_tier(self) -> std::result::Result<NotTiered<C::Answer>, C> {
        Err(self)
    }

    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<C::Answer> {
        Command::in_place(self, store)
    }

    fn touch(&self, tier: &Tier) -> Option<Touch> {
        Command::touch(self, tier)
    }

    fn into_command(self) -> (C, impl FnOnce(C::Answer) -> Result<C::Answer>) {
        (self, Ok)
    }
}

/// A read of values that the in-process tier answers first, when the
/// keystore has one: the engine looks up each name's fresh copy, asks the
/// backend ([`Entries`]) for the rest and fills the tier with them, or
/// answers stale copies when the backend fails (`engine/tiered.rs`).
pub(crate) trait TierRead {
    /// What the caller gets.
    type Answer;

    /// How many names are read.
    fn count(&self) -> usize;

    /// The `i`th name read (`i < count()`), in the order the answer wants
    /// them. Asked one at a time so a read of one name allocates no list
    /// of names on its way through the tier.
    fn name(&self, i: usize) -> &str;

    /// The answer from what was found for each [`name`](Self::name)
    /// (`None`: missing or expired).
    fn answer(self, found: Vec<Option<Remembered>>) -> Result<Self::Answer>;
}

/// What a read through the tier found for one name.
pub(crate) struct Remembered {
    /// The JSON text: the tier's copy, or the backend's answer.
    pub text: Text,
    /// When the backend's value expires, on the keystore's clock (inner
    /// `None`: never); `None` when unknown (a stale copy).
    pub expires_at: Option<Option<Duration>>,
}

/// The [`TierRead`] of a call that is not one: no value of it exists, so
/// the engine's tier step for it cannot run.
pub(crate) struct NotTiered<A>(Infallible, PhantomData<fn() -> A>);

impl<A> TierRead for NotTiered<A> {
    type Answer = A;

    fn count(&self) -> usize {
        match self.0 {}
    }

    fn name(&self, _i: usize) -> &str {
        match self.0 {}
    }

    fn answer(self, _found: Vec<Option<Remembered>>) -> Result<A> {
        match self.0 {}
    }
}

/// A command on its way to a backend actor, with the caller's reply channel.
pub(crate) struct Job<C: Command> {
    pub command: C,
    pub reply: oneshot::Sender<Result<C::Answer>>,
}

impl<C: Command> Work for Job<C> {
    fn describe(&self) -> String {
        self.command.describe()
    }

    fn caller_gone(&self) -> bool {
        self.reply.is_closed()
    }

    fn foreground(&self) -> bool {
        self.command.foreground()
    }

    fn fail(self: Box<Self>, e: crate::error::KeystoreError) {
        let _ = self.reply.send(Err(e));
    }

    fn on_rocks(
        self: Box<Self>,
        store: &RocksStore,
        permit: Option<OwnedSemaphorePermit>,
        on_panic: OnPanic<'_>,
    ) {
        let answer = catch_unwind(AssertUnwindSafe(|| self.command.on_rocks(store)))
            .unwrap_or_else(|payload| Err(on_panic(payload.as_ref(), &self.command.describe())));
        // Freed before the answer: a caller that reads `Stats::in_flight`
        // right after its answer sees its slot freed.
        drop(permit);
        let _ = self.reply.send(answer);
    }

    fn on_redis(
        self: Box<Self>,
        direct: Arc<RedisDirect>,
        conn: Conn,
        deadline: Deadline,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let answer = self.command.on_redis(&direct, conn, deadline).await;
            drop(permit);
            let _ = self.reply.send(answer);
        })
    }
}

/// Runs `op` for `command` over a Redis-protocol connection (see
/// `Link::run`: within the deadline, a panic caught, retried once on a
/// dropped connection when `retry_safe`), naming the command in errors.
pub(crate) async fn over_redis<C, T, F, Fut>(
    command: &C,
    direct: &RedisDirect,
    conn: Conn,
    deadline: Deadline,
    retry_safe: bool,
    op: F,
) -> Result<T>
where
    C: Command,
    F: Fn(Conn) -> Fut,
    Fut: Future<Output = Answer<T>>,
{
    let what = || command.describe();
    direct
        .link()
        .run(conn, deadline, retry_safe, what, op)
        .await
}

/// The retry-safe flag of [`over_redis`] for a command that only reads.
pub(crate) const READS: bool = true;
/// The retry-safe flag for a command that writes: never sent twice.
pub(crate) const WRITES: bool = false;
