//! The supervisor actor: owns the backend actor, starts it from config, and
//! restarts it when it fails; it also owns the janitor.
//!
//! The handle never talks to the supervisor on the request path: it sends
//! straight to the backend through the shared [`CurrentBackend`], which the
//! supervisor fills at start and refills on every restart. Backends report
//! failures with [`BackendFailed`] through their [`Supervision`]; a
//! generation that fails again within [`RESTART_PAUSE`] of the last restart
//! is restarted after that pause, so a backend that cannot start does not
//! spin the engine thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::janitor::{Janitor, SweepNow};
use crate::backend::redis::{Backplane, Invalidations, RedisActor, RedisTarget};
use crate::backend::rocksdb::{RocksStore, start_pool};
use crate::backend::{BackendFailed, BackendTx, CurrentBackend, Supervision};
use crate::config::BackendKind;
use crate::error::Result;
use crate::metrics::{Event, Recorder};

/// The least time between two restarts of the backend.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

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
        /// With the in-process tier and its backplane on: the channel, and
        /// the tier that drops what other instances publish.
        backplane: Option<(String, Arc<dyn Invalidations>)>,
    },
}

pub(crate) struct Supervisor {
    spec: BackendSpec,
    current: Arc<CurrentBackend>,
    /// Bumped on every (re)start; a failure report from an older generation is stale.
    generation: u64,
    recorder: Recorder,
    /// When the backend was last restarted (see [`RESTART_PAUSE`]).
    last_restart: Option<Instant>,
    /// A restart is scheduled (see [`RESTART_PAUSE`]).
    restart_pending: bool,
    janitor: Option<Addr<Janitor>>,
    /// Dropping this stops the janitor at once (it may be asleep for minutes).
    _janitor_stop: Option<oneshot::Sender<()>>,
    /// Dropping this stops the backplane (it outlives backend restarts: its
    /// subscription is a connection of its own).
    _backplane_stop: Option<oneshot::Sender<()>>,
}

impl Supervisor {
    /// Creates the supervisor and its backend and janitor, filling `current` before
    /// returning so the handle can send at once. Runs inside an actix System.
    pub(crate) fn launch(
        sweep_interval: Duration,
        spec: BackendSpec,
        current: Arc<CurrentBackend>,
        recorder: Recorder,
    ) -> Addr<Supervisor> {
        Supervisor::create(move |ctx| {
            let mut sup = Supervisor {
                spec,
                current,
                generation: 0,
                recorder,
                last_restart: None,
                restart_pending: false,
                janitor: None,
                _janitor_stop: None,
                _backplane_stop: None,
            };
            sup.start_backend(ctx);
            if let BackendSpec::Redis {
                target,
                backplane: Some((channel, tier)),
                ..
            } = &sup.spec
            {
                let (backplane, stop) =
                    Backplane::new(target.clone(), channel.clone(), tier.clone());
                backplane.start();
                sup._backplane_stop = Some(stop);
            }
            if matches!(sup.spec, BackendSpec::RocksDb { .. }) {
                let (stop_tx, stop_rx) = oneshot::channel();
                sup.janitor = Some(
                    Janitor::new(
                        sup.current.clone(),
                        sweep_interval,
                        sup.recorder.clone(),
                        stop_rx,
                    )
                    .start(),
                );
                sup._janitor_stop = Some(stop_tx);
            }
            sup
        })
    }

    fn start_backend(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let supervision = Supervision {
            sink: ctx.address().downgrade().recipient(),
            generation,
        };
        let tx = match &self.spec {
            BackendSpec::RocksDb { store, workers } => {
                match start_pool(*workers, store.clone(), supervision) {
                    Ok(tx) => BackendTx::Pool(tx),
                    Err(e) => {
                        // The OS refused threads (resource exhaustion): no backend
                        // until a retry succeeds; callers get errors meanwhile.
                        tracing::error!(
                            "cannot start RocksDB worker threads: {e}; retrying in 1 s"
                        );
                        self.current.set(None);
                        self.recorder.backend_up(false);
                        ctx.run_later(std::time::Duration::from_secs(1), |act, ctx| {
                            act.start_backend(ctx)
                        });
                        return;
                    }
                }
            }
            BackendSpec::Redis { target, io, .. } => {
                let (actor, direct) = RedisActor::new(
                    target.clone(),
                    io.clone(),
                    supervision,
                    self.recorder.clone(),
                );
                BackendTx::Redis {
                    actor: actor.start().recipient(),
                    direct,
                }
            }
        };
        self.current.set(Some((generation, tx)));
        // RocksDB is up once its database is open and its workers run.
        self.recorder.backend_up(true);
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.current.set(None);
        self.recorder.backend_up(false);
    }
}

impl Handler<BackendFailed> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: BackendFailed, ctx: &mut Context<Self>) {
        if msg.generation != self.generation || self.restart_pending {
            return; // already restarted since, or about to be
        }
        tracing::warn!(
            "restarting the {} backend (generation {}): {}",
            self.backend(),
            self.generation,
            msg.reason
        );
        // The old pool's threads exit once their address has left the current backend
        // and their queue is empty: requests already queued are still answered.
        let pause = self.last_restart.map_or(Duration::ZERO, |t| {
            RESTART_PAUSE.saturating_sub(t.elapsed())
        });
        self.last_restart = Some(Instant::now() + pause);
        self.recorder.record(Event::Restart);
        if pause.is_zero() {
            self.start_backend(ctx);
        } else {
            // Failing again at once: the failed generation stays in the current backend
            // meanwhile (calls fail fast, asking to retry) and its further
            // reports are ignored.
            self.restart_pending = true;
            ctx.run_later(pause, |act, ctx| {
                act.restart_pending = false;
                act.start_backend(ctx);
            });
        }
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

/// Stop now: the current backend empties, the janitor and backend stop.
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
