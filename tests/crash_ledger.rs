//! A process crash loses no acknowledged write.
//!
//! RocksDB promises that with the WAL on and `sync = false` (what the engine
//! uses) a *process* crash loses nothing that was acknowledged; only a machine
//! crash may. This test checks that the engine keeps that promise through the
//! handle, the way RocksDB's own `db_crashtest.py` does:
//!
//! - A writer process (this test binary re-executed as `crash_writer`) runs 32
//!   concurrent callers on one `Keystore` over a real RocksDB directory: a
//!   random mix of `set_cache` (never-expire, short TTLs, TTL 0) and `delete`,
//!   plus a task calling `purge_expired()` and the periodic janitor (every
//!   200 ms), so expired entries are swept while it writes.
//! - Every operation goes into a ledger file: an intent line before the call,
//!   an ack line after the handle answered `Ok`, each written to the OS before
//!   the caller goes on. Only the process dies, not the machine, so no fsync
//!   is needed: what reached the page cache survives a `kill -9`.
//! - The parent kills the writer with SIGKILL at a random moment (or a few
//!   milliseconds after the writer said it started a purge), reopens the
//!   database through the handle and checks every key ever acknowledged.
//! - Rounds continue on the same database, so the ledger accumulates: later
//!   rounds recover a database that was itself recovered from a kill, with SST
//!   files from earlier recoveries, compactions, tombstones, and expiry-index
//!   entries left for the janitor; and every check covers all keys of all
//!   earlier rounds too (a value deleted in round 2 must still be absent in
//!   round 29).
//!
//! Each key is written by one caller only (keys are partitioned among the
//! callers), one operation at a time, so "the last acknowledged operation" of
//! a key is well defined and a key has at most one operation in flight when
//! the writer dies; that one may or may not have landed.
//!
//! `OBJDATAKEY_CRASH_SEED` repeats a run's random choices (the kill timing
//! still depends on the machine's speed).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use objdatakey::{Keystore, Ttl};
use serde::{Deserialize, Serialize};

/// The name of the writer test, which the parent runs in a child process.
const WRITER_TEST: &str = "crash_writer";
/// Environment of the writer child: database directory, ledger file, round, seed.
const ENV_DIR: &str = "OBJDATAKEY_CRASH_WRITER_DIR";
const ENV_LEDGER: &str = "OBJDATAKEY_CRASH_WRITER_LEDGER";
const ENV_ROUND: &str = "OBJDATAKEY_CRASH_WRITER_ROUND";
const ENV_SEED: &str = "OBJDATAKEY_CRASH_WRITER_SEED";
/// Set by a person to repeat a run.
const ENV_USER_SEED: &str = "OBJDATAKEY_CRASH_SEED";

/// Concurrent callers in the writer; caller `c` owns the keys `i` with `i % CALLERS == c`.
const CALLERS: u64 = 32;
const KEYS_PER_CALLER: u64 = 64;
/// Kill/recover/check rounds.
const ROUNDS: u32 = 30;
/// Every third round the kill lands just after the writer starts a purge.
const PURGE_KILL_EVERY: u32 = 3;

/// What the writer stores: the sequence number of the operation that wrote it
/// (unique and increasing over the whole run), the key (so a value under the
/// wrong key shows), and padding whose length and letter follow from `seq`
/// (some values are 4 KiB, so memtables fill and compactions run).
#[derive(Debug, Serialize, Deserialize)]
struct Val {
    key: String,
    seq: u64,
    pad: String,
}

fn pad_for(seq: u64) -> String {
    let len = if seq.is_multiple_of(50) {
        4096
    } else {
        (seq % 509) as usize
    };
    let letter = char::from(b'a' + (seq % 26) as u8);
    std::iter::repeat_n(letter, len).collect()
}

fn key_name(i: u64) -> String {
    format!("crash:{i:05}")
}

/// Wall-clock nanoseconds since the epoch: the clock the engine's TTLs use.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// Unix seconds as the engine computes them (`Duration::as_secs_f64`), so
/// expiry bounds below round exactly as the engine's do.
fn secs(ns: u64) -> f64 {
    Duration::from_nanos(ns).as_secs_f64()
}

/// xorshift64*: the random choices need no crate, only a printed seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed: nearby seeds give unrelated streams, never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi` (the tiny modulo bias does not matter here).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------
// The writer (child process)
// ---------------------------------------------------------------------------

/// The writer. Ignored so a normal run skips it; the parent runs it as
/// `<this binary> --exact crash_writer --nocapture --ignored` with `ENV_DIR`
/// set, and kills it. Without `ENV_DIR` (someone ran `--ignored`) it does nothing.
#[test]
#[ignore = "the writer of kill9_loses_no_acknowledged_write, run only as its child process"]
fn crash_writer() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let ledger = PathBuf::from(std::env::var_os(ENV_LEDGER).expect("ledger path"));
    let round: u64 = std::env::var(ENV_ROUND).unwrap().parse().unwrap();
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(write_until_killed(PathBuf::from(dir), ledger, round, seed));
}

/// Any failure of the writer ends the process at once with a message: the
/// parent then reports that the writer exited by itself. Going on after a
/// failed (unacknowledged, maybe later applied) write would break "one
/// operation per key at a time".
fn die(what: String) -> ! {
    eprintln!("crash_writer: {what}");
    std::process::exit(3)
}

/// One ledger line, written with one `write` call so lines from different
/// callers never interleave. `File` has no user-space buffer: once `write_all`
/// returns the line is in the OS, which is all a process kill cannot undo.
fn log(ledger: &Mutex<std::fs::File>, line: &str) {
    let mut f = ledger.lock().unwrap();
    if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.flush()) {
        die(format!("ledger write failed: {e}"));
    }
}

async fn write_until_killed(dir: PathBuf, ledger: PathBuf, round: u64, seed: u64) {
    let mut cfg = common::rocks_config(&dir);
    // Periodic sweeps every 200 ms (default 300 s): a writer lives 50-800 ms,
    // so with a 1 s interval the periodic janitor would never run before
    // the kill; this way it sweeps alongside the explicit purges below.
    cfg.rocksdb.ttl_cleanup_interval = Duration::from_millis(200);
    let ks = Keystore::builder()
        .config(cfg)
        .build()
        .unwrap_or_else(|e| die(format!("open failed: {e}")));
    let ledger = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ledger)
            .unwrap_or_else(|e| die(format!("cannot open {}: {e}", ledger.display()))),
    ));
    // Sequence numbers increase over the whole run: round r uses (r+1) << 32 onwards.
    let seq = Arc::new(AtomicU64::new((round + 1) << 32));
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let (ks, ledger, seq) = (ks.clone(), ledger.clone(), seq.clone());
        let rng = Rng::new(seed ^ (round << 20) ^ (caller << 8));
        tasks.push(tokio::spawn(caller_loop(ks, ledger, seq, caller, rng)));
    }
    let mut rng = Rng::new(seed ^ (round << 20) ^ 0xFF);
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(rng.range(20, 150))).await;
            // The parent kills a few milliseconds after this line in some rounds.
            println!("purging");
            match ks.purge_expired().await {
                Ok(n) => println!("purged {n}"),
                Err(e) => die(format!("purge_expired failed: {e}")),
            }
        }
    }));
    for t in tasks {
        if let Err(e) = t.await {
            die(format!("a writer task failed: {e}"));
        }
    }
}

async fn caller_loop(
    ks: Keystore,
    ledger: Arc<Mutex<std::fs::File>>,
    seq: Arc<AtomicU64>,
    caller: u64,
    mut rng: Rng,
) {
    loop {
        let key = key_name(caller + CALLERS * rng.range(0, KEYS_PER_CALLER - 1));
        let seq = seq.fetch_add(1, Ordering::Relaxed);
        // 55% never-expire, 25% 1-3 s (they expire during later rounds and
        // checks), 5% TTL 0 (expired at once: work for every purge, and a
        // sweep racing the key's next write), 15% delete.
        let ttl = match rng.range(0, 99) {
            0..55 => Some(Ttl::Never),
            55..80 => Some(Ttl::Seconds(rng.range(1, 3))),
            80..85 => Some(Ttl::Seconds(0)),
            _ => None,
        };
        let (op, ttl_text) = match ttl {
            Some(Ttl::Seconds(s)) => ("set", s.to_string()),
            Some(_) => ("set", "never".to_string()),
            None => ("del", "-".to_string()),
        };
        log(
            &ledger,
            &format!("I {seq} {key} {op} {ttl_text} {}\n", now_ns()),
        );
        let result = match ttl {
            Some(ttl) => {
                let val = Val {
                    key: key.clone(),
                    seq,
                    pad: pad_for(seq),
                };
                ks.set_cache(&key, &val, ttl).await
            }
            None => ks.delete(&key).await.map(|_| ()),
        };
        if let Err(e) = result {
            die(format!("{op} {key} (seq {seq}) failed: {e}"));
        }
        // Acknowledged: on record before this caller's next operation.
        log(&ledger, &format!("A {seq} {}\n", now_ns()));
    }
}

// ---------------------------------------------------------------------------
// The ledger, as the parent reads it
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum LedgerOp {
    /// TTL in seconds, `None` for never.
    Set(Option<u64>),
    Del,
}

/// An operation the writer issued (its intent line).
#[derive(Debug, Clone)]
struct Intent {
    seq: u64,
    key: String,
    op: LedgerOp,
    issued_ns: u64,
    /// `ledger-NNN.txt:LINE: <text>`, for failure messages.
    source: String,
}

/// What a key must look like on reopening, by the acknowledged operations.
#[derive(Debug, Clone)]
enum Expect {
    Missing,
    Value {
        seq: u64,
        ttl: Option<u64>,
        /// Before the write started: bounds `expires_at` from below.
        issued_ns: u64,
        /// The write had finished by then (its ack, or the kill for an
        /// in-flight write found on disk): bounds `expires_at` from above.
        done_ns: u64,
    },
}

#[derive(Debug)]
struct KeyState {
    expect: Expect,
    /// Where `expect` comes from (ledger lines, or a check that saw an in-flight op land).
    why: String,
    /// The operation on this key issued but not acknowledged when the writer died.
    in_flight: Option<Intent>,
}

#[derive(Debug, Default)]
struct Figures {
    kills: u32,
    purge_kills: u32,
    acked_sets: u64,
    acked_dels: u64,
    in_flight: u64,
    in_flight_sets_landed: u64,
    torn_lines: u64,
    keys_checked: u64,
    expired_allowed: u64,
    purges_seen: u64,
    purged_entries: u64,
    losses: u64,
}

#[derive(Default)]
struct Model {
    keys: BTreeMap<String, KeyState>,
    figures: Figures,
}

/// `expires_at` as the engine stores it is whole unix seconds: `ceil(now +
/// ttl)`, or `floor(now)` for TTL 0, with `now` taken during the write. This
/// is the smallest value it can have for a write issued at `issued_ns`.
fn earliest_expiry(ttl: u64, issued_ns: u64) -> f64 {
    if ttl == 0 {
        secs(issued_ns).floor()
    } else {
        (secs(issued_ns) + ttl as f64).ceil()
    }
}

/// The largest `expires_at` for a write that had finished by `done_ns`.
fn latest_expiry(ttl: u64, done_ns: u64) -> f64 {
    earliest_expiry(ttl, done_ns)
}

/// Whether a value may have expired by the end of a read that finished at
/// `read_done_ns`: the engine's "now" during the read was no later than
/// that, and it treats a value as expired when `now >= expires_at`.
fn may_have_expired(ttl: Option<u64>, issued_ns: u64, read_done_ns: u64) -> bool {
    ttl.is_some_and(|t| secs(read_done_ns) >= earliest_expiry(t, issued_ns))
}

impl Model {
    /// Applies one round's ledger: acknowledged operations become the
    /// expectation of their key; the intents left without an ack are in flight.
    fn apply_ledger(&mut self, path: &Path) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes).expect("ledger is UTF-8"),
            // Killed before it opened the ledger.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        };
        let mut lines: Vec<&str> = text.split('\n').collect();
        // The text after the last newline is empty, or a line the kill cut
        // short (each line is one `write`, so this should not happen; an ack
        // cut short would only make its operation count as in flight).
        if !lines.pop().unwrap_or_default().is_empty() {
            self.figures.torn_lines += 1;
        }
        let mut pending: HashMap<u64, Intent> = HashMap::new();
        for (n, line) in lines.iter().enumerate() {
            let source = format!("{name}:{}: {line}", n + 1);
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["I", seq, key, op, ttl, issued] => {
                    let op = match (*op, *ttl) {
                        ("del", "-") => LedgerOp::Del,
                        ("set", "never") => LedgerOp::Set(None),
                        ("set", t) => LedgerOp::Set(Some(t.parse().expect(&source))),
                        _ => panic!("bad ledger line {source}"),
                    };
                    let seq: u64 = seq.parse().expect(&source);
                    let intent = Intent {
                        seq,
                        key: key.to_string(),
                        op,
                        issued_ns: issued.parse().expect(&source),
                        source,
                    };
                    assert!(pending.insert(seq, intent).is_none(), "duplicate seq");
                }
                ["A", seq, acked] => {
                    let seq: u64 = seq.parse().expect(&source);
                    let acked_ns: u64 = acked.parse().expect(&source);
                    let intent = pending
                        .remove(&seq)
                        .unwrap_or_else(|| panic!("ack without intent: {source}"));
                    let expect = match intent.op {
                        LedgerOp::Set(ttl) => {
                            self.figures.acked_sets += 1;
                            Expect::Value {
                                seq,
                                ttl,
                                issued_ns: intent.issued_ns,
                                done_ns: acked_ns,
                            }
                        }
                        LedgerOp::Del => {
                            self.figures.acked_dels += 1;
                            Expect::Missing
                        }
                    };
                    let why = format!("{} (acked at {}:{})", intent.source, name, n + 1);
                    self.keys.insert(
                        intent.key,
                        KeyState {
                            expect,
                            why,
                            in_flight: None,
                        },
                    );
                }
                _ => panic!("bad ledger line {source}"),
            }
        }
        for (_, intent) in pending {
            self.figures.in_flight += 1;
            let state = self
                .keys
                .entry(intent.key.clone())
                .or_insert_with(|| KeyState {
                    expect: Expect::Missing,
                    why: "no acknowledged operation yet".into(),
                    in_flight: None,
                });
            assert!(
                state.in_flight.is_none(),
                "two operations in flight on {}: the harness broke its one-caller-per-key rule",
                intent.key
            );
            state.in_flight = Some(intent);
        }
    }

    /// Reopens the database through the handle and checks every key the
    /// ledger knows. Answers a description of each loss. Afterwards each
    /// key's expectation is what was found (an in-flight operation that
    /// landed is now as durable as an acknowledged one; one that did not
    /// land never will), so later rounds check against it.
    async fn check(&mut self, dir: &Path, killed_ns: u64) -> Vec<String> {
        let ks = Keystore::builder()
            .config(common::rocks_config(dir))
            .build()
            .unwrap_or_else(|e| panic!("reopen after the kill failed: {e}"));
        let mut losses = Vec::new();
        for (key, state) in &mut self.keys {
            let read_start_ns = now_ns();
            let found = ks.get_cache::<Val>(key).await;
            let read_done_ns = now_ns();
            let in_flight = state.in_flight.take();
            let flight_text = in_flight
                .as_ref()
                .map_or("none".into(), |i| i.source.clone());
            let mut fail = |found: String| {
                losses.push(format!(
                    "key {key}: expected by the ledger: {:?} from {}; in flight at the kill: {}; \
                     found: {found} (read at {:.3})",
                    state.expect,
                    state.why,
                    flight_text,
                    secs(read_done_ns)
                ))
            };
            self.figures.keys_checked += 1;
            match found {
                Err(e) => fail(format!("read error: {e}")),
                Ok(Some(v)) => {
                    if v.key != *key || v.pad != pad_for(v.seq) {
                        fail(format!(
                            "a damaged value: key {:?}, seq {}, pad of {} bytes",
                            v.key,
                            v.seq,
                            v.pad.len()
                        ));
                        continue;
                    }
                    match (&state.expect, &in_flight) {
                        (
                            Expect::Value {
                                seq, ttl, done_ns, ..
                            },
                            _,
                        ) if *seq == v.seq => {
                            // Not a loss, but an expired value must never be served.
                            if let Some(t) = ttl
                                && secs(read_start_ns) >= latest_expiry(*t, *done_ns)
                            {
                                fail(format!(
                                    "value seq {} served after it expired (expires_at <= {})",
                                    v.seq,
                                    latest_expiry(*t, *done_ns)
                                ));
                            }
                        }
                        (
                            _,
                            Some(Intent {
                                seq,
                                op: LedgerOp::Set(ttl),
                                issued_ns,
                                source,
                                ..
                            }),
                        ) if *seq == v.seq => {
                            self.figures.in_flight_sets_landed += 1;
                            state.expect = Expect::Value {
                                seq: *seq,
                                ttl: *ttl,
                                issued_ns: *issued_ns,
                                done_ns: killed_ns,
                            };
                            state.why = format!("{source} (in flight, found after the kill)");
                        }
                        _ => fail(format!(
                            "value seq {} ({})",
                            v.seq,
                            match &state.expect {
                                Expect::Value { seq, .. } if v.seq < *seq =>
                                    "an older value: the acknowledged one is lost",
                                Expect::Missing => "a value that was deleted",
                                _ => "a value no operation in flight wrote",
                            }
                        )),
                    }
                }
                Ok(None) => {
                    let flight_explains = match &in_flight {
                        Some(i) => match i.op {
                            LedgerOp::Del => true,
                            LedgerOp::Set(ttl) => may_have_expired(ttl, i.issued_ns, read_done_ns),
                        },
                        None => false,
                    };
                    match &state.expect {
                        Expect::Missing => {}
                        _ if flight_explains => {}
                        Expect::Value { ttl, issued_ns, .. }
                            if may_have_expired(*ttl, *issued_ns, read_done_ns) =>
                        {
                            self.figures.expired_allowed += 1;
                        }
                        Expect::Value { ttl, issued_ns, .. } => {
                            let bound = ttl.map_or("never expires".to_string(), |t| {
                                format!("expires_at >= {}", earliest_expiry(t, *issued_ns))
                            });
                            fail(format!(
                                "nothing: the acknowledged value is LOST ({bound}, not expired at {:.3})",
                                secs(read_done_ns)
                            ));
                            continue;
                        }
                    }
                    if !matches!(state.expect, Expect::Missing) {
                        state.why = format!(
                            "missing at the check after {} (expired, or an in-flight op landed)",
                            state.why
                        );
                    }
                    state.expect = Expect::Missing;
                }
            }
        }
        ks.shutdown().await;
        self.figures.losses += losses.len() as u64;
        losses
    }
}

// ---------------------------------------------------------------------------
// The parent: spawn, kill, recover, check
// ---------------------------------------------------------------------------

/// Starts the writer: this test binary, running only `crash_writer`. Its
/// stdout lines ("purging", "purged N") arrive on the channel.
fn spawn_writer(
    dir: &Path,
    ledger: &Path,
    round: u32,
    seed: u64,
) -> (Child, mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", WRITER_TEST, "--nocapture", "--ignored"])
        .args(["--test-threads", "1"])
        .env(ENV_DIR, dir)
        .env(ENV_LEDGER, ledger)
        .env(ENV_ROUND, round.to_string())
        .env(ENV_SEED, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx, reader)
}

#[test]
fn kill9_loses_no_acknowledged_write() {
    let seed = std::env::var(ENV_USER_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now_ns);
    println!("crash ledger: seed {seed} ({ENV_USER_SEED}={seed} repeats the random choices)");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    for round in 0..ROUNDS {
        let ledger = dir.path().join(format!("ledger-{round:03}.txt"));
        let spawned = Instant::now();
        let (mut child, lines, reader) = spawn_writer(dir.path(), &ledger, round, seed);
        let purge_kill = round % PURGE_KILL_EVERY == PURGE_KILL_EVERY - 1;
        let how = if purge_kill {
            // Let it write a while, then kill 0-3 ms after it starts a purge:
            // inside the sweep, or just after it, with expired entries from
            // earlier rounds and TTL-0 writes to remove.
            let settle = Duration::from_millis(rng.range(100, 700));
            let delay = Duration::from_millis(rng.range(0, 3));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let line = lines
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .unwrap_or_else(|_| match child.try_wait() {
                        Ok(Some(status)) => panic!(
                            "round {round}: the writer exited by itself ({status}); its stderr is above"
                        ),
                        _ => panic!("round {round}: the writer never started a purge"),
                    });
                if line == "purging" && spawned.elapsed() >= settle {
                    break;
                }
            }
            std::thread::sleep(delay);
            model.figures.purge_kills += 1;
            format!("{} ms after a purge started", delay.as_millis())
        } else {
            let wait = Duration::from_millis(rng.range(50, 800));
            std::thread::sleep(wait);
            format!("at a random moment, {} ms after spawn", wait.as_millis())
        };
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "round {round}: the writer exited by itself ({status}) before the kill; \
                 its stderr is above"
            );
        }
        // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no RocksDB close.
        child.kill().expect("kill -9 the writer");
        child.wait().unwrap();
        let killed_ns = now_ns();
        let alive = spawned.elapsed();
        model.figures.kills += 1;
        reader.join().unwrap();
        for line in lines.try_iter() {
            if let Some(n) = line.strip_prefix("purged ") {
                model.figures.purges_seen += 1;
                model.figures.purged_entries += n.parse::<u64>().unwrap();
            }
        }
        let before = (model.figures.acked_sets, model.figures.acked_dels);
        model.apply_ledger(&ledger);
        let losses = rt.block_on(model.check(dir.path(), killed_ns));
        println!(
            "round {round:2}: killed {how}, {} ms alive; +{} sets +{} deletes acknowledged; \
             {} keys checked, {} lost",
            alive.as_millis(),
            model.figures.acked_sets - before.0,
            model.figures.acked_dels - before.1,
            model.keys.len(),
            losses.len()
        );
        if !losses.is_empty() {
            for loss in &losses {
                println!("LOSS round {round}: {loss}");
            }
            panic!(
                "round {round}: {} acknowledged operation(s) lost after kill -9 (listed above); \
                 ledgers and database in {} (kept)",
                losses.len(),
                dir.keep().display()
            );
        }
    }
    let f = &model.figures;
    println!(
        "crash ledger report (seed {seed}): kills {} ({} right after a purge started), \
         acknowledged writes {}, acknowledged deletes {}, in flight at kills {} \
         (sets found landed {}), torn ledger lines {}, keys {} (checks {}), \
         allowed as expired {}, writer purges {} removing {} entries, losses {}, {:.1} s",
        f.kills,
        f.purge_kills,
        f.acked_sets,
        f.acked_dels,
        f.in_flight,
        f.in_flight_sets_landed,
        f.torn_lines,
        model.keys.len(),
        f.keys_checked,
        f.expired_allowed,
        f.purges_seen,
        f.purged_entries,
        f.losses,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(f.losses, 0);
    // A run that did too little proves nothing.
    assert!(f.kills >= 20, "only {} kills", f.kills);
    assert!(
        f.acked_sets + f.acked_dels >= 5000,
        "only {} acknowledged operations",
        f.acked_sets + f.acked_dels
    );
    assert!(
        f.acked_dels >= 500,
        "only {} acknowledged deletes",
        f.acked_dels
    );
    assert!(f.expired_allowed > 0, "no TTL expired during the run");
    assert!(
        f.purged_entries > 0,
        "the writer's purges never removed anything"
    );
}

/// The check itself: a ledger written by hand against a database that lost,
/// resurrected or rolled back values must report exactly those keys, with
/// their ledger lines; what the ledger allows must pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_reports_each_loss_with_its_ledger_line() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ns();
    let ledger = dir.path().join("ledger-000.txt");
    let lines = [
        // 1: acknowledged never-expire value; the database holds an older one.
        format!("I 10 {} set never {t}", key_name(1)),
        format!("A 10 {t}"),
        // 2: acknowledged delete; the database holds a value again.
        format!("I 11 {} del - {t}", key_name(2)),
        format!("A 11 {t}"),
        // 3: acknowledged value living an hour; the database has nothing.
        format!("I 12 {} set 3600 {t}", key_name(3)),
        format!("A 12 {t}"),
        // 4: in flight, did not land: fine.
        format!("I 13 {} set never {t}", key_name(4)),
        // 5: acknowledged, then a later write in flight that landed: fine.
        format!("I 14 {} set never {t}", key_name(5)),
        format!("A 14 {t}"),
        format!("I 15 {} set never {t}", key_name(5)),
        // 6: acknowledged with TTL 0: expired at once, missing is fine.
        format!("I 16 {} set 0 {t}", key_name(6)),
        format!("A 16 {t}"),
        // 7: acknowledged and present: fine.
        format!("I 17 {} set 3600 {t}", key_name(7)),
        format!("A 17 {t}"),
    ];
    std::fs::write(&ledger, lines.join("\n") + "\n").unwrap();
    let ks = Keystore::builder()
        .config(common::rocks_config(dir.path()))
        .build()
        .unwrap();
    let put = |i: u64, seq: u64| {
        let ks = ks.clone();
        async move {
            let v = Val {
                key: key_name(i),
                seq,
                pad: pad_for(seq),
            };
            ks.set_cache(&key_name(i), &v, Ttl::Never).await.unwrap();
        }
    };
    put(1, 9).await;
    put(2, 5).await;
    put(5, 15).await;
    put(7, 17).await;
    ks.shutdown().await;

    let mut model = Model::default();
    model.apply_ledger(&ledger);
    let losses = model.check(dir.path(), now_ns()).await;
    let report = losses.join("\n");
    // What a failure prints (seen with --nocapture).
    println!("{report}");
    assert_eq!(losses.len(), 3, "{report}");
    assert!(
        losses[0].starts_with(&format!("key {}:", key_name(1))),
        "{report}"
    );
    assert!(losses[0].contains("ledger-000.txt:1: I 10"), "{report}");
    assert!(losses[0].contains("an older value"), "{report}");
    assert!(
        losses[1].starts_with(&format!("key {}:", key_name(2))),
        "{report}"
    );
    assert!(losses[1].contains("a value that was deleted"), "{report}");
    assert!(
        losses[2].starts_with(&format!("key {}:", key_name(3))),
        "{report}"
    );
    assert!(losses[2].contains("LOST"), "{report}");
    assert_eq!(model.figures.in_flight_sets_landed, 1);
    assert_eq!(model.figures.expired_allowed, 1);
}
