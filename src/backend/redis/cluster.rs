//! [`ClusterRouter`]: Redis Cluster commands routed by this crate, over one
//! self-healing connection per node.
//!
//! Why not redis-rs's `cluster_async` client (redis-rs 1.8.1, tokio 1.54):
//! - one task of its own drives every request of every node, and while it
//!   refreshes its slot map (which any request that meets a dead node asks
//!   for) it polls nothing else; with a master down under load it refreshes
//!   again and again, so the keys of the masters that are up wait too;
//! - it can stop for good: a request polled after the task's tokio budget
//!   is spent takes a read permit of the slot map's lock (tokio takes the
//!   permit, then answers `Pending` for the budget), the refresh
//!   (`refresh_slots`, in `conn_lock.write()`) waits for the write lock,
//!   and that request is never polled again while the refresh waits, so
//!   every later call times out, whether the master comes back or not;
//! - its retries sleep at least 1.28 s, longer than a request timeout, so a
//!   dead node's keys time out instead of failing at once.
//!
//! Here a node's trouble stays that node's:
//! - the slot table (which node serves each of the 16 384 slots) is read
//!   with `CLUSTER SLOTS` when the connection opens, and again in the
//!   background when a node answers `MOVED` or cannot be reached (one
//!   refresh at a time, at most one per [`REFRESH_EVERY`]); requests never
//!   wait for it, they go by the table they find;
//! - a command goes to the node that serves its key's slot, over that
//!   node's `ConnectionManager` (lazy; it reconnects after an I/O error with
//!   one attempt per failure, as for a single server): while a master is
//!   down its keys fail at once with its connect error, the other masters'
//!   keys are not touched, and its first request after it is back reconnects;
//! - `MOVED` is followed once to the node it names, `ASK` once with `ASKING`;
//! - a command without a key (`PING`, `PUBLISH`, `CLUSTER NODES`) goes to the
//!   node that answered the last one, or the next one when that node cannot
//!   be reached.
//!
//! A command is routed by its first key: the argument after the command
//! name, or after the script and key count for `EVAL`/`EVALSHA`. A
//! multi-key command must keep its keys in one slot ([`commands`](super::commands)
//! splits batches by slot).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Arg, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::RedisTarget;
use super::slot::{SLOTS, slot};

/// The shortest time between two slot-table refreshes.
const REFRESH_EVERY: Duration = Duration::from_millis(200);

/// A cluster connection: the slot table and a connection per node. Cloning
/// it is cheap.
#[derive(Clone)]
pub(crate) struct ClusterRouter {
    inner: Arc<Inner>,
}

struct Inner {
    target: Arc<RedisTarget>,
    table: ArcSwap<Table>,
    /// One connection per node address, made on first use.
    nodes: parking_lot::Mutex<HashMap<Arc<str>, ConnectionManager>>,
    refresh: parking_lot::Mutex<Refresh>,
    /// Where a command without a key goes first: an index into the table's
    /// addresses.
    preferred: AtomicUsize,
}

#[derive(Default)]
struct Refresh {
    running: bool,
    last: Option<Instant>,
}

/// Which node serves each slot.
struct Table {
    /// The node addresses (`host:port`): the masters of the last answer, or
    /// the seed nodes before the first.
    addrs: Vec<Arc<str>>,
    /// Per slot, an index into `addrs`, or [`NONE`] when no node serves it.
    owners: Vec<u16>,
}

const NONE: u16 = u16::MAX;

/// One request: a command, or `count` replies of a pipeline from `offset`.
#[derive(Clone, Copy)]
enum Request<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a Pipeline, usize, usize),
}

enum Replies {
    One(Value),
    Many(Vec<Value>),
}

impl ClusterRouter {
    /// Reads the slot table from the first seed node that answers.
    pub(crate) async fn open(target: Arc<RedisTarget>) -> RedisResult<ClusterRouter> {
        let super::target::Client::Cluster(seeds) = &target.client else {
            return Err(RedisError::from((ErrorKind::Client, "not a cluster")));
        };
        let addrs: Vec<Arc<str>> = seeds
            .iter()
            .map(|(host, port)| Arc::from(format!("{host}:{port}")))
            .collect();
        let inner = Arc::new(Inner {
            target,
            table: ArcSwap::from_pointee(Table {
                owners: vec![NONE; usize::from(SLOTS)],
                addrs,
            }),
            nodes: Default::default(),
            refresh: Default::default(),
            preferred: AtomicUsize::new(0),
        });
        inner.read_table().await?;
        Ok(ClusterRouter { inner })
    }

    /// Runs `cmd` on the node at `host:port` (a `SCAN` of one master).
    pub(crate) async fn on_node(&self, host: &str, port: u16, cmd: &Cmd) -> RedisResult<Value> {
        let addr: Arc<str> = Arc::from(format!("{host}:{port}"));
        let mut conn = self.inner.node(&addr)?;
        conn.req_packed_command(cmd).await
    }
}

impl ConnectionLike for ClusterRouter {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.inner.send(Request::Cmd(cmd)).await? {
                Replies::One(v) => Ok(v),
                Replies::Many(_) => unreachable!("a command has one reply"),
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self
                .inner
                .send(Request::Pipe(pipeline, offset, count))
                .await?
            {
                Replies::Many(v) => Ok(v),
                Replies::One(_) => unreachable!("a pipeline has a reply per command"),
            }
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Inner {
    /// Sends `req` to the node of its key's slot (any node without a key),
    /// following one redirection.
    async fn send(self: &Arc<Self>, req: Request<'_>) -> RedisResult<Replies> {
        let key = match req {
            Request::Cmd(cmd) => routing_key(cmd),
            Request::Pipe(pipe, ..) => pipe.cmd_iter().find_map(routing_key),
        };
        let Some(key) = key else {
            return self.send_anywhere(req).await;
        };
        let slot = slot(&key);
        let addr = self.owner(slot)?;
        let replies = self.on(&addr, req, false).await?;
        let Some((moved, to)) = redirection(&replies) else {
            return Ok(replies);
        };
        if moved {
            self.refresh_soon();
        }
        self.on(&to, req, !moved).await
    }

    /// Sends `req` to the node at `addr` (after `ASKING` when `asking`).
    async fn on(
        self: &Arc<Self>,
        addr: &Arc<str>,
        req: Request<'_>,
        asking: bool,
    ) -> RedisResult<Replies> {
        let mut conn = self.node(addr)?;
        let sent = match (req, asking) {
            (Request::Cmd(cmd), false) => conn.req_packed_command(cmd).await.map(Replies::One),
            (Request::Pipe(pipe, offset, count), false) => conn
                .req_packed_commands(pipe, offset, count)
                .await
                .map(Replies::Many),
            (Request::Cmd(cmd), true) => {
                let mut asked = redis::pipe();
                asked.cmd("ASKING").add_command(cmd.clone());
                conn.req_packed_commands(&asked, 1, 1)
                    .await
                    .map(|mut v| Replies::One(v.pop().unwrap_or(Value::Nil)))
            }
            (Request::Pipe(pipe, offset, count), true) => {
                // `ASKING` holds for the next command only: one before each.
                let mut asked = redis::pipe();
                for cmd in pipe.cmd_iter() {
                    asked.cmd("ASKING").add_command(cmd.clone());
                }
                conn.req_packed_commands(&asked, 0, 2 * pipe.len())
                    .await
                    .map(|v| {
                        Replies::Many(
                            v.into_iter()
                                .skip(1)
                                .step_by(2)
                                .skip(offset)
                                .take(count)
                                .collect(),
                        )
                    })
            }
        };
        if sent.as_ref().is_err_and(cannot_reach) {
            // The node may have been replaced (a failover): look again.
            self.refresh_soon();
        }
        sent
    }

    /// A command without a key: to the node that answered the last one, or
    /// on to the next when a node cannot be reached.
    async fn send_anywhere(self: &Arc<Self>, req: Request<'_>) -> RedisResult<Replies> {
        let addrs = self.table.load().addrs.clone();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..addrs.len() {
            let n = (start + i) % addrs.len();
            match self.on(&addrs[n], req, false).await {
                Err(e) if cannot_reach(&e) => last = Some(e),
                answer => {
                    self.preferred.store(n, Ordering::Relaxed);
                    return answer;
                }
            }
        }
        Err(last.unwrap_or_else(|| RedisError::from((ErrorKind::Client, "no cluster node known"))))
    }

    /// The address of the node that serves `slot`.
    fn owner(self: &Arc<Self>, slot: u16) -> RedisResult<Arc<str>> {
        let table = self.table.load();
        match table.owners[usize::from(slot)] {
            NONE => {
                self.refresh_soon();
                Err(RedisError::from((
                    ErrorKind::ClusterConnectionNotFound,
                    "no node serves the slot",
                    format!("slot {slot}"),
                )))
            }
            i => Ok(table.addrs[usize::from(i)].clone()),
        }
    }

    /// The connection to the node at `addr` (`host:port`), made on first use.
    fn node(&self, addr: &Arc<str>) -> RedisResult<ConnectionManager> {
        let mut nodes = self.nodes.lock();
        if let Some(conn) = nodes.get(addr) {
            return Ok(conn.clone());
        }
        let bad = |what: &str| {
            RedisError::from((
                ErrorKind::Client,
                "bad node address",
                format!("{addr}: {what}"),
            ))
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let client = self
            .target
            .node_client(host, port)
            .map_err(|e| bad(&e.to_string()))?;
        let conn = self.target.manager(client)?;
        nodes.insert(addr.clone(), conn.clone());
        Ok(conn)
    }

    /// Starts a background refresh of the slot table, unless one runs or
    /// the last one was less than [`REFRESH_EVERY`] ago.
    fn refresh_soon(self: &Arc<Self>) {
        {
            let mut r = self.refresh.lock();
            if r.running || r.last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
                return;
            }
            r.running = true;
        }
        let inner = self.clone();
        // On the connection's runtime: every request runs inside it.
        tokio::spawn(async move {
            if let Err(e) = inner.read_table().await {
                tracing::debug!(
                    "{}: refreshing the cluster slot table failed: {e}",
                    inner.target.address()
                );
            }
            let mut r = inner.refresh.lock();
            r.running = false;
            r.last = Some(Instant::now());
        });
    }

    /// Asks the known nodes for `CLUSTER SLOTS`, from the preferred one on,
    /// and keeps the first answer.
    async fn read_table(&self) -> RedisResult<()> {
        let addrs = self.table.load().addrs.clone();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..addrs.len() {
            let addr = &addrs[(start + i) % addrs.len()];
            let asked = async {
                let mut conn = self.node(addr)?;
                let reply = conn
                    .req_packed_command(redis::cmd("CLUSTER").arg("SLOTS"))
                    .await?
                    .extract_error()?;
                parse_slots(reply, addr)
            };
            match tokio::time::timeout(self.target.response_timeout, asked).await {
                Ok(Ok(table)) => {
                    self.table.store(Arc::new(table));
                    self.preferred.store(0, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{addr} did not answer CLUSTER SLOTS in time"),
                    )))
                }
            }
        }
        Err(last.unwrap_or_else(|| RedisError::from((ErrorKind::Client, "no cluster node known"))))
    }
}

/// Whether `e` says the node could not be reached (as opposed to an answer).
fn cannot_reach(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout()
}

/// The redirection in `replies`, if any: (`MOVED` rather than `ASK`, the
/// node to ask).
fn redirection(replies: &Replies) -> Option<(bool, Arc<str>)> {
    let redirected = |v: &Value| -> Option<(bool, Arc<str>)> {
        let Value::ServerError(_) = v else {
            return None;
        };
        let e = v.clone().extract_error().err()?;
        let (to, _slot) = e.redirect_node()?;
        let moved = matches!(e.kind(), ErrorKind::Server(redis::ServerErrorKind::Moved));
        Some((moved, Arc::from(to)))
    };
    match replies {
        Replies::One(v) => redirected(v),
        Replies::Many(vs) => vs.iter().find_map(redirected),
    }
}

/// The key `cmd` is routed by (see the module docs), if it has one.
fn routing_key(cmd: &Cmd) -> Option<Vec<u8>> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?.to_ascii_uppercase();
    match name.as_slice() {
        b"PING" | b"PUBLISH" | b"CLUSTER" | b"SCAN" | b"INFO" | b"ASKING" => None,
        b"EVAL" | b"EVALSHA" => {
            let _script = args.next()?;
            let keys = args.next()?;
            if keys == b"0" {
                None
            } else {
                args.next().map(<[u8]>::to_vec)
            }
        }
        _ => args.next().map(<[u8]>::to_vec),
    }
}

/// A [`Table`] from a `CLUSTER SLOTS` reply of the node at `asked`: entries
/// `[start, end, [host, port, id…], replicas…]`. A master listed without a
/// host (`""` or `?`) is reached at the host that answered.
fn parse_slots(reply: Value, asked: &str) -> RedisResult<Table> {
    let bad = |what: &str| {
        RedisError::from((ErrorKind::Parse, "bad CLUSTER SLOTS reply", what.to_owned()))
    };
    let asked_host = asked.rsplit_once(':').map_or(asked, |(h, _)| h);
    let Value::Array(entries) = reply else {
        return Err(bad("not an array"));
    };
    let mut addrs: Vec<Arc<str>> = Vec::new();
    let mut owners = vec![NONE; usize::from(SLOTS)];
    for entry in entries {
        let Value::Array(items) = entry else {
            return Err(bad("an entry is not an array"));
        };
        let mut items = items.into_iter();
        let (Some(start), Some(end), Some(Value::Array(master))) =
            (items.next(), items.next(), items.next())
        else {
            return Err(bad("an entry has no slot range and master"));
        };
        let start: u16 = redis::from_redis_value(start).map_err(|_| bad("bad start slot"))?;
        let end: u16 = redis::from_redis_value(end).map_err(|_| bad("bad end slot"))?;
        let mut master = master.into_iter();
        let (Some(host), Some(port)) = (master.next(), master.next()) else {
            return Err(bad("a master has no host and port"));
        };
        let host: String = redis::from_redis_value(host).map_err(|_| bad("bad host"))?;
        let port: u16 = redis::from_redis_value(port).map_err(|_| bad("bad port"))?;
        let host = if host.is_empty() || host == "?" {
            asked_host
        } else {
            &host
        };
        let addr = format!("{host}:{port}");
        let index = match addrs.iter().position(|a| **a == *addr) {
            Some(i) => i,
            None => {
                addrs.push(Arc::from(addr));
                addrs.len() - 1
            }
        };
        if start > end || end >= SLOTS {
            return Err(bad("slot range out of bounds"));
        }
        for s in start..=end {
            owners[usize::from(s)] = index as u16;
        }
    }
    if addrs.is_empty() {
        return Err(bad("no slot is served"));
    }
    Ok(Table { addrs, owners })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn commands_are_routed_by_their_first_key() {
        assert_eq!(routing_key(redis::cmd("GET").arg("k")), Some(b"k".to_vec()));
        assert_eq!(
            routing_key(redis::cmd("set").arg("k").arg("v")),
            Some(b"k".to_vec())
        );
        assert_eq!(
            routing_key(redis::cmd("EVAL").arg("script").arg(1).arg("k").arg("t")),
            Some(b"k".to_vec())
        );
        assert_eq!(routing_key(redis::cmd("EVAL").arg("script").arg(0)), None);
        assert_eq!(routing_key(&redis::cmd("PING")), None);
        assert_eq!(routing_key(redis::cmd("PUBLISH").arg("c").arg("m")), None);
        assert_eq!(routing_key(redis::cmd("CLUSTER").arg("NODES")), None);
    }

    #[test]
    fn the_slot_table_is_read_from_cluster_slots() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("10.0.0.1"), Value::Int(7000), bulk("id1")]),
                Value::Array(vec![bulk("10.0.0.4"), Value::Int(7003), bulk("id4")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk(""), Value::Int(7001), bulk("id2")]),
            ]),
        ]);
        let table = parse_slots(reply, "10.0.0.9:7001").unwrap();
        let owner = |s: usize| &*table.addrs[usize::from(table.owners[s])];
        assert_eq!(owner(0), "10.0.0.1:7000");
        assert_eq!(owner(5460), "10.0.0.1:7000");
        assert_eq!(owner(5461), "10.0.0.9:7001");
        assert_eq!(owner(16383), "10.0.0.9:7001");
        assert_eq!(table.addrs.len(), 2);
    }

    #[test]
    fn an_unserved_slot_has_no_owner() {
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(99),
            Value::Array(vec![bulk("h"), Value::Int(1)]),
        ])]);
        let table = parse_slots(reply, "h:1").unwrap();
        assert_eq!(table.owners[100], NONE);
        assert!(parse_slots(Value::Array(vec![]), "h:1").is_err());
    }
}
