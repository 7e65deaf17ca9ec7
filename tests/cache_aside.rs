//! What cache users ask for: get_or_set with single flight, batches, prefix
//! delete, clear and the remaining TTL, on every backend (RocksDB, Redis,
//! Dragonfly's protocol on redis-server, a 3-master Redis Cluster).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::redis_server::{RedisCluster, RedisServer, cluster_config, server_config};
use common::*;
use objdatakey::{BackendKind, ErrorKind, Keystore, Ttl};

fn server_keystore(kind: BackendKind, port: u16, timeout: Duration) -> Keystore {
    Keystore::builder()
        .config(server_config(kind, port))
        .request_timeout(timeout)
        .build()
        .unwrap()
}

fn cluster_keystore(cluster: &RedisCluster) -> Keystore {
    Keystore::builder()
        .config(cluster_config(cluster))
        .request_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

/// Batches, ttl, prefix delete (with glob characters) and clear, on `ks`.
async fn batches_prefixes_and_ttl(ks: &Keystore) {
    let what = ks.backend();
    // Names over many hash slots, some sharing one ({tag}).
    let names: Vec<String> = (0..40).map(|i| format!("batch:{i}")).collect();
    let entries: Vec<(String, u32)> = names.iter().cloned().zip(0..).collect();
    ks.set_many(&entries, Ttl::Seconds(600)).await.unwrap();
    let mut asked: Vec<String> = names.iter().rev().cloned().collect();
    asked.insert(3, "batch:missing".into());
    asked.push("{tag}x".into());
    let got: Vec<Option<u32>> = ks.get_many(&asked).await.unwrap();
    assert_eq!(got.len(), asked.len());
    for (name, value) in asked.iter().zip(&got) {
        let expected = name
            .strip_prefix("batch:")
            .and_then(|n| n.parse::<u32>().ok());
        assert_eq!(
            *value, expected,
            "{what}: {name} came back with another's value"
        );
    }
    assert_eq!(ks.get_many::<u32, &str>(&[]).await.unwrap(), vec![]);
    // A name given twice is removed once.
    let removed = ks
        .delete_many(&["batch:0", "batch:1", "batch:0", "batch:missing"])
        .await
        .unwrap();
    assert_eq!(removed, 2, "{what}");
    assert_eq!(ks.get_cache::<u32>("batch:0").await.unwrap(), None);

    // Remaining lifetime.
    ks.set_cache("ttl:never", &1, Ttl::Never).await.unwrap();
    ks.set_cache("ttl:600", &1, Ttl::Seconds(600))
        .await
        .unwrap();
    assert_eq!(ks.ttl("ttl:never").await.unwrap(), Some(Ttl::Never));
    match ks.ttl("ttl:600").await.unwrap() {
        Some(Ttl::Seconds(s)) => assert!((595..=600).contains(&s), "{what}: {s}"),
        other => panic!("{what}: ttl of ttl:600 is {other:?}"),
    }
    assert_eq!(ks.ttl("ttl:missing").await.unwrap(), None);

    // Prefix delete: glob characters in the prefix are literal.
    let globby = ["a*[b]?:1", "a*[b]?:2", "aX[b]?:3", "ab]?:4", "a*[b]?"];
    for (i, n) in globby.iter().enumerate() {
        ks.set_cache(n, &i, Ttl::Never).await.unwrap();
    }
    assert_eq!(ks.delete_prefix("a*[b]?:").await.unwrap(), 2, "{what}");
    for (n, left) in globby.iter().zip([false, false, true, true, true]) {
        assert_eq!(
            ks.get_cache::<usize>(n).await.unwrap().is_some(),
            left,
            "{what}: {n}"
        );
    }
    assert_eq!(ks.delete_prefix("batch:").await.unwrap(), 38, "{what}");
    assert_eq!(ks.delete_prefix("nothing-here:").await.unwrap(), 0);
    let e = ks.delete_prefix("").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
    assert!(e.to_string().contains("clear()"), "{e}");

    // Clear: everything this keystore can address.
    let left = ks.clear().await.unwrap();
    assert_eq!(left, 5, "{what}: ttl:never, ttl:600 and three globby names");
    assert_eq!(ks.get_cache::<usize>("aX[b]?:3").await.unwrap(), None);
    assert_eq!(ks.clear().await.unwrap(), 0);
    let stats = ks.stats().await;
    assert_eq!(
        (
            stats.get_many.count,
            stats.set_many.count,
            stats.delete_prefix.count
        ),
        (2, 1, 4),
        "{what}: {stats:?}"
    );
    assert_eq!((stats.clear.count, stats.ttl.count), (2, 3));
}

/// Single flight, loader errors and panics, a waiter that times out, on `ks`
/// (whose request timeout is 3 s).
async fn get_or_set_single_flight(ks: &Keystore) {
    let what = ks.backend();
    let calls = Arc::new(AtomicUsize::new(0));
    let keys = 4;
    let callers: Vec<_> = (0..64)
        .map(|i| {
            let (ks, calls) = (ks.clone(), calls.clone());
            tokio::spawn(async move {
                let name = format!("flight:{}", i % keys);
                let loaded = name.clone();
                ks.get_or_set(&name, Ttl::Seconds(600), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, String>(format!("value of {loaded}"))
                })
                .await
                .map(|v: String| (name, v))
            })
        })
        .collect();
    for c in callers {
        let (name, value) = c.await.unwrap().unwrap();
        assert_eq!(value, format!("value of {name}"));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        keys,
        "{what}: one load per key"
    );
    // Now cached: no loader call, and a hit.
    let v: String = ks
        .get_or_set("flight:0", Ttl::Seconds(600), || async {
            Err::<String, _>("must not run")
        })
        .await
        .unwrap();
    assert_eq!(v, "value of flight:0");

    // A loader error reaches every waiter, stores nothing, poisons nothing.
    let calls = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let (ks, calls) = (ks.clone(), calls.clone());
            tokio::spawn(async move {
                ks.get_or_set("flight:err", Ttl::Never, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err::<u32, _>("the database is down")
                })
                .await
            })
        })
        .collect();
    for w in waiters {
        let e = w.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Loader, "{what}: {e}");
        assert!(e.to_string().contains("the database is down"), "{e}");
        assert!(e.to_string().contains("flight:err"), "{e}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{what}");
    assert_eq!(ks.get_cache::<u32>("flight:err").await.unwrap(), None);
    let v = ks
        .get_or_set("flight:err", Ttl::Never, || async { Ok::<u32, String>(7) })
        .await
        .unwrap();
    assert_eq!(v, 7, "{what}: the next call runs the loader again");

    // A loader that panics: an error for its waiters, not a poisoned name.
    let e = ks
        .get_or_set("flight:panic", Ttl::Never, || async {
            if true {
                panic!("loader bug");
            }
            Ok::<u32, String>(0)
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Loader, "{e}");
    assert!(e.to_string().contains("loader bug"), "{e}");
    let v = ks
        .get_or_set("flight:panic", Ttl::Never, || async {
            Ok::<u32, String>(8)
        })
        .await
        .unwrap();
    assert_eq!(v, 8);
}

/// A waiter that gives up does not cancel the load for the others: a short
/// request timeout, a slow loader, one caller dropped early.
async fn a_waiter_that_gives_up_cancels_nothing(ks: &Keystore) {
    let what = ks.backend();
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |calls: Arc<AtomicUsize>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(900)).await;
            Ok::<u32, String>(42)
        }
    };
    // The first caller gives up at once (its future is dropped).
    let first = tokio::spawn({
        let (ks, load) = (ks.clone(), load(calls.clone()));
        async move { ks.get_or_set("slow", Ttl::Never, load).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.abort();
    // A second caller, whose request timeout (300 ms) ends before the load.
    let e = ks
        .get_or_set("slow", Ttl::Never, load(calls.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{what}: {e}");
    // The load goes on and stores its value.
    let mut stored = None;
    for _ in 0..100 {
        stored = ks.get_cache::<u32>("slow").await.unwrap();
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored, Some(42), "{what}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{what}: one load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_batches_prefixes_ttl_and_single_flight() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::builder()
        .config(rocks_config(dir.path()))
        .request_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    batches_prefixes_and_ttl(&ks).await;
    get_or_set_single_flight(&ks).await;
    ks.shutdown().await;
    let quick = Keystore::builder()
        .config(rocks_config(dir.path()))
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    a_waiter_that_gives_up_cancels_nothing(&quick).await;
    quick.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_ttl_counts_down_with_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, clock) = rocks_keystore(dir.path());
    ks.set_cache("k", &1, Ttl::Seconds(10)).await.unwrap();
    assert_eq!(ks.ttl("k").await.unwrap(), Some(Ttl::Seconds(10)));
    // Expiry is stored rounded up to a whole second: 3.5 to 4.5 s are left.
    clock.advance(Duration::from_millis(6500));
    let left = ks.ttl("k").await.unwrap();
    assert!(
        matches!(left, Some(Ttl::Seconds(3 | 4))),
        "{left:?} after 6.5 of 10 s"
    );
    clock.advance(Duration::from_millis(4500));
    assert_eq!(ks.ttl("k").await.unwrap(), None, "expired");
    ks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_dragonfly_batches_prefixes_ttl_and_single_flight() {
    for kind in [BackendKind::Redis, BackendKind::Dragonfly] {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let ks = server_keystore(kind, server.port, Duration::from_secs(3));
        batches_prefixes_and_ttl(&ks).await;
        get_or_set_single_flight(&ks).await;
        ks.shutdown().await;
        let quick = server_keystore(kind, server.port, Duration::from_millis(300));
        a_waiter_that_gives_up_cancels_nothing(&quick).await;
        quick.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_splits_batches_by_slot_and_deletes_prefixes_on_every_master() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let ks = cluster_keystore(&cluster);
    batches_prefixes_and_ttl(&ks).await;
    get_or_set_single_flight(&ks).await;
    ks.clear().await.unwrap();
    // Keys spread over all three masters, then one prefix delete.
    let entries: Vec<(String, usize)> = (0..300).map(|i| (format!("spread:{i}"), i)).collect();
    ks.set_many(&entries, Ttl::Never).await.unwrap();
    for node in &cluster.nodes {
        let n: usize = node.cli(&["DBSIZE"]).trim().parse().unwrap();
        assert!(n > 50, "a master holds only {n} of 300 keys");
    }
    assert_eq!(ks.delete_prefix("spread:").await.unwrap(), 300);
    for node in &cluster.nodes {
        assert_eq!(node.cli(&["DBSIZE"]).trim(), "0");
    }
    ks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_failed_slot_names_the_failed_keys() {
    let Some(mut cluster) = RedisCluster::start(3) else {
        return;
    };
    let ks = cluster_keystore(&cluster);
    let names: Vec<String> = (0..60).map(|i| format!("part:{i}")).collect();
    let entries: Vec<(String, usize)> = names.iter().cloned().zip(0..).collect();
    ks.set_many(&entries, Ttl::Never).await.unwrap();
    // The keys the first master holds (no replica: its slots go down with it).
    let held: Vec<String> = names
        .iter()
        .filter(|n| cluster.nodes[0].cli(&["EXISTS", n]).trim() == "1")
        .cloned()
        .collect();
    assert!(!held.is_empty() && held.len() < names.len());
    cluster.nodes[0].kill();
    let e = ks.get_many::<usize, String>(&names).await.unwrap_err();
    let text = e.to_string();
    // The failed slots are named (without replicas the cluster may refuse
    // the live masters' slots too once it marks the node failed, so more
    // keys may be named; never fewer). Values coming back under the right
    // names across slots is checked by the batch test above.
    // When the cluster has marked the node failed, every slot may refuse
    // and the message lists the first failed keys in the caller's order,
    // which need not include the dead master's.
    let named = |ks: &[String]| ks.iter().any(|n| text.contains(&format!("{n:?}")));
    assert!(
        text.contains(&format!("of {} keys", names.len()))
            && (named(&held) || text.contains("CLUSTERDOWN") || named(&names)),
        "the error names keys of the failed slots: {e}"
    );
    ks.shutdown().await;
}

#[test]
fn blocking_face_has_the_same_operations() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::from_config(rocks_config(dir.path())).unwrap();
    let b = ks.blocking();
    b.set_many(&[("x:1", 1), ("x:2", 2)], Ttl::Never).unwrap();
    assert_eq!(
        b.get_many::<i32, _>(&["x:2", "x:3", "x:1"]).unwrap(),
        vec![Some(2), None, Some(1)]
    );
    assert_eq!(b.ttl("x:1").unwrap(), Some(Ttl::Never));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let v: i32 = b
        .get_or_set("x:3", Ttl::Never, move || {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(3)
        })
        .unwrap();
    assert_eq!((v, calls.load(Ordering::SeqCst)), (3, 1));
    let e = b
        .get_or_set("x:4", Ttl::Never, || Err::<i32, _>("nope"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Loader);
    assert_eq!(b.delete_many(&["x:1", "x:2"]).unwrap(), 2);
    assert_eq!(b.delete_prefix("x:").unwrap(), 1);
    assert_eq!(b.clear().unwrap(), 0);
}

#[test]
fn a_disabled_keystore_loads_every_time_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = rocks_config(dir.path());
    c.enabled = false;
    let ks = Keystore::from_config(c).unwrap();
    let b = ks.blocking();
    assert_eq!(b.get_many::<i32, _>(&["a", "b"]).unwrap(), vec![None, None]);
    b.set_many(&[("a", 1)], Ttl::Never).unwrap();
    assert_eq!(
        b.get_or_set("a", Ttl::Never, || Ok::<_, String>(5))
            .unwrap(),
        5
    );
    assert_eq!(
        b.get_or_set("a", Ttl::Never, || Ok::<_, String>(6))
            .unwrap(),
        6
    );
    assert_eq!((b.delete_many(&["a"]).unwrap(), b.clear().unwrap()), (0, 0));
    assert_eq!(b.ttl("a").unwrap(), None);
}

/// A keystore on `port` whose get_or_set loads under the cross-process lock.
fn locking_keystore(port: u16, lock: Duration) -> Keystore {
    let mut config = server_config(BackendKind::Redis, port);
    config.engine.get_or_set_lock = Some(lock);
    Keystore::builder()
        .config(config)
        .request_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

/// With `keystore.get_or_set_lock_ms`, two keystores (two processes'
/// worth: each has its own single flight) on one Redis run a missing name's
/// loader once between them; a lock left by a holder that died delays the
/// load until it expires; a failed load releases the lock at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cross_process_lock_runs_the_loader_once_across_keystores() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let lock = Duration::from_millis(2000);
    let (a, b) = (
        locking_keystore(server.port, lock),
        locking_keystore(server.port, lock),
    );
    let loads = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..16)
        .map(|i| {
            let ks = if i % 2 == 0 { a.clone() } else { b.clone() };
            let loads = loads.clone();
            tokio::spawn(async move {
                ks.get_or_set("shared", Ttl::Seconds(60), || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, String>(format!("loaded by {i}"))
                })
                .await
                .unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in callers {
        answers.push(c.await.unwrap());
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the loader ran more than once"
    );
    assert!(answers.iter().all(|v| v == &answers[0]), "{answers:?}");
    assert_eq!(
        server.cli(&["EXISTS", "shared:lock"]).trim(),
        "0",
        "lock left behind"
    );

    // A holder that died: its lock stays until it expires (700 ms here).
    server.cli(&["SET", "orphan:lock", "a-dead-process", "PX", "700"]);
    let started = std::time::Instant::now();
    let counted = loads.clone();
    let v: u32 = b
        .get_or_set("orphan", Ttl::Seconds(60), || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(7)
        })
        .await
        .unwrap();
    assert_eq!(v, 7);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "loaded after {:?}, while the dead holder's lock was alive",
        started.elapsed()
    );
    assert_eq!(loads.load(Ordering::SeqCst), 2);

    // A failed load releases the lock: the next call loads without waiting.
    let e = a
        .get_or_set("fails", Ttl::Seconds(60), || async {
            Err::<u32, _>("backend down")
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Loader, "{e}");
    assert_eq!(server.cli(&["EXISTS", "fails:lock"]).trim(), "0");
    let started = std::time::Instant::now();
    let v: u32 = b
        .get_or_set("fails", Ttl::Seconds(60), || async { Ok::<_, String>(9) })
        .await
        .unwrap();
    assert_eq!(v, 9);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    a.shutdown().await;
    b.shutdown().await;
}
