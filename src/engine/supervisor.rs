//! The supervisor actor: owns the backend actor, starts it from config, and
//! restarts it when it fails; it also owns the janitor.
//!
//! The handle never talks to the supervisor on the request path: it sends
//! straight to the backend through the shared [`BackendSlot`], which the
//! supervisor fills at start and refills on every restart.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::backend::redis::{RedisActor, RedisTarget};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{BackendSlot, BackendTx};
use crate::config::{BackendKind, Config};
use crate::engine::janitor::{Janitor, SweepNow};
use crate::engine::rocks_worker::start_pool;
use crate::error::Result;
use crate::stats::{Event, Recorder};

/// What the supervisor builds a backend from.
pub(crate) enum BackendSpec {
    /// An open RocksDB database, served by a pool of `workers` threads.
    RocksDb {
        store: Arc<RocksStore>,
        workers: usize,
    },
    /// A Redis-protocol server or cluster, served by one async actor.
    Redis {
        target: Arc<RedisTarget>,
        /// Where the socket I/O runs (see `KeystoreBuilder::io_runtime`);
        /// `None`: the engine's runtime.
        io: Option<tokio::runtime::Handle>,
    },
}

pub(crate) struct Supervisor {
    spec: BackendSpec,
    slot: Arc<BackendSlot>,
    /// Bumped on every (re)start; a failure report from an older generation is stale.
    generation: u64,
    recorder: Recorder,
    janitor: Option<Addr<Janitor>>,
    /// Dropping this stops the janitor at once (it may be asleep for minutes).
    _janitor_stop: Option<oneshot::Sender<()>>,
}

impl Supervisor {
    /// Creates the supervisor and its backend and janitor, filling `slot` before
    /// returning so the handle can send at once. Runs inside an actix System.
    pub(crate) fn launch(
        cfg: &Config,
        spec: BackendSpec,
        slot: Arc<BackendSlot>,
        recorder: Recorder,
    ) -> Addr<Supervisor> {
        let interval = cfg.rocksdb.ttl_cleanup_interval;
        Supervisor::create(move |ctx| {
            let mut sup = Supervisor {
                spec,
                slot,
                generation: 0,
                recorder,
                janitor: None,
                _janitor_stop: None,
            };
            sup.start_backend(ctx);
            if matches!(sup.spec, BackendSpec::RocksDb { .. }) {
                let (stop_tx, stop_rx) = oneshot::channel();
                sup.janitor = Some(
                    Janitor::new(sup.slot.clone(), interval, sup.recorder.clone(), stop_rx).start(),
                );
                sup._janitor_stop = Some(stop_tx);
            }
            sup
        })
    }

    fn start_backend(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let me = ctx.address().downgrade();
        let generation = self.generation;
        let tx = match &self.spec {
            BackendSpec::RocksDb { store, workers } => {
                match start_pool(*workers, store.clone(), me, generation) {
                    Ok(tx) => BackendTx::Pool(tx),
                    Err(e) => {
                        // The OS refused threads (resource exhaustion): no backend
                        // until a retry succeeds; callers get errors meanwhile.
                        tracing::error!(
                            "cannot start RocksDB worker threads: {e}; retrying in 1 s"
                        );
                        self.slot.set(None);
                        self.recorder.backend_up(false);
                        ctx.run_later(std::time::Duration::from_secs(1), |act, ctx| {
                            act.start_backend(ctx)
                        });
                        return;
                    }
                }
            }
            BackendSpec::Redis { target, io } => {
                let (actor, direct) = RedisActor::new(
                    target.clone(),
                    io.clone(),
                    me,
                    generation,
                    self.recorder.clone(),
                );
                BackendTx::Redis {
                    actor: actor.start().recipient(),
                    direct,
                }
            }
        };
        self.slot.set(Some((generation, tx)));
        // RocksDB is up once its database is open and its workers run.
        self.recorder.backend_up(true);
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.slot.set(None);
        self.recorder.backend_up(false);
    }
}

/// A backend actor reports that a call panicked or it can no longer serve.
pub(crate) struct BackendFailed {
    pub generation: u64,
    pub reason: String,
}

impl Message for BackendFailed {
    type Result = ();
}

impl Handler<BackendFailed> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: BackendFailed, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return; // already restarted since
        }
        tracing::warn!(
            "restarting the {} backend (generation {}): {}",
            self.backend(),
            self.generation,
            msg.reason
        );
        // The old pool's threads exit once the slot no longer holds their address
        // and their queue is empty: requests already queued are still answered.
        self.start_backend(ctx);
        self.recorder.record(Event::Restart);
    }
}

impl Supervisor {
    fn backend(&self) -> BackendKind {
        match &self.spec {
            BackendSpec::RocksDb { .. } => BackendKind::RocksDb,
            BackendSpec::Redis { target, .. } => target.kind(),
        }
    }
}

/// Sweep expired entries now; answers the number removed.
pub(crate) struct PurgeExpired {
    pub reply: oneshot::Sender<Result<u64>>,
}

impl Message for PurgeExpired {
    type Result = ();
}

impl Handler<PurgeExpired> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: PurgeExpired, _ctx: &mut Context<Self>) {
        match &self.janitor {
            Some(j) => j.do_send(SweepNow { reply: msg.reply }),
            // Servers expire keys themselves.
            None => {
                let _ = msg.reply.send(Ok(0));
            }
        }
    }
}

/// Stop now: the backend slot empties, the janitor and backend stop.
pub(crate) struct Stop;

impl Message for Stop {
    type Result = ();
}

impl Handler<Stop> for Supervisor {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
