//! The Redis-protocol backend (Redis, Redis Cluster and DragonflyDB).
//!
//! - [`target`]: [`RedisTarget`], the client built once from the config
//!   section (addresses, credentials, TLS).
//! - [`errors`]: redis-rs errors turned into messages that name the address
//!   and the config key to fix.
//! - [`actor`]: [`RedisActor`], which owns the connection's life: it opens
//!   it, pings it every second (keeping `backend up` current and letting the
//!   connection recover while nobody sends), and is restarted by the
//!   supervisor when a call panics or it stops. Requests that arrive before
//!   a connection is ready (a cluster still opening) wait in the actor.
//! - [`commands`]: what each operation sends, one typed function each,
//!   batches split by hash slot ([`slot`]) on a cluster, prefix deletes by
//!   `SCAN` + `UNLINK`; [`conn`]: the connection they go over.
//! - [`link`]: what a call needs around the connection, and `Link::run`,
//!   the one way a command goes over the wire (deadline, panic, retry).
//! - [`direct`]: [`RedisDirect`], published by the actor once a connection
//!   is ready. The engine runs commands over it on the caller's own task,
//!   with no mailbox hop; only the socket I/O runs where the connection's
//!   driver lives: the engine's runtime, or the runtime given to
//!   `KeystoreBuilder::io_runtime` (the callers' own, so a reply wakes its
//!   caller without crossing threads).
//!
//! - [`combine`]: beyond 16 commands in flight, waiting GETs combined
//!   into one MGET and waiting SETs of at most 2 KiB into one MSET or
//!   script call per TTL (none added at 1 caller).
//! - [`backplane`]: [`Backplane`], the actor that holds the pub/sub
//!   subscription of the in-process tier's invalidations, on a connection
//!   of its own.
//!
//! Connections are lazy and self-healing:
//! - a single server is reached through redis-rs's `ConnectionManager`, which
//!   connects on first use and reconnects in the background after an I/O
//!   error. It makes one connection attempt per failure (no retry loop), so
//!   while the server is down requests fail fast with the connect error
//!   instead of waiting out a backoff;
//! - a cluster connection ([`cluster`]) is opened by the actor on first use
//!   (and again after a failed attempt): a slot table of our own and one
//!   such connection manager per node, so a master that is down fails its
//!   own keys at once and nothing else; slot moves are followed and the
//!   table refreshed in the background.
//!
//! Values are the JSON text as is (`SET name json EX ttl`), so services that
//! use redis-py with `json.dumps` + `setex` read and write the same keys.

pub(crate) mod actor;
pub(crate) mod backplane;
pub(crate) mod cluster;
pub(crate) mod combine;
pub(crate) mod commands;
pub(crate) mod conn;
pub(crate) mod direct;
pub(crate) mod errors;
pub(crate) mod link;
pub(crate) mod slot;
pub(crate) mod target;

pub(crate) use actor::RedisActor;
pub(crate) use backplane::{Backplane, Invalidations};
pub(crate) use conn::Conn;
pub(crate) use direct::RedisDirect;
pub(crate) use target::RedisTarget;
