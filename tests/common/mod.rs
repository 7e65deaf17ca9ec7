//! Helpers shared by the integration tests: the keystore fixture for every
//! backend ([`fixture`]), real redis-server processes ([`redis_server`]),
//! RocksDB configs and raw access to closed databases.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub mod fixture;
pub mod redis_server;

// Not every test binary uses every name.
#[allow(unused_imports)]
pub use fixture::{Backend, Fixture, Setup};
use objdatakey::{BackendKind, Clock, Config, Keystore};

/// A config selecting RocksDB at `dir/db`.
pub fn rocks_config(dir: &Path) -> Config {
    let mut c = Config {
        backend: BackendKind::RocksDb,
        ..Config::default()
    };
    c.rocksdb.path = dir.join("db");
    c
}

/// A RocksDB keystore at `dir/db` with a manual clock (the fixture's
/// defaults, on a directory the caller owns).
pub fn rocks_keystore(dir: &Path) -> (Keystore, Clock) {
    Backend::RocksDb.setup().open_in(dir)
}

/// Polls `f` until it answers true or `limit` passes; answers the last result.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The engine's expiry index database: this subdirectory of the database.
pub const INDEX_DIR: &str = "objdatakey-expiry";

/// Opens a closed RocksDB database with every column family it has (RocksDB
/// refuses to open one without listing them all), creating it when missing.
pub fn raw_open(path: &Path) -> rocksdb::DB {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    // Files it writes (a recovered log flushed at open) stay readable by Python.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_format_version(objdatakey::config::DEFAULT_FORMAT_VERSION);
    opts.set_block_based_table_factory(&table);
    let cfs = rocksdb::DB::list_cf(&opts, path).unwrap_or_default();
    rocksdb::DB::open_cf(&opts, path, cfs).expect("open raw RocksDB")
}

/// Every key in the default column family (what Python iterates) of a closed
/// RocksDB database, with its value.
pub fn raw_entries(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw_cf_entries(path, rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
}

/// Every key of the expiry index of a closed RocksDB database.
pub fn raw_index_keys(path: &Path) -> Vec<Vec<u8>> {
    raw_cf_entries(&path.join(INDEX_DIR), rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Every entry of column family `cf` (none when it does not exist).
pub fn raw_cf_entries(path: &Path, cf: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = raw_open(path);
    let Some(handle) = db.cf_handle(cf) else {
        return Vec::new();
    };
    db.iterator_cf(handle, rocksdb::IteratorMode::Start)
        .map(|kv| {
            let (k, v) = kv.expect("iterate");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Writes raw entries into the default column family of a (closed) RocksDB
/// database, creating it.
pub fn raw_put(path: &Path, entries: &[(&[u8], &[u8])]) {
    let db = raw_open(path);
    for (k, v) in entries {
        db.put(k, v).expect("raw put");
    }
}

/// The CLI binary built for these tests.
pub fn cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_objdatakey"))
}

/// Whether `tool` can be run; panics under CI when it cannot.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var_os("CI").is_some_and(|v| v == "true" || v == "1") {
            panic!("{tool} is not installed, and CI=true: run scripts/install-deps.sh");
        }
        eprintln!("SKIPPED: {tool} is not installed (scripts/install-deps.sh installs it)");
    }
    found
}

/// A free TCP port on 127.0.0.1 (the OS picks; we release it for the server).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}
