//! The one place the tests build a keystore for a backend under test.
//!
//! [`Backend`] names what the keystore runs on; [`Setup`] holds the knobs
//! tests vary (request timeout, cross-process lock, in-process tier, clock,
//! config edits) and starts what the backend needs: a temporary RocksDB
//! directory, a real `redis-server` on a free loopback port (the Dragonfly
//! backend speaks its protocol to one), or a 3-master Redis Cluster. The
//! [`Fixture`] it answers holds the keystore and the guard of what it runs
//! on: dropping it stops the servers and removes the directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use objdatakey::metrics::MetricsRegistry;
use objdatakey::{BackendKind, Clock, Config, Keystore, Result};
use tempfile::TempDir;

use super::redis_server::{Options, RedisCluster, RedisServer, cluster_config, server_config};
use super::rocks_config;

/// A backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded RocksDB in a temporary directory, with a manual clock.
    RocksDb,
    /// One redis-server.
    Redis,
    /// The `keystore.dragonfly` section against one redis-server (no
    /// DragonflyDB binary is installable here; it speaks the same protocol).
    Dragonfly,
    /// A Redis Cluster of three masters, no replicas.
    Cluster,
}

impl Backend {
    /// The backend the keystore reports.
    pub fn kind(self) -> BackendKind {
        match self {
            Backend::RocksDb => BackendKind::RocksDb,
            Backend::Redis | Backend::Cluster => BackendKind::Redis,
            Backend::Dragonfly => BackendKind::Dragonfly,
        }
    }

    /// Whether a server holds the data (and sets the TTLs).
    pub fn is_server(self) -> bool {
        self != Backend::RocksDb
    }

    /// The shortest TTL the backend stores: servers raise shorter ones to
    /// 5 s (a floor that keeps a busy key from vanishing between a caller's
    /// SET and GET); RocksDB keeps what it is given.
    pub fn ttl_floor(self) -> u64 {
        if self.is_server() { 5 } else { 0 }
    }

    /// The knobs, at their defaults, for this backend.
    pub fn setup(self) -> Setup {
        Setup {
            backend: self,
            server: Options::default(),
            request_timeout: None,
            max_in_flight: None,
            clock: None,
            registry: None,
            io_runtime: None,
            edits: Vec::new(),
        }
    }

    /// A fixture with the default knobs (see [`Setup::start`]).
    pub fn start(self) -> Option<Fixture> {
        self.setup().start()
    }
}

type Edit = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// How to build a keystore: the backend and the knobs tests vary.
#[derive(Clone)]
pub struct Setup {
    backend: Backend,
    server: Options,
    request_timeout: Option<Duration>,
    max_in_flight: Option<usize>,
    clock: Option<Clock>,
    registry: Option<MetricsRegistry>,
    io_runtime: Option<tokio::runtime::Handle>,
    edits: Vec<Edit>,
}

impl Setup {
    /// Longest a request may take (default: the config's, 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Requests in flight at once (default: the config's).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// `get_or_set` loads under the cross-process lock, held up to `lock`.
    pub fn lock(self, lock: Duration) -> Self {
        self.config(move |c| c.engine.get_or_set_lock = Some(lock))
    }

    /// The in-process tier on, copies living up to `ttl_max`.
    pub fn tier(self, ttl_max: Duration) -> Self {
        self.config(move |c| {
            c.tier.enabled = true;
            c.tier.ttl_max = ttl_max;
        })
    }

    /// The keystore's clock (default: a manual one on RocksDB, so TTL tests
    /// need no sleeping; the system clock on servers, whose TTLs are theirs).
    pub fn clock(mut self, clock: &Clock) -> Self {
        self.clock = Some(clock.clone());
        self
    }

    /// Record metrics into `registry` instead of the process-wide one.
    pub fn metrics_registry(mut self, registry: &MetricsRegistry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Redis and Dragonfly: the socket I/O runs on this runtime.
    pub fn io_runtime(mut self, handle: &tokio::runtime::Handle) -> Self {
        self.io_runtime = Some(handle.clone());
        self
    }

    /// Another backend on the same place: Redis and Dragonfly share one
    /// server, so a fixture of one builds keystores of the other on it.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// How the redis-server (or each cluster node) starts: a password, an
    /// ACL user, TLS.
    pub fn server_options(mut self, options: Options) -> Self {
        self.server = options;
        self
    }

    /// Any other change to the config the keystore is built with, applied
    /// after the backend's address and the knobs above.
    pub fn config(mut self, edit: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        self.edits.push(Arc::new(edit));
        self
    }

    /// Starts what the backend needs and builds a keystore on it; `None`
    /// when redis-server is missing outside CI (under `CI=true` that panics:
    /// see [`have_tool`](super::have_tool)).
    pub fn start(self) -> Option<Fixture> {
        let place = match self.backend {
            Backend::RocksDb => Place::Dir(tempfile::tempdir().expect("a temporary directory")),
            Backend::Redis | Backend::Dragonfly => {
                Place::Server(RedisServer::start_with(self.server.clone())?)
            }
            Backend::Cluster => Place::Cluster(RedisCluster::start(3)?),
        };
        let clock = self.clock.clone().unwrap_or_else(|| match self.backend {
            Backend::RocksDb => Clock::manual(),
            _ => Clock::system(),
        });
        let ks = self
            .build(&place, &clock)
            .unwrap_or_else(|e| panic!("build a {:?} keystore: {e}", self.backend));
        Some(Fixture {
            ks,
            clock,
            backend: self.backend,
            setup: self,
            place,
        })
    }

    /// A RocksDB keystore at `dir/db` (a directory the caller owns: to lay
    /// out files before opening, or to reopen what an earlier one wrote),
    /// and its clock.
    pub fn open_in(self, dir: &Path) -> (Keystore, Clock) {
        assert_eq!(self.backend, Backend::RocksDb, "open_in is for RocksDB");
        let clock = self.clock.clone().unwrap_or_else(Clock::manual);
        let ks = self
            .build_config(self.edited(rocks_config(dir)), &clock)
            .expect("open RocksDB keystore");
        (ks, clock)
    }

    /// A Redis or Dragonfly keystore on `127.0.0.1:port`, with no server
    /// started: for what a client sees where nothing listens (it connects
    /// lazily, so building succeeds).
    pub fn at_port(self, port: u16) -> Keystore {
        assert!(self.backend.is_server(), "at_port is for a server");
        let config = self.edited(server_config(self.backend.kind(), port));
        let clock = self.clock.clone().unwrap_or_else(Clock::system);
        self.build_config(config, &clock)
            .expect("build a network keystore (connects lazily)")
    }

    /// The config for a keystore on `place`.
    fn config_on(&self, place: &Place) -> Config {
        self.edited(match place {
            Place::Dir(dir) => rocks_config(dir.path()),
            Place::Server(server) => server_config(self.backend.kind(), server.port),
            Place::Cluster(cluster) => cluster_config(cluster),
        })
    }

    /// `config` with every edit of [`config`](Self::config) applied.
    fn edited(&self, mut config: Config) -> Config {
        for edit in &self.edits {
            edit(&mut config);
        }
        config
    }

    fn build(&self, place: &Place, clock: &Clock) -> Result<Keystore> {
        self.build_config(self.config_on(place), clock)
    }

    fn build_config(&self, config: Config, clock: &Clock) -> Result<Keystore> {
        let mut builder = Keystore::builder().config(config).clock(clock.clone());
        if let Some(timeout) = self.request_timeout {
            builder = builder.request_timeout(timeout);
        }
        if let Some(n) = self.max_in_flight {
            builder = builder.max_in_flight(n);
        }
        if let Some(registry) = &self.registry {
            builder = builder.metrics_registry(registry.clone());
        }
        if let Some(handle) = &self.io_runtime {
            builder = builder.io_runtime(handle.clone());
        }
        builder.build()
    }
}

/// What a fixture's keystore runs on.
enum Place {
    Dir(TempDir),
    Server(RedisServer),
    Cluster(RedisCluster),
}

/// A keystore on a backend under test, and the guard of what it runs on.
///
/// The keystore is dropped before the guard (fields drop in order), so a
/// RocksDB database closes before its directory goes and a client before
/// its server.
pub struct Fixture {
    pub ks: Keystore,
    /// The keystore's clock: manual on RocksDB unless set otherwise.
    pub clock: Clock,
    pub backend: Backend,
    setup: Setup,
    place: Place,
}

impl Fixture {
    /// Stops the keystore (every clone of it); the guard stays.
    pub async fn shutdown(&self) {
        self.ks.clone().shutdown().await;
    }

    /// The config the keystore was built with.
    pub fn config(&self) -> Config {
        self.setup.config_on(&self.place)
    }

    /// Another keystore with the same knobs and clock on the same backend
    /// (on RocksDB the database must be closed first: it takes one opener).
    pub fn another(&self) -> Keystore {
        self.another_with(|s| s)
    }

    /// Another keystore on the same backend, with the knobs `change` sets.
    pub fn another_with(&self, change: impl FnOnce(Setup) -> Setup) -> Keystore {
        self.try_another_with(change)
            .expect("build another keystore on the fixture")
    }

    /// As [`another_with`](Self::another_with), answering the build error.
    pub fn try_another_with(&self, change: impl FnOnce(Setup) -> Setup) -> Result<Keystore> {
        let setup = change(self.setup.clone());
        let clock = setup.clock.clone().unwrap_or_else(|| self.clock.clone());
        setup.build(&self.place, &clock)
    }

    /// The RocksDB database's directory's parent (the database is `dir()/db`).
    pub fn dir(&self) -> &Path {
        match &self.place {
            Place::Dir(dir) => dir.path(),
            _ => panic!("{:?} keeps no directory", self.backend),
        }
    }

    /// The RocksDB database's path.
    pub fn db_path(&self) -> PathBuf {
        self.dir().join("db")
    }

    /// The redis-server (Redis and Dragonfly).
    pub fn server(&self) -> &RedisServer {
        match &self.place {
            Place::Server(server) => server,
            _ => panic!("{:?} runs on no single server", self.backend),
        }
    }

    /// The redis-server, to kill, stop or restart it.
    pub fn server_mut(&mut self) -> &mut RedisServer {
        match &mut self.place {
            Place::Server(server) => server,
            _ => panic!("{:?} runs on no single server", self.backend),
        }
    }

    /// The cluster (Cluster).
    pub fn cluster(&self) -> &RedisCluster {
        match &self.place {
            Place::Cluster(cluster) => cluster,
            _ => panic!("{:?} runs on no cluster", self.backend),
        }
    }

    /// The cluster, to kill or restart a node.
    pub fn cluster_mut(&mut self) -> &mut RedisCluster {
        match &mut self.place {
            Place::Cluster(cluster) => cluster,
            _ => panic!("{:?} runs on no cluster", self.backend),
        }
    }

    /// The servers holding the data: none on RocksDB, every master of a cluster.
    pub fn nodes(&self) -> Vec<&RedisServer> {
        match &self.place {
            Place::Dir(_) => Vec::new(),
            Place::Server(server) => vec![server],
            Place::Cluster(cluster) => cluster.nodes.iter().collect(),
        }
    }

    /// How many keys the servers hold (`DBSIZE` summed over the masters);
    /// `None` on RocksDB.
    pub fn stored_keys(&self) -> Option<u64> {
        self.backend.is_server().then(|| {
            self.nodes()
                .iter()
                .map(|n| n.cli(&["DBSIZE"]).trim().parse::<u64>().expect("DBSIZE"))
                .sum()
        })
    }

    /// The TTL the server reports for `name` (`TTL`: seconds, -1 without
    /// expiry, -2 when missing), asked of the master that holds it; `None`
    /// on RocksDB.
    pub fn server_ttl(&self, name: &str) -> Option<i64> {
        let nodes = self.nodes();
        let first = nodes.first()?;
        // `-c` follows a cluster's redirection to the master of the name's slot.
        let answer = first.cli(&["-c", "TTL", name]);
        Some(answer.trim().parse().expect("TTL answers a number"))
    }

    /// Lets `by` pass for the stored entries. RocksDB: the manual clock moves
    /// on. Servers: each key with a TTL gets `by` less of it (`PEXPIRE`),
    /// and those whose time is up are left to the server's own expiry, which
    /// this waits for; the keystore's clock moves too when it is manual.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        let by_ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let mut expiring = Vec::new();
        for node in self.nodes() {
            let mut raw = node.raw();
            let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
            for key in keys {
                let left: i64 = redis::cmd("PTTL").arg(&key).query(&mut raw).unwrap();
                if left < 0 {
                    continue; // no expiry (-1), or gone meanwhile (-2)
                }
                let rest = left.saturating_sub(by_ms).max(1);
                let _: i64 = redis::cmd("PEXPIRE")
                    .arg(&key)
                    .arg(rest)
                    .query(&mut raw)
                    .unwrap();
                if left <= by_ms {
                    expiring.push((node.port, key));
                }
            }
        }
        let give_up = Instant::now() + Duration::from_secs(10);
        for (port, key) in expiring {
            let node = self.nodes().into_iter().find(|n| n.port == port).unwrap();
            let mut raw = node.raw();
            while redis::cmd("EXISTS")
                .arg(&key)
                .query::<i64>(&mut raw)
                .unwrap()
                != 0
            {
                assert!(
                    Instant::now() < give_up,
                    "the server did not expire {:?} in 10 s",
                    String::from_utf8_lossy(&key)
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}
