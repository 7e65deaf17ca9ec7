//! Dropping the last handle inside async code must not block the executor
//! thread while the database closes (a slow call can hold a pool worker for
//! seconds); `shutdown().await` and a synchronous drop still wait.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, rocks_config};
use objdatakey::{ErrorKind, Keystore, Ttl};

/// The injected slow call: long enough that a drop waiting for it is obvious.
const STALL: Duration = Duration::from_secs(4);

#[test]
fn dropping_the_last_handle_on_a_current_thread_runtime_does_not_wait_for_a_slow_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = rocks_config(dir.path());
    cfg.rocksdb.workers = 1;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (drop_took, locked_after_drop) = rt.block_on(async {
        let ks = Keystore::builder().config(cfg.clone()).build().unwrap();
        ks.set_cache("k", &1, Ttl::Never).await.unwrap();
        let stall = {
            let ks = ks.clone();
            tokio::spawn(async move { ks.inject_backend_stall(STALL).await })
        };
        let mut busy = false;
        for _ in 0..250 {
            if ks.stats().await.in_flight >= 1 {
                busy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(busy, "the stall never reached the worker");
        // The only worker is idle until then: let it take the stall.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stall.abort();
        let _ = stall.await;
        // `ks` is now the last handle; this thread is the runtime's only one.
        let t = Instant::now();
        drop(ks);
        let drop_took = t.elapsed();
        // The worker still sleeps in the stall, so the database is still open.
        let locked = Keystore::builder().config(cfg.clone()).build().err();
        (drop_took, locked)
    });
    println!("drop of the last handle in async code took {drop_took:?} (stall {STALL:?})");
    let locked = locked_after_drop
        .expect("the database closed before the slow call ended: the drop waited for the worker");
    assert_eq!(locked.kind(), ErrorKind::Locked, "{locked}");
    // The wait goes on off the executor: the database closes once the slow
    // call ends, and the path opens again.
    assert!(
        eventually(STALL + Duration::from_secs(15), || {
            Keystore::builder().config(cfg.clone()).build().is_ok()
        }),
        "the database never closed after the async drop"
    );
    let reopened = Keystore::builder().config(cfg).build().unwrap();
    assert_eq!(reopened.blocking().get_cache::<i32>("k").unwrap(), Some(1));
}

#[test]
fn shutdown_in_async_code_still_waits_until_the_lock_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = rocks_config(dir.path());
    cfg.rocksdb.workers = 1;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ks = Keystore::builder().config(cfg.clone()).build().unwrap();
        ks.set_cache("k", &2, Ttl::Never).await.unwrap();
        let stall = {
            let ks = ks.clone();
            tokio::spawn(async move { ks.inject_backend_stall(Duration::from_secs(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        ks.shutdown().await;
        let _ = stall.await;
        // Right after shutdown returns, the path opens again.
        let again = Keystore::builder().config(cfg.clone()).build().unwrap();
        assert_eq!(again.get_cache::<i32>("k").await.unwrap(), Some(2));
        again.shutdown().await;
    });
}

#[test]
fn a_synchronous_drop_still_waits_so_the_path_reopens_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = rocks_config(dir.path());
    for i in 0..3 {
        let ks = Keystore::builder().config(cfg.clone()).build().unwrap();
        let b = ks.blocking();
        assert_eq!(b.get_cache::<i32>("n").unwrap(), (i > 0).then_some(i - 1));
        b.set_cache("n", &i, Ttl::Never).unwrap();
        drop(b);
        drop(ks);
    }
}
