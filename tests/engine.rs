//! The engine around the backend: where it runs (actix, tokio, plain threads),
//! the supervisor, backpressure, concurrency, the disabled switch.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use objdatakey::{BackendKind, ErrorKind, Keystore, Ttl};

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

#[test]
fn handle_is_send_sync_and_cheap_to_clone() {
    assert_send_sync_clone::<Keystore>();
    assert_send_sync_clone::<objdatakey::BlockingKeystore>();
    assert_eq!(
        std::mem::size_of::<Keystore>(),
        std::mem::size_of::<usize>()
    );
}

#[actix::test]
async fn works_inside_an_actix_system() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, _) = rocks_keystore(dir.path());
    ks.set_cache("k", &vec![1, 2], Ttl::Never).await.unwrap();
    assert_eq!(
        ks.get_cache::<Vec<i32>>("k").await.unwrap(),
        Some(vec![1, 2])
    );
    // From an actor's point of view: spawned local tasks on the same arbiter.
    let ks2 = ks.clone();
    let got = actix::spawn(async move { ks2.get_cache::<Vec<i32>>("k").await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, Some(vec![1, 2]));
    assert!(ks.has_keystore().await);
    ks.shutdown().await;
    // The shared System keeps running after our engine stopped.
    assert!(actix::System::try_current().is_some());
}

#[test]
fn works_inside_a_current_thread_tokio_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (ks, _) = rocks_keystore(dir.path());
        ks.set_cache("k", "v", Ttl::Never).await.unwrap();
        assert_eq!(
            ks.get_cache::<String>("k").await.unwrap().as_deref(),
            Some("v")
        );
        ks.shutdown().await;
    });
}

#[test]
fn works_from_a_runtime_without_a_timer_and_from_futures_executors() {
    // The request timeout's timer lives on the engine's runtime, so a caller's
    // runtime needs no timer of its own.
    let dir = tempfile::tempdir().unwrap();
    let (ks, _) = rocks_keystore(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        ks.set_cache("k", &1, Ttl::Never).await.unwrap();
        assert_eq!(ks.get_cache::<i32>("k").await.unwrap(), Some(1));
    });
    // A bare executor with no runtime at all.
    let got = std::thread::spawn(move || {
        let fut = ks.get_cache::<i32>("k");
        block_on_thread(fut)
    })
    .join()
    .unwrap();
    assert_eq!(got.unwrap(), Some(1));
}

/// A minimal executor: polls on this thread, parks between wake-ups.
fn block_on_thread<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn blocking_api_from_plain_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, _) = rocks_keystore(dir.path());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let sync = ks.blocking();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let key = format!("t{t}:{i}");
                    sync.set_cache(&key, &(t * 1000 + i), Ttl::Never).unwrap();
                    assert_eq!(sync.get_cache::<i32>(&key).unwrap(), Some(t * 1000 + i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = ks.blocking().stats().unwrap();
    assert_eq!((stats.set.count, stats.hits), (800, 800));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_api_on_an_async_thread_is_a_usage_error_not_a_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, _) = rocks_keystore(dir.path());
    let err = ks.blocking().get_cache::<i32>("k").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains(".await"), "{err}");
    ks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_backend_is_an_error_and_the_next_call_works() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, _) = rocks_keystore(dir.path());
    ks.set_cache("before", &1, Ttl::Never).await.unwrap();
    let err = ks.inject_backend_panic().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panic);
    assert!(err.to_string().contains("injected panic"), "{err}");
    // The very next calls work, data intact, on a restarted backend.
    assert_eq!(ks.get_cache::<i32>("before").await.unwrap(), Some(1));
    ks.set_cache("after", &2, Ttl::Never).await.unwrap();
    assert_eq!(ks.get_cache::<i32>("after").await.unwrap(), Some(2));
    let mut restarts = 0;
    for _ in 0..100 {
        restarts = ks.stats().await.backend_restarts;
        if restarts == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(restarts, 1);
    // Several panics in a row: each is answered, each restarts, the handle lives.
    for _ in 0..3 {
        assert_eq!(
            ks.inject_backend_panic().await.unwrap_err().kind(),
            ErrorKind::Panic
        );
    }
    assert!(ks.has_keystore().await);
    ks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_engine_makes_callers_wait_then_answers_busy() {
    let fx = Backend::RocksDb
        .setup()
        .config(|c| c.rocksdb.workers = 1)
        .max_in_flight(2)
        .request_timeout(Duration::from_millis(400))
        .start()
        .unwrap();
    let ks = fx.ks.clone();
    assert_eq!(ks.stats().await.max_in_flight, 2);
    // Two stalls fill the engine (and its one worker) for longer than the timeout.
    let s1 = tokio::spawn({
        let ks = ks.clone();
        async move { ks.inject_backend_stall(Duration::from_millis(1500)).await }
    });
    let s2 = tokio::spawn({
        let ks = ks.clone();
        async move { ks.inject_backend_stall(Duration::from_millis(1500)).await }
    });
    let mut full = false;
    for _ in 0..100 {
        if ks.stats().await.in_flight == 2 {
            full = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(full, "the stalls never filled the engine");
    // A call that needs the pool (TTL lookups are never answered in place)
    // waits, then gives up with Busy.
    let err = ks.ttl("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    assert!(err.is_timeout());
    assert!(err.to_string().contains("max_in_flight"), "{err}");
    // A read that memory can answer (here: a miss on an empty memtable) and a
    // write RocksDB takes without stalling need no worker, so they are
    // served even while the pool is full.
    assert_eq!(ks.get_cache::<i32>("k").await.unwrap(), None);
    ks.set_cache("k", &1, Ttl::Never).await.unwrap();
    assert_eq!(ks.get_cache::<i32>("k").await.unwrap(), Some(1));
    // The first stall was running; the second waited in the queue past its deadline.
    let (r1, r2) = (s1.await.unwrap(), s2.await.unwrap());
    assert_eq!(r1.unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(r2.unwrap_err().kind(), ErrorKind::Timeout);
    // Once the worker is free the engine serves again.
    let mut ok = false;
    for _ in 0..100 {
        if ks.get_cache::<i32>("k").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok);
    let stats = ks.stats().await;
    // One Busy above, possibly more while polling for the worker to free up.
    assert!(
        stats
            .errors_by_kind
            .iter()
            .any(|&(k, n)| k == ErrorKind::Busy && n >= 1),
        "{stats:?}"
    );
    ks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiters_on_a_tiny_engine_all_complete() {
    let fx = Backend::RocksDb.setup().max_in_flight(1).start().unwrap();
    let ks = fx.ks.clone();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let ks = ks.clone();
            tokio::spawn(async move { ks.set_cache(&format!("w{i}"), &i, Ttl::Never).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stats = ks.stats().await;
    assert_eq!((stats.set.count, stats.errors()), (200, 0));
    ks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_keystore_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = rocks_config(dir.path());
    cfg.enabled = false;
    let ks = Keystore::from_config(cfg).unwrap();
    assert!(!ks.is_enabled());
    assert_eq!(ks.backend(), BackendKind::RocksDb);
    ks.set_cache("k", &1, Ttl::Never).await.unwrap();
    assert_eq!(ks.get_cache::<i32>("k").await.unwrap(), None);
    assert!(!ks.delete("k").await.unwrap());
    assert!(!ks.has_keystore().await);
    assert!(
        ks.ping()
            .await
            .unwrap_err()
            .to_string()
            .contains("keystore.enabled: false")
    );
    assert_eq!(ks.purge_expired().await.unwrap(), 0);
    assert_eq!(ks.stats().await.set.count, 0);
    assert!(
        !dir.path().join("db").exists(),
        "a disabled keystore opens nothing"
    );
    // The blocking face too, even on a runtime-free thread.
    let sync = ks.blocking();
    std::thread::spawn(move || {
        sync.set_cache("k", &1, Ttl::Never).unwrap();
        assert_eq!(sync.get_cache::<i32>("k").unwrap(), None);
        assert!(!sync.has_keystore());
    })
    .join()
    .unwrap();
    ks.shutdown().await;
}

#[test]
#[allow(deprecated)]
fn deprecated_aliases_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, _) = rocks_keystore(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(ks.has_redis()));
    // connect_redis selects the redis backend with the given address.
    match Keystore::connect_redis("127.0.0.1", 1, None, None) {
        Ok(k) => {
            assert_eq!(k.backend(), BackendKind::Redis);
            assert_eq!(k.config().redis.address(), "127.0.0.1:1");
        }
        Err(e) => assert!(e.to_string().contains("redis"), "{e}"),
    }
}

#[test]
fn connect_keystore_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::connect_keystore(
        objdatakey::Overrides::new()
            .backend(BackendKind::RocksDb)
            .path(dir.path().join("over")),
    )
    .unwrap();
    assert_eq!(ks.backend(), BackendKind::RocksDb);
    assert_eq!(ks.config().rocksdb.path, dir.path().join("over"));
    ks.blocking().set_cache("k", &1, Ttl::Never).unwrap();
    assert!(dir.path().join("over").join("CURRENT").exists());
}

#[test]
fn every_call_after_shutdown_answers_shutdown_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, _) = rocks_keystore(dir.path());
    let clone = ks.clone();
    let sync = ks.blocking();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(ks.shutdown());
    // Blocking face, from a plain thread, on a stopped engine.
    let e = sync.get_cache::<i32>("k").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Shutdown, "{e}");
    assert_eq!(
        sync.set_cache("k", &1, Ttl::Never).unwrap_err().kind(),
        ErrorKind::Shutdown
    );
    assert!(!sync.has_keystore());
    assert_eq!(sync.stats().unwrap().set.count, 0);
    // Async face.
    rt.block_on(async {
        assert_eq!(
            clone.delete("k").await.unwrap_err().kind(),
            ErrorKind::Shutdown
        );
        assert_eq!(
            clone.purge_expired().await.unwrap_err().kind(),
            ErrorKind::Shutdown
        );
        let _ = clone.stats().await;
        clone.shutdown().await; // twice is fine
    });
}

/// `shutdown()` on one clone while others wait for the worker pool: their
/// deadline timers must outlive the engine's runtime (polling a timer of a
/// runtime that has shut down panics in tokio, so a timer on the engine's
/// runtime would panic every waiting caller). Every caller gets an answer,
/// and every write acknowledged before the database closed is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_callers_wait_answers_each_of_them_cleanly() {
    let fx = Backend::RocksDb
        .setup()
        .config(|c| c.rocksdb.workers = 1)
        .start()
        .unwrap();
    let ks = fx.ks.clone();
    let stall = tokio::spawn({
        let ks = ks.clone();
        async move { ks.inject_backend_stall(Duration::from_millis(500)).await }
    });
    let mut stalled = false;
    for _ in 0..250 {
        if ks.stats().await.in_flight >= 1 {
            stalled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stalled, "the stall never reached the worker");
    let callers: Vec<_> = (0..200)
        .map(|i| {
            let ks = ks.clone();
            tokio::spawn(async move { ks.set_cache(&format!("s{i}"), &i, Ttl::Never).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    ks.clone().shutdown().await;
    let mut acknowledged = Vec::new();
    for (i, c) in callers.into_iter().enumerate() {
        match c.await.expect("a caller panicked") {
            Ok(()) => acknowledged.push(i),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Shutdown, "{e}"),
        }
    }
    let _ = stall.await.expect("the stalled caller panicked");
    drop(ks);
    let reopened = fx.another();
    for i in acknowledged {
        assert_eq!(
            reopened.get_cache::<usize>(&format!("s{i}")).await.unwrap(),
            Some(i)
        );
    }
    reopened.shutdown().await;
}

/// Calls answered on the caller's thread (warm reads, writes RocksDB takes
/// at once) never wait on a tokio resource, yet a task making only such
/// calls still yields now and then: on a one-thread runtime another task
/// gets to run within a bounded number of calls. (A warm reader that never
/// yielded would keep a task whose read went to the pool waiting for its
/// whole loop.)
/// Warm reads (or writes) of one name through `ks` until `ran` is set (at
/// most 10 000); answers how many were made.
async fn calls_until(ks: &Keystore, ran: &std::sync::atomic::AtomicBool, writes: bool) -> u32 {
    let mut calls = 0u32;
    while !ran.load(std::sync::atomic::Ordering::SeqCst) && calls < 10_000 {
        if writes {
            ks.set_cache("warm", &calls, Ttl::Never).await.unwrap();
        } else {
            assert!(ks.get_cache::<u32>("warm").await.unwrap().is_some());
        }
        calls += 1;
    }
    calls
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_whose_calls_are_answered_in_place_still_lets_others_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let fx = Backend::RocksDb.start().unwrap();
    let ks = fx.ks.clone();
    ks.set_cache("warm", &1u32, Ttl::Never).await.unwrap();
    for writes in [false, true] {
        let ran = Arc::new(AtomicBool::new(false));
        let other = tokio::spawn({
            let ran = ran.clone();
            async move { ran.store(true, Ordering::SeqCst) }
        });
        let calls = calls_until(&ks, &ran, writes).await;
        assert!(
            ran.load(Ordering::SeqCst),
            "the other task never ran during {calls} calls (writes: {writes})"
        );
        assert!(calls <= 256, "{calls} calls before the other task ran");
        other.await.unwrap();
    }
    // A task woken from outside the runtime (as a worker-pool reply wakes
    // its caller) waits in the global queue, which is looked at every 4
    // calls: it runs within a few (16 allows for the scheduler's turn).
    for writes in [false, true] {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ran = Arc::new(AtomicBool::new(false));
        let waiter = tokio::spawn({
            let ran = ran.clone();
            async move {
                rx.await.unwrap();
                ran.store(true, Ordering::SeqCst);
            }
        });
        // Let the waiter park on its channel first.
        tokio::task::yield_now().await;
        std::thread::spawn(move || tx.send(()).unwrap())
            .join()
            .unwrap();
        let calls = calls_until(&ks, &ran, writes).await;
        assert!(
            calls <= 16,
            "{calls} calls before the woken task ran (writes: {writes})"
        );
        waiter.await.unwrap();
    }
    ks.shutdown().await;
}
