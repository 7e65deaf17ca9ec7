//! What only the RocksDB backend does, through the handle: the stored
//! format Python shares, real-time expiry, the janitor and its index,
//! locks, corrupt values, write stalls and grouped writes, reads from files
//! and memory. What every backend promises (round trips, TTLs, expiry,
//! batches, concurrency) is in `tests/contract.rs`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use objdatakey::{Clock, ErrorKind, Keystore, Ttl};
use serde::Deserialize;

#[test]
fn stored_format_is_the_python_envelope_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // A value written by the Python module (json.dumps spacing, float expiry).
    raw_put(
        &db,
        &[
            (b"py", br#"{"data": "{\"k\": [1, 2]}", "expires_at": -1}"#),
            (b"py_expired", br#"{"data": "1", "expires_at": 1000.5}"#),
        ],
    );
    let (ks, clock) = rocks_keystore(dir.path());
    let sync = ks.blocking();
    assert_eq!(
        sync.get_cache::<serde_json::Value>("py").unwrap(),
        Some(serde_json::json!({"k": [1, 2]}))
    );
    assert_eq!(sync.get_cache::<u32>("py_expired").unwrap(), None);
    sync.set_cache("never", &vec!["a", "b"], Ttl::Never)
        .unwrap();
    sync.set_cache("ttl", &serde_json::json!({"x": "y\"z"}), Ttl::Seconds(100))
        .unwrap();
    let now = clock.now_unix().as_secs_f64();
    drop(sync);
    drop(ks); // closes the database (synchronous context: waits for the lock)

    let entries = raw_entries(&db);
    let get = |k: &[u8]| {
        entries
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
            .unwrap()
    };
    assert_eq!(get(b"never"), r#"{"data":"[\"a\",\"b\"]","expires_at":-1}"#);
    let ttl: serde_json::Value = serde_json::from_str(&get(b"ttl")).unwrap();
    assert_eq!(ttl["data"], r#"{"x":"y\"z"}"#);
    let exp = ttl["expires_at"].as_i64().unwrap() as f64;
    assert!(exp >= now + 100.0 && exp <= now + 101.0, "{exp} vs {now}");
    // The keys Python iterates are exactly the names' UTF-8 bytes; the expiry
    // index lives in its own database.
    let names: Vec<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(names, vec![&b"never"[..], b"py", b"py_expired", b"ttl"]);
    let index = raw_index_keys(&db);
    assert_eq!(index.len(), 1);
    assert!(index[0].starts_with(&[0xFF, b'x']) && index[0].ends_with(b"ttl"));
}

#[test]
fn one_second_ttl_expires_in_real_time() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::from_config(rocks_config(dir.path())).unwrap();
    let sync = ks.blocking();
    sync.set_cache("k", &"v", Ttl::Seconds(1)).unwrap();
    assert_eq!(sync.get_cache::<String>("k").unwrap().as_deref(), Some("v"));
    // Whole-second expiry rounds up: gone within two seconds.
    assert!(eventually(Duration::from_secs(3), || sync
        .get_cache::<String>("k")
        .unwrap()
        .is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_removes_only_expired_entries() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let (ks, clock) = rocks_keystore(dir.path());
    for i in 0..2500 {
        ks.set_cache(&format!("exp:{i}"), &i, Ttl::Seconds(10))
            .await
            .unwrap();
        ks.set_cache(&format!("live:{i}"), &i, Ttl::Never)
            .await
            .unwrap();
        ks.set_cache(&format!("later:{i}"), &i, Ttl::Seconds(1000))
            .await
            .unwrap();
    }
    // Rewritten after their first TTL: the old index entries are stale.
    ks.set_cache("exp:0", &"rewritten", Ttl::Never)
        .await
        .unwrap();
    ks.set_cache("exp:1", &"longer", Ttl::Seconds(5000))
        .await
        .unwrap();
    assert!(ks.delete("exp:2").await.unwrap());
    assert_eq!(ks.purge_expired().await.unwrap(), 0, "nothing expired yet");

    clock.advance(Duration::from_secs(11));
    // 2500 expired minus the two rewritten and the one deleted; more than one batch.
    assert_eq!(ks.purge_expired().await.unwrap(), 2497);
    assert_eq!(ks.purge_expired().await.unwrap(), 0);
    assert_eq!(
        ks.get_cache::<String>("exp:0").await.unwrap().as_deref(),
        Some("rewritten")
    );
    assert_eq!(
        ks.get_cache::<String>("exp:1").await.unwrap().as_deref(),
        Some("longer")
    );
    for i in [3, 1234, 2499] {
        assert_eq!(
            ks.get_cache::<i32>(&format!("live:{i}")).await.unwrap(),
            Some(i)
        );
        assert_eq!(
            ks.get_cache::<i32>(&format!("later:{i}")).await.unwrap(),
            Some(i)
        );
    }
    let stats = ks.stats().await;
    assert_eq!(stats.janitor_removed, 2497);
    assert_eq!(stats.janitor_sweeps, 3);
    ks.shutdown().await;

    // On disk: no expired value left, and only the live TTL entries' index.
    let entries = raw_entries(&db);
    let values = entries.len();
    let index = raw_index_keys(&db).len();
    assert_eq!(values, 2500 + 2500 + 2);
    assert_eq!(index, 2500 + 1, "later:* plus exp:1's new entry");
    assert!(!entries.iter().any(|(k, _)| k == b"exp:5"));
}

#[test]
fn janitor_sweeps_on_its_interval() {
    let fx = Backend::RocksDb
        .setup()
        .config(|c| c.rocksdb.ttl_cleanup_interval = Duration::from_millis(200))
        .start()
        .unwrap();
    let (sync, clock) = (fx.ks.blocking(), &fx.clock);
    for i in 0..50 {
        sync.set_cache(&format!("k{i}"), &i, Ttl::Seconds(5))
            .unwrap();
    }
    sync.set_cache("keep", &1, Ttl::Never).unwrap();
    clock.advance(Duration::from_secs(6));
    assert!(
        eventually(Duration::from_secs(5), || sync
            .stats()
            .unwrap()
            .janitor_removed
            == 50),
        "janitor did not sweep: {:?}",
        sync.stats().unwrap()
    );
    assert!(sync.stats().unwrap().janitor_sweeps >= 1);
    assert_eq!(sync.get_cache::<i32>("keep").unwrap(), Some(1));
}

#[test]
fn second_open_of_a_locked_database_names_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::from_config(rocks_config(dir.path())).unwrap();
    let err = Keystore::from_config(rocks_config(dir.path())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    let text = err.to_string();
    assert!(
        text.contains("LOCK") && text.contains(&dir.path().display().to_string()),
        "{text}"
    );

    // Another process: the CLI, pointed at the same database.
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "keystore:\n  type: rocksdb\n  rocksdb:\n    path: {}\n",
            dir.path().join("db").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(cli())
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another process has the database open"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}", dir.path().join("db").join("LOCK").display())),
        "{stderr}"
    );

    // Dropping the handle releases the lock for the next opener.
    drop(ks);
    Keystore::from_config(rocks_config(dir.path())).unwrap();
}

#[test]
fn missing_database_without_create_if_missing_says_how_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = rocks_config(dir.path());
    cfg.rocksdb.create_if_missing = false;
    let err = Keystore::from_config(cfg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("create_if_missing"), "{err}");
    assert!(!dir.path().join("db").exists());
}

#[test]
fn corrupt_value_is_an_error_for_that_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    raw_put(
        &db,
        &[
            (b"garbage", b"\xff\x00not json"),
            (b"plain_json", br#"{"a": 1}"#),
            (b"bad_inner", br#"{"data": "{not json", "expires_at": -1}"#),
        ],
    );
    let (ks, _) = rocks_keystore(dir.path());
    let sync = ks.blocking();
    sync.set_cache("good", &1, Ttl::Never).unwrap();
    for key in ["garbage", "plain_json"] {
        let err = sync.get_cache::<serde_json::Value>(key).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptValue, "{err}");
        assert!(err.is_data_error());
        let text = err.to_string();
        assert!(
            text.contains(&format!("{key:?}")) && text.contains("expires_at"),
            "{text}"
        );
    }
    // The envelope is fine but its data is not JSON: a decode error for the caller's type.
    let err = sync
        .get_cache::<serde_json::Value>("bad_inner")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization, "{err}");
    // A value of another type than asked for.
    let err = sync.get_cache::<Vec<String>>("good").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization);
    assert!(err.to_string().contains("\"good\""), "{err}");
    // Everything else still works, and deleting fixes the bad key.
    assert_eq!(sync.get_cache::<i32>("good").unwrap(), Some(1));
    assert!(sync.delete("garbage").unwrap());
    assert_eq!(sync.get_cache::<i32>("garbage").unwrap(), None);
    // Sweeps skip what they cannot read.
    assert_eq!(sync.purge_expired().unwrap(), 0);
    let stats = sync.stats().unwrap();
    assert_eq!(stats.errors(), 4);
    assert!(stats.errors_by_kind.contains(&(ErrorKind::CorruptValue, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_database_and_stops_every_clone() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, _) = rocks_keystore(dir.path());
    let clone = ks.clone();
    ks.set_cache("k", &1, Ttl::Never).await.unwrap();
    ks.shutdown().await;
    let err = clone.get_cache::<i32>("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shutdown, "{err}");
    assert!(!clone.has_keystore().await);
    // The lock is released: a new keystore opens the same database at once.
    let (again, _) = rocks_keystore(dir.path());
    assert_eq!(again.get_cache::<i32>("k").await.unwrap(), Some(1));
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_keystores_live_in_one_process() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (ka, _) = rocks_keystore(a.path());
    let (kb, _) = rocks_keystore(b.path());
    let mut disabled = rocks_config(a.path());
    disabled.enabled = false;
    let kc = Keystore::from_config(disabled).unwrap();
    ka.set_cache("k", &"a", Ttl::Never).await.unwrap();
    kb.set_cache("k", &"b", Ttl::Never).await.unwrap();
    assert_eq!(
        ka.get_cache::<String>("k").await.unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(
        kb.get_cache::<String>("k").await.unwrap().as_deref(),
        Some("b")
    );
    assert_eq!(kc.get_cache::<String>("k").await.unwrap(), None);
    assert_eq!(ka.stats().await.set.count, 1);
    assert_eq!(kb.stats().await.set.count, 1);
    ka.shutdown().await;
    assert_eq!(
        kb.get_cache::<String>("k").await.unwrap().as_deref(),
        Some("b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_resume_where_they_stopped_and_miss_nothing_written_since() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, clock) = rocks_keystore(dir.path());
    // Start on a whole second so every entry below shares one expiry second.
    let now = clock.now_unix();
    clock.set(Duration::from_secs(now.as_secs() + 1));
    // 5000 entries expiring in the same second: several sweep batches.
    for i in 0..5000 {
        ks.set_cache(&format!("m{i:05}"), &i, Ttl::Seconds(10))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(10));
    assert_eq!(ks.purge_expired().await.unwrap(), 5000);
    // Written after that sweep, expiring in that same second, with names
    // that sort before the last entry the sweep took.
    let t = clock.now_unix().as_secs();
    clock.set(Duration::from_secs(t - 10));
    for i in 0..10 {
        ks.set_cache(&format!("a{i}"), &i, Ttl::Seconds(10))
            .await
            .unwrap();
    }
    clock.set(Duration::from_secs(t));
    assert_eq!(ks.purge_expired().await.unwrap(), 10);
    assert_eq!(ks.purge_expired().await.unwrap(), 0);
    // Later entries, and a clock that jumps back and forth.
    for i in 0..3000 {
        ks.set_cache(&format!("z{i}"), &i, Ttl::Seconds(100 + i % 50))
            .await
            .unwrap();
    }
    clock.set(Duration::from_secs(t - 1000));
    assert_eq!(ks.purge_expired().await.unwrap(), 0);
    clock.set(Duration::from_secs(t + 1000));
    assert_eq!(ks.purge_expired().await.unwrap(), 3000);
    // Only the never-expire entry is left, in values and in the index.
    ks.set_cache("keep", &1, Ttl::Never).await.unwrap();
    ks.shutdown().await;
    let left = raw_entries(&dir.path().join("db"));
    assert_eq!(
        left.len(),
        1,
        "{:?}",
        left.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    assert_eq!(
        raw_index_keys(&dir.path().join("db")),
        Vec::<Vec<u8>>::new()
    );
}

/// An expiry index key as the engine writes it: `0xFF 'x' <u64 BE> <name>`.
fn index_key(expires_at: u64, name: &str) -> Vec<u8> {
    let mut k = vec![0xFF, b'x'];
    k.extend_from_slice(&expires_at.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_of_the_previous_version_move_out_of_the_default_keyspace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let clock = Clock::manual();
    let now = clock.now_unix().as_secs();
    // The layout the previous version wrote: values and their index entries
    // side by side in the default column family (no index database).
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut index: Vec<Vec<u8>> = Vec::new();
    for i in 0..300 {
        let (name, exp) = (format!("old:{i:03}"), now + 10);
        entries.push((name.clone(), envelope(&i.to_string(), exp as i64)));
        index.push(index_key(exp, &name));
    }
    entries.push(("later".into(), envelope("1", (now + 5000) as i64)));
    index.push(index_key(now + 5000, "later"));
    entries.push(("kept".into(), envelope("2", -1)));
    // A stale entry: its value was rewritten with another expiry.
    index.push(index_key(now + 5, "kept"));
    let mut raw: Vec<(&[u8], &[u8])> = entries
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_slice()))
        .collect();
    raw.extend(index.iter().map(|k| (k.as_slice(), &b""[..])));
    raw_put(&db, &raw);
    assert!(!db.join(INDEX_DIR).exists(), "no index database yet");

    let (ks, _) = Backend::RocksDb.setup().clock(&clock).open_in(dir.path());
    assert_eq!(ks.get_cache::<i32>("old:007").await.unwrap(), Some(7));
    clock.advance(Duration::from_secs(11));
    assert_eq!(ks.get_cache::<i32>("old:007").await.unwrap(), None);
    assert_eq!(ks.purge_expired().await.unwrap(), 300);
    ks.shutdown().await;

    // The default keyspace holds only envelopes; the index moved, minus
    // what the sweep took.
    let left = raw_entries(&db);
    let names: Vec<&[u8]> = left.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(names, vec![&b"kept"[..], b"later"]);
    for (_, v) in &left {
        let e: serde_json::Value = serde_json::from_slice(v).unwrap();
        assert!(e["data"].is_string() && e["expires_at"].is_number(), "{e}");
    }
    assert_eq!(raw_index_keys(&db), vec![index_key(now + 5000, "later")]);

    // Reopening finds nothing left to move.
    let (ks, _) = Backend::RocksDb.setup().clock(&clock).open_in(dir.path());
    assert_eq!(ks.get_cache::<i32>("later").await.unwrap(), Some(1));
    ks.shutdown().await;
    assert_eq!(raw_entries(&db).len(), 2);
}

fn envelope(data: &str, expires_at: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"data": data, "expires_at": expires_at})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_drops_expired_envelopes_that_have_no_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let clock = Clock::manual();
    let now = clock.now_unix().as_secs_f64();
    // As the Python module writes them: float expiry, json.dumps spacing, no index.
    let long_gone = br#"{"data": "1", "expires_at": 1000.5}"#.to_vec();
    let in_an_hour = format!(r#"{{"data": "2", "expires_at": {}}}"#, now + 3600.5).into_bytes();
    let next_year = format!(
        r#"{{"data": "3", "expires_at": {}}}"#,
        now + 365.0 * 86400.0
    )
    .into_bytes();
    let never = br#"{"data": "4", "expires_at": -1}"#.to_vec();
    raw_put(
        &db,
        &[
            (b"py:gone", &long_gone),
            (b"py:hour", &in_an_hour),
            (b"py:year", &next_year),
            (b"py:never", &never),
            (b"foreign", b"not an envelope"),
            (b"empty", b""),
        ],
    );
    let (ks, _) = Backend::RocksDb.setup().clock(&clock).open_in(dir.path());
    ks.set_cache("rust:ttl", &5, Ttl::Seconds(60))
        .await
        .unwrap();
    assert_eq!(ks.get_cache::<i32>("py:gone").await.unwrap(), None);
    // A sweep soon after opening walks the index only: no full compaction.
    assert_eq!(ks.purge_expired().await.unwrap(), 0);
    // A day later the sweep compacts everything: the filter drops the two
    // expired Python entries, the index sweep the engine's own.
    clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(ks.purge_expired().await.unwrap(), 3);
    assert_eq!(ks.purge_expired().await.unwrap(), 0, "not again so soon");
    assert_eq!(ks.get_cache::<i32>("py:year").await.unwrap(), Some(3));
    ks.shutdown().await;

    let mut left: Vec<Vec<u8>> = raw_entries(&db).into_iter().map(|(k, _)| k).collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            b"empty".to_vec(),
            b"foreign".to_vec(),
            b"py:never".to_vec(),
            b"py:year".to_vec()
        ],
        "expired envelopes gone; live, never-expire and undecodable values kept"
    );
}

#[derive(Debug, PartialEq, Deserialize)]
enum Shade {
    Light,
    Dark,
}

/// Every answer a GET of a string value can give, as text to compare.
async fn string_answers(ks: &Keystore, name: &str) -> Vec<String> {
    fn shown<T: std::fmt::Debug>(r: objdatakey::Result<Option<T>>) -> String {
        match r {
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("{:?}: {e}", e.kind()),
        }
    }
    vec![
        shown(ks.get_cache::<String>(name).await),
        shown(ks.get_cache::<Option<String>>(name).await),
        shown(ks.get_cache::<serde_json::Value>(name).await),
        shown(ks.get_cache::<Shade>(name).await),
        shown(ks.get_cache::<u64>(name).await),
        shown(ks.get_cache::<serde::de::IgnoredAny>(name).await),
    ]
}

/// String values (the ones a RocksDB read lends where they stand, and the
/// ones it unescapes) give the same answers warm, from files after a
/// reopen, and as serde_json gives them; a bad one is an error naming its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_values_read_alike_from_memory_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let long = "page ".repeat(1000);
    let strings = [
        "Light",
        "",
        "caf\u{e9} \u{1F600} \u{7f}",
        "a \"quoted\" word",
        "back\\slash",
        "line\nbreak\ttab",
        long.as_str(),
    ];
    raw_put(
        &dir.path().join("db"),
        &[
            (b"python", br#"{"data": "\"Dark\"", "expires_at": -1}"#),
            (
                b"bad_utf8",
                b"{\"data\":\"\\\"\xff\\\"\",\"expires_at\":-1}",
            ),
            (b"old", br#"{"data":"\"gone\"","expires_at":1000}"#),
        ],
    );
    let (ks, _clock) = rocks_keystore(dir.path());
    for (i, s) in strings.iter().enumerate() {
        ks.set_cache(&format!("s{i}"), s, Ttl::Never).await.unwrap();
    }
    let mut names: Vec<String> = (0..strings.len()).map(|i| format!("s{i}")).collect();
    names.extend(["python", "bad_utf8", "old"].map(String::from));
    let mut warm = Vec::new();
    for name in &names {
        warm.push(string_answers(&ks, name).await);
    }
    ks.shutdown().await;
    let (ks, _clock) = rocks_keystore(dir.path());
    for (name, warm) in names.iter().zip(&warm) {
        assert_eq!(&string_answers(&ks, name).await, warm, "{name}");
    }
    ks.shutdown().await;

    for (s, answers) in strings.iter().zip(&warm) {
        let json = serde_json::to_string(s).unwrap();
        assert_eq!(answers[0], format!("Some({s:?})"));
        assert_eq!(answers[1], format!("Some(Some({s:?}))"));
        assert_eq!(answers[2], format!("Some(String({s:?}))"));
        let shade = serde_json::from_str::<Shade>(&json);
        assert_eq!(
            answers[3].starts_with("Some("),
            shade.is_ok(),
            "{}",
            answers[3]
        );
        let number = serde_json::from_str::<u64>(&json).unwrap_err();
        assert!(answers[4].starts_with("Serialization: "), "{}", answers[4]);
        assert!(answers[4].ends_with(&number.to_string()), "{}", answers[4]);
        assert_eq!(answers[5], "Some(IgnoredAny)");
    }
    assert_eq!(warm[0][3], "Some(Light)");
    let python = &warm[strings.len()];
    assert_eq!(python[0], "Some(\"Dark\")");
    assert_eq!(python[3], "Some(Dark)");
    for bad in &warm[strings.len() + 1] {
        assert!(
            bad.starts_with("CorruptValue: ") && bad.contains("\"bad_utf8\""),
            "{bad}"
        );
    }
    assert!(warm[strings.len() + 2].iter().all(|a| a == "None"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_writes_round_trip_and_survive_reopen() {
    let fx = Backend::RocksDb
        .setup()
        .config(|c| c.rocksdb.sync_writes = true)
        .start()
        .unwrap();
    let ks = fx.ks.clone();
    ks.set_cache("a", &1, Ttl::Seconds(600)).await.unwrap();
    ks.set_cache("b", &2, Ttl::Never).await.unwrap();
    assert!(ks.delete("b").await.unwrap());
    ks.shutdown().await;
    let ks = fx.another();
    assert_eq!(ks.get_cache::<i32>("a").await.unwrap(), Some(1));
    assert_eq!(ks.get_cache::<i32>("b").await.unwrap(), None);
    ks.shutdown().await;
}

/// Writes answered on the caller's thread give way to the worker pool when
/// RocksDB would stall them: under a stall (writes stopped, as with too many
/// level-0 files) each SET and DELETE waits in the pool holding an in-flight
/// permit, none is lost or answered early, and once the stall ends every
/// acknowledged write is readable, in this process and after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_a_write_stall_wait_in_the_pool_and_none_is_lost() {
    let fx = Backend::RocksDb.start().unwrap();
    let ks = fx.ks.clone();
    // Before the stall: written in place (no permit held afterwards).
    for i in 0..200u32 {
        ks.set_cache(&format!("before:{i}"), &i, Ttl::Seconds(3600))
            .await
            .unwrap();
    }
    assert!(ks.delete("before:0").await.unwrap());
    assert_eq!(ks.stats().await.in_flight, 0);

    ks.inject_write_stall(true).unwrap();
    let mut writers = Vec::new();
    for i in 0..6u32 {
        let ks = ks.clone();
        let ttl = if i % 2 == 0 {
            Ttl::Never
        } else {
            Ttl::Seconds(3600)
        };
        writers.push(tokio::spawn(async move {
            ks.set_cache(&format!("stalled:{i}"), &i, ttl).await
        }));
    }
    let deleter = {
        let ks = ks.clone();
        tokio::spawn(async move { ks.delete("before:1").await })
    };
    // Every write is parked in the pool (each holds a permit there; a write
    // answered in place holds none), and none has been acknowledged.
    let mut parked = 0;
    for _ in 0..3000 {
        parked = ks.stats().await.in_flight;
        if parked == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(parked, 7, "stalled writes waiting in the pool");
    assert!(writers.iter().all(|w| !w.is_finished()) && !deleter.is_finished());

    ks.inject_write_stall(false).unwrap();
    for w in writers {
        w.await.unwrap().unwrap();
    }
    assert!(deleter.await.unwrap().unwrap(), "before:1 was there");
    // In place again once the stall is over.
    ks.set_cache("after", &1u32, Ttl::Never).await.unwrap();
    assert_eq!(ks.stats().await.in_flight, 0);

    let check = |ks: Keystore| async move {
        for i in 2..200u32 {
            assert_eq!(
                ks.get_cache::<u32>(&format!("before:{i}")).await.unwrap(),
                Some(i)
            );
        }
        for gone in ["before:0", "before:1"] {
            assert_eq!(ks.get_cache::<u32>(gone).await.unwrap(), None, "{gone}");
        }
        for i in 0..6u32 {
            assert_eq!(
                ks.get_cache::<u32>(&format!("stalled:{i}")).await.unwrap(),
                Some(i)
            );
        }
        assert_eq!(ks.get_cache::<u32>("after").await.unwrap(), Some(1));
        ks.shutdown().await;
    };
    check(ks).await;
    check(fx.another()).await;
}

/// Concurrent SETs on the callers' threads go to RocksDB in groups (one
/// write batch each, as RocksDB's own write count shows), and every one
/// lands with its own value and TTL, in this process and after a reopen; a
/// caller's later SET of a name is never overtaken by its earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sets_are_written_in_groups_and_every_one_lands() {
    const CALLERS: u32 = 64;
    // 8 960 SETs in all: RocksDB prints counts below 10 000 exactly.
    const EACH: u32 = 70;
    let fx = Backend::RocksDb.start().unwrap();
    let ks = fx.ks.clone();
    let ttl = |i: u32| match i % 3 {
        0 => Ttl::Never,
        1 => Ttl::Seconds(3600),
        _ => Ttl::Seconds(60),
    };
    let (writes_before, keys_before) = ks.rocksdb_writes_and_keys().unwrap();
    let callers: Vec<_> = (0..CALLERS)
        .map(|t| {
            let ks = ks.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    ks.set_cache(&format!("g:{t}:{i}"), &(t, i), ttl(i))
                        .await
                        .unwrap();
                    ks.set_cache(&format!("last:{t}"), &i, Ttl::Never)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let (writes, keys) = ks.rocksdb_writes_and_keys().unwrap();
    let (writes, keys) = (writes - writes_before, keys - keys_before);
    assert_eq!(keys, u64::from(CALLERS * EACH * 2), "keys written");
    assert!(
        writes < keys,
        "{writes} write calls for {keys} keys: no SETs went as a group"
    );
    assert_eq!(ks.stats().await.in_flight, 0);

    let check = |ks: Keystore| async move {
        for t in 0..CALLERS {
            for i in 0..EACH {
                let name = format!("g:{t}:{i}");
                assert_eq!(
                    ks.get_cache::<(u32, u32)>(&name).await.unwrap(),
                    Some((t, i)),
                    "{name}"
                );
                let left = ks.ttl(&name).await.unwrap();
                match ttl(i) {
                    Ttl::Never => assert_eq!(left, Some(Ttl::Never), "{name}"),
                    Ttl::Seconds(s) => assert!(
                        matches!(left, Some(Ttl::Seconds(l)) if l <= s && l + 30 >= s),
                        "{name}: {left:?} of {s} s"
                    ),
                    other => unreachable!("{other:?} is not written here"),
                }
            }
            assert_eq!(
                ks.get_cache::<u32>(&format!("last:{t}")).await.unwrap(),
                Some(EACH - 1)
            );
        }
        ks.shutdown().await;
    };
    check(ks).await;
    check(fx.another()).await;
}

/// `get_many` answers alike whether its values sit in SST files not yet in
/// the block cache (read by the worker pool), in the block cache or the
/// memtable (read from memory on the caller's thread): each name its own
/// value, in the order asked, whatever spelling of the envelope stored it;
/// expired and missing names `None`; a value not in the stored format an
/// error naming its key, on either path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_answers_alike_from_files_block_cache_and_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut expected = BTreeMap::new();
    {
        let raw = raw_open(&db);
        for i in 0..300u32 {
            let name = format!("f:{i:03}");
            let (bytes, value) = match i % 6 {
                // As this engine writes it.
                0 | 1 => (envelope(&i.to_string(), -1), Some(i)),
                // Python: spaces, a float expiry in 2100.
                2 => (
                    format!(r#"{{"data": "{i}", "expires_at": 4102444800.5}}"#).into_bytes(),
                    Some(i),
                ),
                // The data as a JSON value rather than its text.
                3 => (
                    format!(r#"{{"data": {i}, "expires_at": -1}}"#).into_bytes(),
                    Some(i),
                ),
                // An escape the fast decoder leaves to serde_json.
                4 => (
                    format!(r#"{{"data":"\u0031{i}","expires_at":-1}}"#).into_bytes(),
                    Some(format!("1{i}").parse().unwrap()),
                ),
                // Expired long ago.
                _ => (envelope(&i.to_string(), 1), None),
            };
            raw.put(name.as_bytes(), &bytes).unwrap();
            expected.insert(name, value);
        }
        raw.put(b"f:bad", b"{\"data\": 1").unwrap();
        raw.flush().unwrap();
    }
    let (ks, _) = rocks_keystore(dir.path());
    for i in 0..20u32 {
        ks.set_cache(&format!("m:{i}"), &i, Ttl::Never)
            .await
            .unwrap();
        expected.insert(format!("m:{i}"), Some(i));
    }
    expected.insert("missing".into(), None);
    // Shuffled, with a name asked twice.
    let mut names: Vec<String> = expected.keys().cloned().collect();
    names.sort_by_key(|n| n.bytes().rev().collect::<Vec<u8>>());
    names.push("f:000".into());
    let want: Vec<Option<u32>> = names.iter().map(|n| expected[n]).collect();
    // Cold (the files), then warm (the block cache), twice over.
    for round in 0..3 {
        let got: Vec<Option<u32>> = ks.get_many(&names).await.unwrap();
        assert_eq!(got, want, "round {round}");
        let mut with_bad = names.clone();
        with_bad.insert(7, "f:bad".into());
        let err = ks.get_many::<u32, _>(&with_bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptValue, "round {round}: {err}");
        assert!(err.to_string().contains("\"f:bad\""), "{err}");
        // A value of another type than asked for names its key.
        let err = ks
            .get_many::<String, _>(&["missing", "m:3"])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Serialization, "{err}");
        assert!(err.to_string().contains("\"m:3\""), "{err}");
    }
    ks.shutdown().await;
}
