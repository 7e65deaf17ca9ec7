//! The Redis commands each keystore operation sends, one typed function
//! each, and how their replies become answers.
//!
//! Batches are one round trip on a single server (MGET; MSET, or with a
//! TTL one `EVAL` of a `SET … EX` per key, a pipeline of them where the
//! server refuses scripts; one UNLINK). On a cluster they are split by hash
//! slot ([`slot`](super::slot)), one command per slot sent concurrently,
//! and reassembled in the caller's order; a slot whose node fails makes the
//! whole batch fail with an error that names the keys of the failed slots,
//! so no value can come back under the wrong name. Prefix deletes walk
//! `SCAN MATCH` in batches (on a cluster, on every master), unlinking each
//! batch as it comes: no single command blocks the server for long.

use std::sync::Arc;

use futures_util::future::join_all;
use redis::RedisError;

use super::RedisTarget;
use super::conn::{Conn, query, query_pipe};
use super::slot::group_by_slot;
use crate::backend::{Deadline, Stored};
use crate::error::{ErrorKind, KeystoreError};
use crate::ttl::Ttl;

/// How much earlier than the call's deadline a cluster batch gives up on a
/// slot, at most (a tenth of the request timeout when that is less).
const GROUP_MARGIN: std::time::Duration = std::time::Duration::from_millis(200);

/// Deletes `KEYS[1]` only while it holds `ARGV[1]`: a lock that expired
/// and was taken by another process stays that process's.
const UNLOCK_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// `SET KEYS[i] ARGV[i] EX <last ARGV>` for every key: SETs of one TTL as
/// one command (Redis 7, the version tested here, has no multi-key SET
/// with an expiry).
const SET_EX_SCRIPT: &str = "local ttl = ARGV[#KEYS + 1] \
     for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'EX', ttl) end \
     return #KEYS";

/// Keys asked for per `SCAN` step of a prefix delete.
const SCAN_COUNT: usize = 1000;

/// Why a command failed: the server or connection (classified by the
/// caller), or something this crate found wrong with the answer.
pub(crate) enum Failure {
    Redis(RedisError),
    Ours(KeystoreError),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

/// What a command over the wire answers.
pub(crate) type Answer<T> = std::result::Result<T, Failure>;

/// `GET key`.
pub(crate) async fn get(target: &RedisTarget, conn: Conn, key: &str) -> Answer<Option<String>> {
    let raw: Option<Vec<u8>> = query(conn, sized("GET", 1, key.len()).arg(key)).await?;
    text(target, key, raw)
}

/// `SET key json [EX ttl]`.
pub(crate) async fn set(conn: Conn, key: &str, json: &str, ttl: Option<u64>) -> Answer<()> {
    Ok(query(conn, &set_cmd(key, json, ttl)).await?)
}

/// `DEL key`: whether it was there.
pub(crate) async fn delete(conn: Conn, key: &str) -> Answer<bool> {
    let n: i64 = query(conn, sized("DEL", 1, key.len()).arg(key)).await?;
    Ok(n > 0)
}

/// `TTL key`: the remaining lifetime, `None` when missing.
pub(crate) async fn ttl(conn: Conn, key: &str) -> Answer<Option<Ttl>> {
    let secs: i64 = query(conn, sized("TTL", 1, key.len()).arg(key)).await?;
    // -2: no such key; -1: no expiry.
    Ok(match secs {
        -1 => Some(Ttl::Never),
        s if s >= 0 => Some(Ttl::Seconds(s as u64)),
        _ => None,
    })
}

/// Stores every entry for `ttl`: per hash slot one MSET without a TTL, one
/// script call with one (a pipeline of `SET … EX` where scripts are refused).
pub(crate) async fn set_many(
    target: &RedisTarget,
    conn: Conn,
    entries: &[(Arc<str>, String)],
    ttl: Option<u64>,
    deadline: Deadline,
) -> Answer<()> {
    per_slot(
        target,
        conn,
        deadline,
        "set_many",
        entries,
        |conn, group| async move {
            let data: usize = group.iter().map(|(k, j)| k.len() + j.len()).sum();
            // Without a TTL: one MSET, one command for the server to parse,
            // run and answer instead of one per key (what makes combined
            // SETs cheaper than the callers' own).
            if ttl.is_none() {
                let mut mset = sized("MSET", 2 * group.len(), data);
                for (key, json) in group {
                    mset.arg(&**key).arg(json.as_str());
                }
                return query::<()>(conn, &mset).await;
            }
            // With one: a script call, one command as well, where the
            // server allows scripts (SET EX has no multi-key form in Redis 7).
            if let Some(secs) = ttl
                && group.len() > 1
                && target.scripts_allowed()
            {
                let mut eval = sized("EVAL", 2 * group.len() + 3, SET_EX_SCRIPT.len() + data + 40);
                eval.arg(SET_EX_SCRIPT).arg(group.len());
                for (key, _) in &group {
                    eval.arg(&**key);
                }
                for (_, json) in &group {
                    eval.arg(json.as_str());
                }
                eval.arg(secs);
                match query::<i64>(conn.clone(), &eval).await {
                    Ok(_) => return Ok(()),
                    // Refused before it ran: nothing was written, so the
                    // pipeline below is the first write.
                    Err(e) if script_refused(&e) => target.refuse_scripts(&e),
                    Err(e) => return Err(e),
                }
            }
            let mut pipe = redis::pipe();
            for (key, json) in group {
                pipe.add_command(set_cmd(key, json, ttl)).ignore();
            }
            query_pipe::<()>(conn, &pipe).await
        },
    )
    .await?;
    Ok(())
}

/// `UNLINK key…` per hash slot: how many were there.
pub(crate) async fn delete_many(
    target: &RedisTarget,
    conn: Conn,
    keys: &[Arc<str>],
    deadline: Deadline,
) -> Answer<u64> {
    let counts = per_slot(
        target,
        conn,
        deadline,
        "delete_many",
        keys,
        |conn, group| async move { query::<u64>(conn, &keys_cmd("UNLINK", &group)).await },
    )
    .await?;
    Ok(counts.into_iter().map(|(_, n)| n).sum())
}

/// `PUBLISH channel message`.
pub(crate) async fn publish(conn: Conn, channel: &str, message: &str) -> Answer<()> {
    let _: i64 = query(conn, redis::cmd("PUBLISH").arg(channel).arg(message)).await?;
    Ok(())
}

/// `PING`.
pub(crate) async fn ping(conn: Conn) -> Answer<()> {
    let _: String = query(conn, &redis::cmd("PING")).await?;
    Ok(())
}

/// `SET key token NX PX ms`: whether this caller took the lock.
pub(crate) async fn lock(conn: Conn, key: &str, token: &str, ms: u64) -> Answer<bool> {
    let mut set = redis::cmd("SET");
    set.arg(key).arg(token).arg("NX").arg("PX").arg(ms);
    let taken: Option<String> = query(conn, &set).await?;
    Ok(taken.is_some())
}

/// Deletes `key` if it still holds `token`.
pub(crate) async fn unlock(conn: Conn, key: &str, token: &str) -> Answer<()> {
    let mut unlock = redis::cmd("EVAL");
    unlock.arg(UNLOCK_SCRIPT).arg(1).arg(key).arg(token);
    let _: i64 = query(conn, &unlock).await?;
    Ok(())
}

/// Whether `e` is the server refusing `EVAL` itself (so the script did not
/// run): no permission for the command, or no such command. An error from
/// inside the script (a refused SET, no memory) is not: some SETs may have
/// run, and a write is never sent twice.
fn script_refused(e: &RedisError) -> bool {
    let detail = e.detail().unwrap_or_default().to_ascii_lowercase();
    match e.code() {
        Some("NOPERM") => detail.contains("'eval'"),
        Some("ERR") => detail.contains("unknown command") && detail.contains("eval"),
        _ => false,
    }
}

/// `name key…`: a command whose arguments are `keys`.
fn keys_cmd(name: &str, keys: &[&std::sync::Arc<str>]) -> redis::Cmd {
    let mut cmd = sized(name, keys.len(), keys.iter().map(|k| k.len()).sum());
    for key in keys {
        cmd.arg(&***key);
    }
    cmd
}

/// The command `name`, with room for `args` more arguments of `data` bytes
/// in all: built with its final size, not grown an argument at a time (a
/// reallocation or two per argument is a sizeable share of a SET's cost).
fn sized(name: &str, args: usize, data: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(args + 1, name.len() + data);
    cmd.arg(name);
    cmd
}

/// `SET key json [EX ttl]`.
fn set_cmd(key: &str, json: &str, ttl: Option<u64>) -> redis::Cmd {
    // "EX" and at most 20 digits.
    let mut cmd = sized("SET", 4, key.len() + json.len() + 22);
    cmd.arg(key).arg(json);
    if let Some(secs) = ttl {
        cmd.arg("EX").arg(secs);
    }
    cmd
}

/// A stored value as JSON text; bytes that are not UTF-8 are an error for `key`.
fn text(target: &RedisTarget, key: &str, raw: Option<Vec<u8>>) -> Answer<Option<String>> {
    match raw.map(String::from_utf8) {
        None => Ok(None),
        Some(Ok(text)) => Ok(Some(text)),
        Some(Err(_)) => Err(Failure::Ours(KeystoreError::new(
            ErrorKind::CorruptValue,
            format!(
                "the value of key {key:?} on {} ({}) is not UTF-8 JSON text; \
                 it was not written by objdatakey or a JSON-writing client",
                target.kind, target.address
            ),
        ))),
    }
}

/// `MGET key…` per hash slot, in the caller's order.
pub(crate) async fn get_many(
    target: &RedisTarget,
    conn: Conn,
    keys: &[std::sync::Arc<str>],
    deadline: Deadline,
) -> Answer<Vec<Option<String>>> {
    let groups = per_slot(
        target,
        conn,
        deadline,
        "get_many",
        keys,
        |conn, group| async move {
            query::<Vec<Option<Vec<u8>>>>(conn, &keys_cmd("MGET", &group)).await
        },
    )
    .await?;
    in_order(target, "get_many (MGET)", keys.len(), groups, |i, raw| {
        text(target, &keys[i], raw)
    })
}

/// Puts each slot group's answers back in the caller's order (`each` turns
/// the answer for the `i`th key into its value); a group that answered
/// another number of values than it has keys fails the whole batch.
fn in_order<T, V: Clone>(
    target: &RedisTarget,
    what: &str,
    n: usize,
    groups: Vec<(Vec<usize>, Vec<T>)>,
    mut each: impl FnMut(usize, T) -> Answer<Option<V>>,
) -> Answer<Vec<Option<V>>> {
    let mut out = vec![None; n];
    for (indices, values) in groups {
        if values.len() != indices.len() {
            return Err(Failure::Ours(KeystoreError::new(
                ErrorKind::Protocol,
                format!(
                    "{what} on {} ({}): the server answered {} values for {} keys",
                    target.kind,
                    target.address,
                    values.len(),
                    indices.len()
                ),
            )));
        }
        for (i, v) in indices.into_iter().zip(values) {
            out[i] = each(i, v)?;
        }
    }
    Ok(out)
}

/// Each key's value and remaining lifetime: a pipeline of `GET` and `PTTL`
/// per hash slot (one round trip on a single server).
pub(crate) async fn entries(
    target: &RedisTarget,
    conn: Conn,
    keys: &[std::sync::Arc<str>],
    deadline: Deadline,
) -> Answer<Vec<Option<Stored>>> {
    let groups = per_slot(
        target,
        conn,
        deadline,
        "get",
        keys,
        |conn, group| async move {
            let mut pipe = redis::pipe();
            for key in &group {
                pipe.cmd("GET").arg(&***key).cmd("PTTL").arg(&***key);
            }
            query_pipe::<Vec<(Option<Vec<u8>>, i64)>>(conn, &pipe).await
        },
    )
    .await?;
    in_order(
        target,
        "get (GET + PTTL)",
        keys.len(),
        groups,
        |i, (raw, pttl)| {
            // PTTL: -1 no expiry, -2 gone (expired between the two commands).
            Ok(match (text(target, &keys[i], raw)?, pttl) {
                (Some(json), -1) => Some((json, None)),
                (Some(json), ms) if ms >= 0 => {
                    Some((json, Some(std::time::Duration::from_millis(ms as u64))))
                }
                _ => None,
            })
        },
    )
}

/// Something a batch is made of: a key, or a key with its value.
trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for std::sync::Arc<str> {
    fn key(&self) -> &str {
        self
    }
}

impl Keyed for (std::sync::Arc<str>, String) {
    fn key(&self) -> &str {
        &self.0
    }
}

/// Runs `send` once for all `items` (a single server), or once per hash
/// slot concurrently (a cluster, where a multi-key command must stay in one
/// slot), answering each group's indices into `items` with its result. If
/// any group fails, the error names the keys of the failed groups. On a
/// cluster each group gets a deadline a little before the call's own, so a
/// slot whose node does not answer is reported by name rather than the
/// whole call timing out.
async fn per_slot<'a, I, T, F, Fut>(
    target: &RedisTarget,
    conn: Conn,
    deadline: Deadline,
    verb: &str,
    items: &'a [I],
    send: F,
) -> Answer<Vec<(Vec<usize>, T)>>
where
    I: Keyed,
    F: Fn(Conn, Vec<&'a I>) -> Fut,
    Fut: Future<Output = Result<T, RedisError>>,
{
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<Vec<usize>> = match conn {
        Conn::Single(_) => vec![(0..items.len()).collect()],
        Conn::Cluster(_) => {
            let keys: Vec<&[u8]> = items.iter().map(|i| i.key().as_bytes()).collect();
            group_by_slot(&keys).into_iter().map(|(_, g)| g).collect()
        }
    };
    let group_deadline = deadline.at - (deadline.budget() / 10).min(GROUP_MARGIN);
    let sent = groups.iter().map(|g| {
        let group = send(conn.clone(), g.iter().map(|&i| &items[i]).collect());
        async move {
            tokio::time::timeout_at(group_deadline.into(), group)
                .await
                .unwrap_or_else(|_| {
                    Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no answer from the node of this slot before the request deadline",
                    )))
                })
        }
    });
    let results = join_all(sent).await;
    let groups_sent = results.len();
    let mut out = Vec::with_capacity(results.len());
    let mut failed: Option<(RedisError, Vec<&str>)> = None;
    for (group, result) in groups.into_iter().zip(results) {
        match result {
            Ok(v) => out.push((group, v)),
            Err(e) => {
                let names = group.iter().map(|&i| items[i].key());
                match &mut failed {
                    Some((_, all)) => all.extend(names),
                    None => failed = Some((e, names.collect())),
                }
            }
        }
    }
    match failed {
        None => Ok(out),
        // One group (a single server): the plain error, which the caller
        // may retry on a fresh connection.
        Some((e, _)) if groups_sent == 1 => Err(Failure::Redis(e)),
        Some((e, names)) => {
            let done = if names.len() == items.len() {
                ""
            } else {
                "; the others were done"
            };
            let what = format!(
                "{verb} failed for {} of {} keys ({}){done}",
                names.len(),
                items.len(),
                listed(&names)
            );
            Err(Failure::Ours(target.error(&what, &e).context(&what)))
        }
    }
}

/// The first few of `names`, and how many more.
fn listed(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<&&str> = names.iter().take(SHOWN).collect();
    match names.len().saturating_sub(SHOWN) {
        0 => format!("{shown:?}"),
        more => format!("{shown:?} and {more} more"),
    }
}

/// `prefix` as a `SCAN MATCH` pattern: its glob characters escaped, then `*`.
pub(super) fn match_pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('*');
    p
}

/// Unlinks every key matching `prefix`, a `SCAN` batch at a time (on every
/// master of a cluster); answers how many were removed.
pub(crate) async fn delete_prefix(conn: Conn, prefix: &str) -> Answer<u64> {
    let pattern = match_pattern(prefix);
    let mut removed = 0;
    match &conn {
        Conn::Single(_) => {
            removed += scan_and_unlink(&conn, &pattern, None).await?;
        }
        Conn::Cluster(_) => {
            for node in masters(&conn).await? {
                removed += scan_and_unlink(&conn, &pattern, Some(node)).await?;
            }
        }
    }
    Ok(removed)
}

/// One node's `SCAN MATCH pattern` walk (`node`: the master's host and
/// port, on a cluster), unlinking each batch (one `UNLINK` per hash slot on
/// a cluster, where a command's keys must share a slot).
async fn scan_and_unlink(conn: &Conn, pattern: &str, node: Option<(String, u16)>) -> Answer<u64> {
    let mut cursor = 0u64;
    let mut removed = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.cursor_arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let (next, keys): (u64, Vec<Vec<u8>>) = match (conn, &node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let v = c.on_node(host, *port, &scan).await?;
                redis::from_redis_value(v.extract_error()?).map_err(RedisError::from)?
            }
            _ => query(conn.clone(), &scan).await?,
        };
        let groups = match conn {
            Conn::Single(_) => vec![(0..keys.len()).collect()],
            Conn::Cluster(_) => group_by_slot(&keys).into_iter().map(|(_, g)| g).collect(),
        };
        for group in groups.iter().filter(|g: &&Vec<usize>| !g.is_empty()) {
            let mut unlink = redis::cmd("UNLINK");
            for &i in group {
                unlink.arg(&keys[i]);
            }
            removed += query::<u64>(conn.clone(), &unlink).await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// The addresses of a cluster's masters that are up (`CLUSTER NODES`).
async fn masters(conn: &Conn) -> Answer<Vec<(String, u16)>> {
    let text: String = query(conn.clone(), redis::cmd("CLUSTER").arg("NODES")).await?;
    Ok(parse_masters(&text))
}

/// The masters in `CLUSTER NODES` output: lines
/// `<id> <ip:port@cport[,hostname]> <flags> …` whose flags say `master`
/// and not `fail`.
fn parse_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
                return None;
            }
            let hostport = addr.split(['@', ',']).next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_a_prefix_are_escaped() {
        assert_eq!(match_pattern("user:"), "user:*");
        assert_eq!(match_pattern(""), "*");
        assert_eq!(match_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003,host3 master - 0 1426238318243 3 connected 10923-16383
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
aaaa 127.0.0.1:30005@40005 master,fail - 0 0 5 disconnected
";
        assert_eq!(
            parse_masters(text),
            vec![
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30003),
                ("127.0.0.1".to_owned(), 30001),
            ]
        );
    }
}
