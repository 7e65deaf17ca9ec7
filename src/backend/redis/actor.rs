//! The Redis-protocol backend (Redis, Redis Cluster and DragonflyDB): an async
//! actor that owns one shared multiplexed connection, and [`RedisDirect`],
//! the part of it the handle calls without a trip through the mailbox.
//!
//! The actor owns the connection's life: it opens it, pings it, reports
//! `backend up`, and is restarted by the supervisor when a call panics. Once
//! a connection is ready it publishes it in its [`RedisDirect`], and the
//! handle runs GET/SET/DEL on the caller's own task over it: the command is
//! encoded and the reply decoded on the caller's thread, and only the socket
//! I/O runs where the connection's driver task lives: the engine's runtime,
//! or the runtime given to `KeystoreBuilder::io_runtime` (the callers' own,
//! so replies wake callers without crossing threads). Going through the
//! mailbox instead cost two more thread hops and a task per request, on the
//! one engine thread. Requests that arrive before a connection is ready (a
//! cluster still opening) go through the mailbox and wait in the actor.
//! Either way the command is pipelined over the same socket while earlier
//! ones wait for their replies.
//!
//! Connections are lazy and self-healing:
//! - a single server is reached through redis-rs's `ConnectionManager`, which
//!   connects on first use and reconnects in the background after an I/O
//!   error. It makes one connection attempt per failure (no retry loop), so
//!   while the server is down requests fail fast with the connect error
//!   instead of waiting out a backoff;
//! - a cluster connection is opened by the actor on first use (and again
//!   after a failed attempt); once open, redis-rs's cluster client follows
//!   slot moves and reconnects to nodes itself.
//!
//! A health ping every second keeps `backend up` current and makes the
//! connection recover even when no caller is sending.
//!
//! Values are the JSON text as is (`SET name json EX ttl`), so services that
//! use redis-py with `json.dumps` + `setex` read and write the same keys.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::WeakAddr;
use actix::prelude::*;
use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::FutureExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError, TlsCertificates};

use crate::backend::{Command, Reply, Request, panic_text};
use crate::config::{BackendKind, RedisConfig};
use crate::engine::supervisor::{BackendFailed, Supervisor};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::stats::Recorder;

/// How often the actor pings the server on its own.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// Everything needed to reach one server or cluster, checked and built once
/// (a CA file that cannot be read is a config error at startup, not at the
/// first request).
pub(crate) struct RedisTarget {
    /// `redis` or `dragonfly`: names the config section and the messages.
    kind: BackendKind,
    /// `127.0.0.1:6379`, or the seed nodes of a cluster, for messages.
    address: String,
    client: Client,
    /// How long a connection attempt (TCP and TLS handshake) may take.
    connect_timeout: Duration,
    /// How long a command may wait for its reply (the request timeout).
    response_timeout: Duration,
    tls: bool,
}

// One per engine, built once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

impl RedisTarget {
    /// Checks `cfg` (the `keystore.<kind>` section) and builds the client.
    pub(crate) fn new(
        kind: BackendKind,
        cfg: &RedisConfig,
        request_timeout: Duration,
    ) -> Result<RedisTarget> {
        let section = format!("keystore.{kind}");
        let certs = match (&cfg.ca_file, cfg.ssl) {
            (Some(path), true) => {
                let pem = std::fs::read(path).map_err(|e| {
                    KeystoreError::new(
                        ErrorKind::Config,
                        format!(
                            "cannot read the CA file {} ({section}.ca_file); \
                             point it at a PEM file of CA certificates",
                            path.display()
                        ),
                    )
                    .with_source(e)
                })?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(KeystoreError::new(
                        ErrorKind::Config,
                        format!(
                            "the CA file {} ({section}.ca_file) holds no PEM certificate \
                             (no -----BEGIN CERTIFICATE----- line)",
                            path.display()
                        ),
                    ));
                }
                Some(pem)
            }
            (Some(path), false) => {
                tracing::warn!(
                    "{section}.ca_file ({}) is ignored because {section}.ssl is false",
                    path.display()
                );
                None
            }
            (None, _) => None,
        };
        let mut settings = RedisConnectionInfo::default();
        if let Some(u) = &cfg.user {
            settings = settings.set_username(u);
        }
        if let Some(p) = &cfg.password {
            settings = settings.set_password(p.expose());
        }
        let bad_client = |e: RedisError| {
            KeystoreError::new(
                ErrorKind::Config,
                format!("cannot set up the {kind} client from {section}"),
            )
            .with_source(e)
        };
        let (client, address) = if cfg.nodes.is_empty() {
            let addr = if cfg.ssl {
                ConnectionAddr::TcpTls {
                    host: cfg.ip.clone(),
                    port: cfg.port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(cfg.ip.clone(), cfg.port)
            };
            let info = addr
                .into_connection_info()
                .map_err(bad_client)?
                .set_redis_settings(settings);
            let client = match certs {
                Some(pem) => redis::Client::build_with_tls(
                    info,
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                ),
                None => redis::Client::open(info),
            }
            .map_err(bad_client)?;
            (Client::Single(client), cfg.address())
        } else {
            let nodes: Vec<(String, u16)> =
                cfg.nodes.iter().map(|n| (n.host.clone(), n.port)).collect();
            let mut b = ClusterClientBuilder::new(nodes)
                .connection_timeout(cfg.connect_timeout)
                .response_timeout(request_timeout)
                .retries(2);
            if let Some(u) = &cfg.user {
                b = b.username(u);
            }
            if let Some(p) = &cfg.password {
                b = b.password(p.expose());
            }
            if cfg.ssl {
                b = b.tls(redis::TlsMode::Secure);
                if let Some(pem) = certs {
                    b = b.certs(TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    });
                }
            }
            let address = format!(
                "cluster {}",
                cfg.nodes
                    .iter()
                    .map(|n| format!("{}:{}", n.host, n.port))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            (Client::Cluster(b.build().map_err(bad_client)?), address)
        };
        Ok(RedisTarget {
            kind,
            address,
            client,
            connect_timeout: cfg.connect_timeout,
            response_timeout: request_timeout,
            tls: cfg.ssl,
        })
    }

    /// `redis` or `dragonfly`.
    pub(crate) fn kind(&self) -> BackendKind {
        self.kind
    }

    /// `Redis` or `Dragonfly`, to start messages with.
    fn label(&self) -> &'static str {
        match self.kind {
            BackendKind::Dragonfly => "Dragonfly",
            _ => "Redis",
        }
    }

    /// A [`KeystoreError`] for `err`, met while doing `what`.
    fn error(&self, what: &str, err: &RedisError) -> KeystoreError {
        let section = format!("keystore.{}", self.kind);
        let text = err.to_string();
        let lower = text.to_ascii_lowercase();
        if err.kind() == redis::ErrorKind::AuthenticationFailed
            || err
                .code()
                .is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH")
            || lower.contains("wrongpass")
            || lower.contains("noauth")
        {
            return KeystoreError::new(
                ErrorKind::Auth,
                format!(
                    "{} authentication failed: {}: the server refused the credentials; \
                     check {section}.user and {section}.password",
                    self.label(),
                    self.address
                ),
            )
            .with_source(text);
        }
        if self.tls
            && (lower.contains("certificate")
                || lower.contains("tls")
                || lower.contains("handshake")
                || lower.contains("unknownissuer"))
        {
            return KeystoreError::new(
                ErrorKind::Tls,
                format!(
                    "{} TLS handshake failed: {}: the server's certificate was not accepted; \
                     check {section}.ca_file (the CA that signed the server's certificate) \
                     and that the certificate names the host you connect to",
                    self.label(),
                    self.address
                ),
            )
            .with_source(text);
        }
        if err.is_timeout() {
            return KeystoreError::new(
                ErrorKind::Timeout,
                format!(
                    "{what} on {} timed out: {} did not answer in time",
                    self.kind, self.address
                ),
            );
        }
        if err.is_connection_refusal() {
            return KeystoreError::new(
                ErrorKind::Connection,
                format!(
                    "{} connection failed: {}: Connection refused; is the server running, \
                     and are {section}.ip and {section}.port right?",
                    self.label(),
                    self.address
                ),
            );
        }
        if err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error() {
            return KeystoreError::new(
                ErrorKind::Connection,
                format!(
                    "{} connection failed: {}: {}",
                    self.label(),
                    self.address,
                    io_text(&text)
                ),
            );
        }
        KeystoreError::new(
            ErrorKind::Backend,
            format!("{what} on {} ({}) failed", self.kind, self.address),
        )
        .with_source(text)
    }
}

/// The OS error text without the `(os error N)` suffix noise kept by `io::Error`.
fn io_text(text: &str) -> &str {
    text.split(" (os error").next().unwrap_or(text)
}

/// The connection the commands go through; cloning it is cheap.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The part of a Redis backend generation the handle calls directly: the
/// connection (once the actor has one ready) and what a call needs around it.
/// One per actor; the supervisor puts it in the backend slot beside the
/// actor's mailbox, so a restart replaces both at once.
pub(crate) struct RedisDirect {
    target: Arc<RedisTarget>,
    /// Whether the last command or ping reached the server.
    up: Arc<Liveness>,
    /// Filled by the actor: at start for a single server (the manager is
    /// lazy and reconnects itself), once opened for a cluster.
    conn: ArcSwapOption<Conn>,
    /// Where the connection lives: the I/O runtime, or the engine's. redis-rs
    /// spawns its driver and reconnects and arms reply timers on whatever
    /// runtime is current, so every poll of a call enters this one, whichever
    /// executor drives the caller. Swapped to the engine's runtime if the
    /// I/O runtime shuts down first.
    rt: ArcSwap<tokio::runtime::Handle>,
    /// Told when a call panics, so it restarts this generation.
    supervisor: WeakAddr<Supervisor>,
    generation: u64,
}

impl RedisDirect {
    /// The connection to send on, when the actor has one ready.
    pub(crate) fn ready(&self) -> Option<Conn> {
        self.conn.load().as_deref().cloned()
    }

    /// Runs `command` over `conn` on the calling task (see the module docs).
    /// A panic inside is caught, answered as [`ErrorKind::Panic`] and
    /// reported to the supervisor, which restarts the backend.
    pub(crate) async fn call(
        &self,
        conn: Conn,
        command: Command,
        deadline: Instant,
    ) -> Option<Result<Reply>> {
        let describe = || command.describe();
        let rt = self.rt.load_full();
        // The deadline's timer is created inside the connection's runtime
        // too: with an I/O runtime that is the caller's own, whose timer
        // wheel is sharded per worker, rather than the engine thread's one.
        // (A timer of a runtime that shut down mid-call panics: caught too.)
        let run = AssertUnwindSafe(in_runtime(&rt, async {
            let run = execute(&self.target, conn, &command, deadline, &self.up);
            tokio::time::timeout_at(deadline.into(), run).await
        }));
        let outcome = match run.catch_unwind().await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_elapsed)) => return None,
            Err(payload) => Err(payload),
        };
        Some(outcome.unwrap_or_else(|payload| {
            let text = panic_text(&*payload);
            if let Some(s) = self.supervisor.upgrade() {
                s.do_send(BackendFailed {
                    generation: self.generation,
                    reason: format!("a call panicked: {text}"),
                });
            }
            Err(KeystoreError::new(
                ErrorKind::Panic,
                format!(
                    "{} on {} panicked inside the backend ({text}); \
                     the backend is being restarted, retry the call",
                    describe(),
                    self.target.kind
                ),
            ))
        }))
    }
}

/// Polls `fut` inside `rt`'s context, whichever executor drives it.
async fn in_runtime<F: Future>(rt: &tokio::runtime::Handle, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let _entered = rt.enter();
        fut.as_mut().poll(cx)
    })
    .await
}

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
            direct.rt.store(Arc::new(self.engine_rt.clone()));
            direct.conn.store(None);
        }
        if let Some(actor) = self.actor.upgrade() {
            actor.do_send(IoRuntimeGone);
        }
    }
}

/// Tracks `backend up` and tells the metrics actor when it changes.
pub(crate) struct Liveness {
    up: AtomicBool,
    recorder: Recorder,
}

impl Liveness {
    fn set(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.recorder.backend_up(up);
        }
    }
}

impl RedisActor {
    /// The actor and its direct path (to put in the backend slot). Runs
    /// inside the engine's actix System.
    pub(crate) fn new(
        target: Arc<RedisTarget>,
        io: Option<tokio::runtime::Handle>,
        supervisor: WeakAddr<Supervisor>,
        generation: u64,
        recorder: Recorder,
    ) -> (Self, Arc<RedisDirect>) {
        recorder.backend_up(false);
        let engine_rt = tokio::runtime::Handle::current();
        // The engine's own runtime given as the I/O runtime is no I/O runtime.
        let io = io.filter(|h| h.id() != engine_rt.id());
        let direct = Arc::new(RedisDirect {
            target,
            up: Arc::new(Liveness {
                up: AtomicBool::new(false),
                recorder,
            }),
            conn: ArcSwapOption::empty(),
            rt: ArcSwap::from_pointee(io.clone().unwrap_or_else(|| engine_rt.clone())),
            supervisor,
            generation,
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
    fn dispatch(&self, conn: Conn, mut req: Request) {
        if req.expired(self.direct.target.kind.as_str()) {
            return;
        }
        let direct = self.direct.clone();
        actix::spawn(async move {
            let Request {
                command,
                deadline,
                reply,
                _permit: permit,
            } = req;
            let what = command.describe();
            let result = direct
                .call(conn, command, deadline)
                .await
                .unwrap_or_else(|| {
                    // The caller's own timer has answered it already.
                    Err(KeystoreError::new(
                        ErrorKind::Timeout,
                        format!("{what} on {}: the request timed out", direct.target.kind),
                    ))
                });
            // Done with the server: free the in-flight slot before the caller wakes.
            drop(permit);
            let _ = reply.send(result);
        });
    }

    /// Starts opening the cluster connection (the state must be `Connecting`).
    fn connect_cluster(&mut self, ctx: &mut Context<Self>) {
        let Client::Cluster(client) = &self.direct.target.client else {
            return;
        };
        let client = client.clone();
        let limit = self.direct.target.connect_timeout * 3;
        let rt = self.direct.rt.load_full();
        let fut = async move {
            // Opened on the connection's home runtime, where its driver then lives.
            let open = in_runtime(&rt, async {
                tokio::time::timeout(limit, client.get_async_connection()).await
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
                    act.direct.up.set(true);
                    act.direct
                        .conn
                        .store(Some(Arc::new(Conn::Cluster(conn.clone()))));
                    act.cluster = ClusterState::Up;
                    for req in waiting {
                        act.dispatch(Conn::Cluster(conn.clone()), req);
                    }
                }
                Err(e) => {
                    act.direct.up.set(false);
                    let target = &act.direct.target;
                    let err = target.error("connect", &e);
                    tracing::debug!("{err}");
                    for mut req in waiting {
                        if !req.expired(target.kind.as_str()) {
                            let _ = req.reply.send(Err(err.clone()));
                        }
                    }
                }
            }
        }));
    }

    fn health_check(&mut self, ctx: &mut Context<Self>) {
        if let Some(conn) = self.direct.ready() {
            let direct = self.direct.clone();
            let deadline = Instant::now() + HEALTH_EVERY;
            actix::spawn(async move {
                let _ = direct.call(conn, Command::Ping, deadline).await;
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
    }
}

impl RedisActor {
    /// A single server: puts a fresh lazy connection manager, homed on the
    /// connection's runtime, in the direct path. `false` when the client
    /// config is unusable (nothing to serve with).
    fn open_single(&mut self) -> bool {
        let target = &self.direct.target;
        let Client::Single(client) = &target.client else {
            return true;
        };
        // One attempt per failure: while the server is down each request
        // fails at once with the connect error (and triggers the next
        // attempt) rather than sitting in a backoff loop.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(target.connect_timeout))
            .set_response_timeout(Some(target.response_timeout));
        let rt = self.direct.rt.load_full();
        let _home = rt.enter();
        match ConnectionManager::new_lazy_with_config(client.clone(), config) {
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
            self.direct.target.kind
        );
        // The watch has already moved `rt` to the engine's runtime and
        // cleared the connection.
        if matches!(self.cluster, ClusterState::Up) && self.direct.ready().is_none() {
            // Reopened on the engine's runtime by the next request or health check.
            self.cluster = ClusterState::Down;
        }
        if matches!(self.direct.target.client, Client::Single(_)) && self.single_conn().is_none() {
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
        if matches!(self.direct.target.client, Client::Single(_)) {
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

/// Runs one command, retrying once on a dropped connection where repeating
/// it is harmless (GET, SET, PING; not DEL, whose answer could be wrong).
async fn execute(
    target: &RedisTarget,
    conn: Conn,
    command: &Command,
    deadline: Instant,
    up: &Liveness,
) -> Result<Reply> {
    let retry_safe = matches!(
        command,
        Command::Get { .. } | Command::Set { .. } | Command::Ping
    );
    let mut first = true;
    loop {
        match run_once(target, conn.clone(), command).await {
            Ok(reply) => {
                up.set(true);
                return Ok(reply);
            }
            Err(Failure::Redis(e)) => {
                let dropped = e.is_connection_dropped() || e.is_unrecoverable_error();
                if dropped || e.is_io_error() {
                    up.set(false);
                }
                // Refused means the server is not there: retrying at once
                // would only fail again. A dropped connection is worth one
                // more try on the fresh connection the manager is opening.
                if first
                    && retry_safe
                    && dropped
                    && !e.is_connection_refusal()
                    && !e.is_timeout()
                    && Instant::now() < deadline
                {
                    first = false;
                    continue;
                }
                return Err(target.error(&command.describe(), &e));
            }
            Err(Failure::Ours(e)) => return Err(e),
        }
    }
}

enum Failure {
    Redis(RedisError),
    Ours(KeystoreError),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

async fn query<T: redis::FromRedisValue>(
    conn: Conn,
    cmd: &redis::Cmd,
) -> std::result::Result<T, RedisError> {
    match conn {
        Conn::Single(mut c) => cmd.query_async(&mut c).await,
        Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
    }
}

async fn run_once(
    target: &RedisTarget,
    conn: Conn,
    command: &Command,
) -> std::result::Result<Reply, Failure> {
    match command {
        Command::Get { key } => {
            let raw: Option<Vec<u8>> = query(conn, redis::cmd("GET").arg(&**key)).await?;
            match raw {
                None => Ok(Reply::Value(None)),
                Some(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => Ok(Reply::Value(Some(text))),
                    Err(_) => Err(Failure::Ours(KeystoreError::new(
                        ErrorKind::CorruptValue,
                        format!(
                            "the value of key {key:?} on {} ({}) is not UTF-8 JSON text; \
                             it was not written by objdatakey or a JSON-writing client",
                            target.kind, target.address
                        ),
                    ))),
                },
            }
        }
        Command::Set { key, json, ttl } => {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&**key).arg(json.as_str());
            if let Some(secs) = ttl {
                cmd.arg("EX").arg(*secs);
            }
            let _: () = query(conn, &cmd).await?;
            Ok(Reply::Done)
        }
        Command::Delete { key } => {
            let n: i64 = query(conn, redis::cmd("DEL").arg(&**key)).await?;
            Ok(Reply::Deleted(n > 0))
        }
        Command::Ping => {
            let _: String = query(conn, &redis::cmd("PING")).await?;
            Ok(Reply::Done)
        }
        // Servers expire keys themselves.
        Command::Sweep { .. } => Ok(Reply::Swept {
            removed: 0,
            scanned: 0,
            more: false,
        }),
        #[cfg(feature = "fault-injection")]
        Command::Panic => panic!("injected panic in the {} backend", target.kind),
        #[cfg(feature = "fault-injection")]
        Command::Stall(d) => {
            tokio::time::sleep(*d).await;
            Ok(Reply::Done)
        }
    }
}
