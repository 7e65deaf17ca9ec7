//! Helpers shared by the integration tests: temp RocksDB configs and handles.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod redis_server;

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

/// A RocksDB keystore at `dir/db` with a manual clock.
pub fn rocks_keystore(dir: &Path) -> (Keystore, Clock) {
    let clock = Clock::manual();
    let ks = Keystore::builder()
        .config(rocks_config(dir))
        .clock(clock.clone())
        .build()
        .expect("open RocksDB keystore");
    (ks, clock)
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

/// Every key in a closed RocksDB database, with its value.
pub fn raw_entries(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = rocksdb::DB::open_default(path).expect("open raw RocksDB");
    db.iterator(rocksdb::IteratorMode::Start)
        .map(|kv| {
            let (k, v) = kv.expect("iterate");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Writes raw entries into a (closed) RocksDB database, creating it.
pub fn raw_put(path: &Path, entries: &[(&[u8], &[u8])]) {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    let db = rocksdb::DB::open(&opts, path).expect("open raw RocksDB");
    for (k, v) in entries {
        db.put(k, v).expect("raw put");
    }
}

/// The CLI binary built for these tests.
pub fn cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_objdatakey"))
}
