//! What cache users ask for beyond what every backend promises (single
//! flight, batches, prefix delete, clear and the remaining TTL run on every
//! backend in `tests/contract.rs`): a cluster's batches and prefix deletes
//! over its masters and a batch with a failed slot, the blocking face, a
//! disabled keystore, and the cross-process lock on Redis.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use objdatakey::{ErrorKind, Keystore, Ttl};

/// A fixture on a 3-master cluster; `None` when redis-server is missing
/// (outside CI).
fn cluster() -> Option<Fixture> {
    Backend::Cluster
        .setup()
        .request_timeout(Duration::from_secs(3))
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_splits_batches_by_slot_and_deletes_prefixes_on_every_master() {
    let Some(fx) = cluster() else {
        return;
    };
    let ks = &fx.ks;
    // Keys spread over all three masters by one batch, then one prefix delete.
    let entries: Vec<(String, usize)> = (0..300).map(|i| (format!("spread:{i}"), i)).collect();
    ks.set_many(&entries, Ttl::Never).await.unwrap();
    for node in fx.nodes() {
        let n: usize = node.cli(&["DBSIZE"]).trim().parse().unwrap();
        assert!(n > 50, "a master holds only {n} of 300 keys");
    }
    assert_eq!(ks.delete_prefix("spread:").await.unwrap(), 300);
    for node in fx.nodes() {
        assert_eq!(node.cli(&["DBSIZE"]).trim(), "0");
    }
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_failed_slot_names_the_failed_keys() {
    let Some(mut fx) = cluster() else {
        return;
    };
    let ks = fx.ks.clone();
    let names: Vec<String> = (0..60).map(|i| format!("part:{i}")).collect();
    let entries: Vec<(String, usize)> = names.iter().cloned().zip(0..).collect();
    ks.set_many(&entries, Ttl::Never).await.unwrap();
    // The keys the first master holds (no replica: its slots go down with it).
    let held: Vec<String> = names
        .iter()
        .filter(|n| fx.cluster().nodes[0].cli(&["EXISTS", n]).trim() == "1")
        .cloned()
        .collect();
    assert!(!held.is_empty() && held.len() < names.len());
    fx.cluster_mut().nodes[0].kill();
    let e = ks.get_many::<usize, String>(&names).await.unwrap_err();
    let text = e.to_string();
    // The failed slots are named (without replicas the cluster may refuse
    // the live masters' slots too once it marks the node failed, so more
    // keys may be named; never fewer). Values coming back under the right
    // names across slots is checked by the contract suite's batch scenarios.
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

/// With `keystore.get_or_set_lock_ms`, two keystores (two processes'
/// worth: each has its own single flight) on one Redis run a missing name's
/// loader once between them; a lock left by a holder that died delays the
/// load until it expires; a failed load releases the lock at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cross_process_lock_runs_the_loader_once_across_keystores() {
    let Some(fx) = Backend::Redis
        .setup()
        .request_timeout(Duration::from_secs(3))
        .lock(Duration::from_millis(2000))
        .start()
    else {
        return;
    };
    let (a, b, server) = (fx.ks.clone(), fx.another(), fx.server());
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
