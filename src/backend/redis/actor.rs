//! [`RedisActor`]: the backend actor for Redis, Redis Cluster and
//! Dragonfly. It owns the connection's life (see the module docs of
//! [`redis`](super)); callers' commands run through [`RedisDirect`].

use std::sync::Arc;
use std::time::Duration;

use actix::WeakAddr;
use actix::prelude::*;
use arc_swap::{ArcSwap, ArcSwapOption};
use redis::RedisError;

use super::cluster::ClusterRouter;
use super::commands;
use super::conn::{Conn, in_runtime};
use super::link::{Link, Liveness};
use super::target::Client;
use super::{RedisDirect, RedisTarget};
use crate::backend::{Deadline, Request, Supervision};
use crate::metrics::Recorder;

/// How often the actor pings the server on its own.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// The cluster connection, opened by the actor on first use.
enum ClusterState {
    Down,
    /// An attempt is under way; requests wait for it here.
    Connecting(Vec<Request>),
    Up,
}

/// The backend actor for Redis, Redis Cluster and Dragonfly.
pub(crate) struct RedisActor {
    /// Shared with the handle through the backend slot; holds the connection.
    direct: Arc<RedisDirect>,
    cluster: ClusterState,
    /// The runtime the actor runs on: the connection's home when there is
    /// no I/O runtime, or once it has shut down.
    engine_rt: tokio::runtime::Handle,
    /// The I/O runtime, while it runs (see `KeystoreBuilder::io_runtime`).
    io: Option<tokio::runtime::Handle>,
    /// Dropped with the actor: ends the watch task on the I/O runtime.
    _io_watch: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The I/O runtime shut down: the connection moves to the engine's runtime.
struct IoRuntimeGone;

impl Message for IoRuntimeGone {
    type Result = ();
}

/// Lives in a task on the I/O runtime; that runtime drops it when it shuts
/// down (before its drivers stop), and the drop takes the connection out of
/// the direct path at once, so new calls go to the actor, and tells the
/// actor, which reopens the connection on the engine's runtime.
struct IoWatch {
    actor: WeakAddr<RedisActor>,
    direct: std::sync::Weak<RedisDirect>,
    engine_rt: tokio::runtime::Handle,
}

impl Drop for IoWatch {
    fn drop(&mut self) {
        if let Some(direct) = self.direct.upgrade() {
            direct.link.rt.store(Arc::new(self.engine_rt.clone()));
            direct.conn.store(None);
        }
        if let Some(actor) = self.actor.upgrade() {
            actor.do_send(IoRuntimeGone);
        }
    }
}

impl RedisActor {
    /// The actor and its direct path (to put in the backend slot). Runs
    /// inside the engine's actix System.
    pub(crate) fn new(
        target: Arc<RedisTarget>,
        io: Option<tokio::runtime::Handle>,
        supervision: Supervision,
        recorder: Recorder,
    ) -> (Self, Arc<RedisDirect>) {
        recorder.backend_up(false);
        let engine_rt = tokio::runtime::Handle::current();
        // The engine's own runtime given as the I/O runtime is no I/O runtime.
        let io = io.filter(|h| h.id() != engine_rt.id());
        let direct = Arc::new(RedisDirect {
            link: Arc::new(Link {
                target,
                up: Liveness::new(recorder),
                rt: ArcSwap::from_pointee(io.clone().unwrap_or_else(|| engine_rt.clone())),
                supervision,
            }),
            conn: ArcSwapOption::empty(),
            combiner: Default::default(),
        });
        let actor = RedisActor {
            direct: direct.clone(),
            cluster: ClusterState::Down,
            engine_rt,
            io,
            _io_watch: None,
        };
        (actor, direct)
    }

    /// Runs `req` on its own task over `conn`.
    fn dispatch(&self, conn: Conn, req: Request) {
        let Some(req) = req.if_wanted(self.direct.link.target.kind.as_str()) else {
            return;
        };
        actix::spawn(req.on_redis(self.direct.clone(), conn));
    }

    /// Starts opening the cluster connection (the state must be `Connecting`).
    fn connect_cluster(&mut self, ctx: &mut Context<Self>) {
        let target = self.direct.link.target.clone();
        let limit = target.connect_timeout * 3;
        let rt = self.direct.link.rt.load_full();
        let fut = async move {
            // Opened on the connection's home runtime, where its node
            // connections then live.
            let open = in_runtime(&rt, async {
                tokio::time::timeout(limit, ClusterRouter::open(target)).await
            });
            match open.await {
                Ok(r) => r,
                Err(_) => Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting to the cluster timed out",
                ))),
            }
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, _ctx| {
            let waiting = match std::mem::replace(&mut act.cluster, ClusterState::Down) {
                ClusterState::Connecting(w) => w,
                _ => Vec::new(),
            };
            match result {
                Ok(conn) => {
                    act.direct.link.up.set(true);
                    act.direct
                        .conn
                        .store(Some(Arc::new(Conn::Cluster(conn.clone()))));
                    act.cluster = ClusterState::Up;
                    for req in waiting {
                        act.dispatch(Conn::Cluster(conn.clone()), req);
                    }
                }
                Err(e) => {
                    act.direct.link.up.set(false);
                    let target = &act.direct.link.target;
                    let err = target.error("connect", &e);
                    tracing::debug!("{err}");
                    for req in waiting {
                        if let Some(req) = req.if_wanted(target.kind.as_str()) {
                            req.fail(err.clone());
                        }
                    }
                }
            }
        }));
    }

    fn health_check(&mut self, ctx: &mut Context<Self>) {
        if let Some(conn) = self.direct.ready() {
            let direct = self.direct.clone();
            let deadline = Deadline::after(HEALTH_EVERY);
            actix::spawn(async move {
                let what = || "ping".to_owned();
                let _ = direct
                    .link
                    .run(conn, deadline, true, what, commands::ping)
                    .await;
            });
        } else if matches!(self.cluster, ClusterState::Down) {
            self.cluster = ClusterState::Connecting(Vec::new());
            self.connect_cluster(ctx);
        }
    }
}

impl Actor for RedisActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(io) = &self.io {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let watch = IoWatch {
                actor: ctx.address().downgrade(),
                direct: Arc::downgrade(&self.direct),
                engine_rt: self.engine_rt.clone(),
            };
            io.spawn(async move {
                let _watch = watch;
                // Ends when the actor drops the sender; a runtime shutting
                // down drops the task (and the watch) instead.
                let _ = rx.await;
            });
            self._io_watch = Some(tx);
        }
        if !self.open_single() {
            ctx.stop();
            return;
        }
        self.health_check(ctx);
        ctx.run_interval(HEALTH_EVERY, |act, ctx| act.health_check(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Calls from now on go to the mailbox, which is closed: the handle
        // answers that the backend stopped, and the caller retries on the
        // generation the supervisor starts next.
        self.direct.conn.store(None);
        // An actor that stops itself (no usable connection) must be replaced:
        // tell the supervisor. After a restart or at shutdown the report is
        // stale or has nobody to reach, and is ignored.
        self.direct
            .link
            .supervision
            .failed("the Redis actor stopped".to_owned());
    }
}

impl RedisActor {
    /// A single server: puts a fresh lazy connection manager, homed on the
    /// connection's runtime, in the direct path. `false` when the client
    /// config is unusable (nothing to serve with).
    fn open_single(&mut self) -> bool {
        let target = &self.direct.link.target;
        let Client::Single(client) = &target.client else {
            return true;
        };
        let rt = self.direct.link.rt.load_full();
        let _home = rt.enter();
        match target.manager(client.clone()) {
            Ok(cm) => {
                self.direct.conn.store(Some(Arc::new(Conn::Single(cm))));
                true
            }
            Err(e) => {
                tracing::error!("{}", target.error("connect", &e));
                false
            }
        }
    }

    /// A single server's connection: the one in the direct path, or a new
    /// one when the I/O runtime took it away. `None` when it cannot be made.
    fn single_conn(&mut self) -> Option<Conn> {
        if self.direct.ready().is_none() && !self.open_single() {
            return None;
        }
        self.direct.ready()
    }
}

impl Handler<IoRuntimeGone> for RedisActor {
    type Result = ();

    fn handle(&mut self, _msg: IoRuntimeGone, ctx: &mut Context<Self>) {
        if self.io.take().is_none() {
            return;
        }
        tracing::warn!(
            "the I/O runtime of the {} keystore shut down; its connection moves to the engine thread",
            self.direct.link.target.kind
        );
        // The watch has already moved `rt` to the engine's runtime and
        // cleared the connection.
        if matches!(self.cluster, ClusterState::Up) && self.direct.ready().is_none() {
            // Reopened on the engine's runtime by the next request or health check.
            self.cluster = ClusterState::Down;
        }
        if matches!(self.direct.link.target.client, Client::Single(_))
            && self.single_conn().is_none()
        {
            ctx.stop();
            return;
        }
        self.health_check(ctx);
    }
}

impl Handler<Request> for RedisActor {
    type Result = ();

    fn handle(&mut self, req: Request, ctx: &mut Context<Self>) {
        if let Some(conn) = self.direct.ready() {
            self.dispatch(conn, req);
            return;
        }
        if matches!(self.direct.link.target.client, Client::Single(_)) {
            // The I/O runtime just shut down: reopen on the engine's runtime.
            match self.single_conn() {
                Some(conn) => self.dispatch(conn, req),
                None => ctx.stop(),
            }
            return;
        }
        // A cluster without a ready connection: it is opening, or down.
        if let ClusterState::Connecting(waiting) = &mut self.cluster {
            waiting.push(req);
            return;
        }
        self.cluster = ClusterState::Connecting(vec![req]);
        self.connect_cluster(ctx);
    }
}
