//! The behaviour every backend promises, written once and run against each:
//! RocksDB (a temporary directory, a manual clock), Redis (one
//! redis-server), the Dragonfly section (its protocol on redis-server) and
//! a 3-master Redis Cluster.
//!
//! Each scenario is an async fn taking a [`Fixture`]; `contract_suite!`
//! stamps out one test per backend and scenario, named
//! `<backend>::<scenario>` (`cargo test --test contract cluster::` runs one
//! backend, `cargo test --test contract ttl` one scenario everywhere).
//! Where backends differ by design (servers raise a TTL under 5 s to 5,
//! RocksDB keeps it) the scenario says so through [`Backend::ttl_floor`].
//! Time passes through [`Fixture::advance`]: RocksDB's manual clock, the
//! servers' own TTLs, so no scenario sleeps for an expiry.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Fixture};
use objdatakey::{ErrorKind, Keystore, Ttl};
use serde::{Deserialize, Serialize};

/// One test per backend and scenario: `mod <backend> { fn <scenario>() }`.
macro_rules! contract_suite {
    ($($module:ident => $backend:expr),+ ; $scenarios:tt) => {
        $(contract_suite!(@backend $module, $backend, $scenarios);)+
    };
    (@backend $module:ident, $backend:expr, [$($scenario:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    // `None`: redis-server is missing outside CI (skipped, said so).
                    if let Some(fx) = $backend.start() {
                        super::$scenario(fx).await;
                    }
                }
            )*
        }
    };
}

contract_suite!(
    rocksdb => Backend::RocksDb,
    redis => Backend::Redis,
    dragonfly => Backend::Dragonfly,
    cluster => Backend::Cluster;
    [
        values_round_trip,
        ttls_keep_the_backends_floor_and_count_down,
        expired_entries_are_never_returned_even_before_a_sweep,
        never_expire_outlives_any_clock,
        batches_prefixes_and_ttl,
        batches_answer_in_order_and_keep_the_last_of_a_duplicate,
        get_or_set_single_flight,
        a_waiter_that_gives_up_cancels_nothing,
        ten_thousand_concurrent_operations_lose_nothing,
        a_value_that_does_not_decode_as_t_is_a_serialization_error_naming_the_key,
        names_and_values_over_the_limits_are_refused_before_the_backend,
    ]
);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Session {
    user: String,
    roles: Vec<String>,
    visits: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    id: u64,
    name: String,
    tags: Vec<String>,
    nested: BTreeMap<String, Vec<Option<f64>>>,
    child: Option<Box<Doc>>,
}

/// A document with what JSON must escape: quotes, a line break, a
/// backslash, non-ASCII, nulls, an empty string, nesting.
fn sample() -> Doc {
    let mut nested = BTreeMap::new();
    nested.insert("a\"quote".into(), vec![Some(1.5), None, Some(-2.0)]);
    nested.insert("ünïcödé ✓".into(), vec![]);
    Doc {
        id: 7,
        name: "line\nbreak \\ backslash".into(),
        tags: vec!["x".into(), "".into()],
        nested,
        child: Some(Box::new(Doc {
            id: 8,
            name: "child".into(),
            tags: vec![],
            nested: BTreeMap::new(),
            child: None,
        })),
    }
}

/// A struct, a nested document, numbers, strings and JSON values come back
/// as they went in; the stored text is plain JSON; overwrite and delete;
/// odd names (empty, unicode, a control character, colons).
async fn values_round_trip(fx: Fixture) {
    let (ks, kind) = (&fx.ks, fx.backend.kind());
    assert_eq!(ks.backend(), kind);
    assert!(ks.has_keystore().await, "{kind}: ping");
    let s = Session {
        user: "ada".into(),
        roles: vec!["admin".into()],
        visits: 3,
    };
    ks.set_cache("session:1", &s, Ttl::Seconds(60))
        .await
        .unwrap();
    assert_eq!(ks.get_cache::<Session>("session:1").await.unwrap(), Some(s));
    assert_eq!(ks.get_cache::<Session>("nothing").await.unwrap(), None);
    assert_eq!(
        ks.get_json("session:1").await.unwrap().as_deref(),
        Some(r#"{"user":"ada","roles":["admin"],"visits":3}"#)
    );
    // A value of the wrong shape is an error for that key only.
    let err = ks.get_cache::<u64>("session:1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization, "{err}");
    assert!(ks.delete("session:1").await.unwrap());
    assert!(!ks.delete("session:1").await.unwrap());
    assert_eq!(ks.get_cache::<Session>("session:1").await.unwrap(), None);
    let stats = ks.stats().await;
    assert_eq!(stats.backend, kind);
    assert_eq!((stats.hits, stats.misses), (2, 2), "{kind}: {stats:?}");

    let doc = sample();
    ks.set_cache("doc", &doc, Ttl::Default).await.unwrap();
    assert_eq!(ks.get_cache::<Doc>("doc").await.unwrap(), Some(doc.clone()));
    // Any serde type, including plain values and unsized strs.
    ks.set_cache("n", &42u32, Ttl::Never).await.unwrap();
    ks.set_cache("s", "text", Ttl::Seconds(60)).await.unwrap();
    ks.set_cache("v", &serde_json::json!({"a": [1, {"b": null}]}), Ttl::Never)
        .await
        .unwrap();
    assert_eq!(ks.get_cache::<u32>("n").await.unwrap(), Some(42));
    assert_eq!(
        ks.get_cache::<String>("s").await.unwrap().as_deref(),
        Some("text")
    );
    assert_eq!(
        ks.get_json("v").await.unwrap().as_deref(),
        Some(r#"{"a":[1,{"b":null}]}"#)
    );
    assert_eq!(ks.get_cache::<Doc>("missing").await.unwrap(), None);
    // Overwrite, then delete.
    ks.set_cache("n", &43u32, Ttl::Never).await.unwrap();
    assert_eq!(ks.get_cache::<u32>("n").await.unwrap(), Some(43));
    assert!(ks.delete("n").await.unwrap());
    assert!(!ks.delete("n").await.unwrap());
    assert_eq!(ks.get_cache::<u32>("n").await.unwrap(), None);
    // Odd names: empty, unicode, bytes that look like RocksDB's index prefix
    // in text, colons.
    for name in ["", "ключ/🔑", "\u{7f}x", "a:b:c"] {
        ks.set_cache(name, &name.len(), Ttl::Never).await.unwrap();
        assert_eq!(
            ks.get_cache::<usize>(name).await.unwrap(),
            Some(name.len()),
            "{kind}: {name:?}"
        );
    }
    assert!(ks.has_keystore().await);
    fx.shutdown().await;
}

/// TTLs as stored: servers raise one under 5 s to 5 (0 included), RocksDB
/// keeps it (0 expires at once); the default TTL; the remaining lifetime
/// counts down as time passes and is gone at the end.
async fn ttls_keep_the_backends_floor_and_count_down(fx: Fixture) {
    let (ks, kind) = (&fx.ks, fx.backend.kind());
    let seconds = |left: Option<Ttl>| match left {
        Some(Ttl::Seconds(s)) => s,
        other => panic!("{kind}: a TTL in seconds, not {other:?}"),
    };

    ks.set_cache("ttl:60", &1, Ttl::Seconds(60)).await.unwrap();
    if let Some(t) = fx.server_ttl("ttl:60") {
        assert!((55..=60).contains(&t), "{kind}: EX 60 gave TTL {t}");
    }
    let left = seconds(ks.ttl("ttl:60").await.unwrap());
    assert!((55..=60).contains(&left), "{kind}: {left}");

    ks.set_cache("ttl:1", &1, Ttl::Seconds(1)).await.unwrap();
    if let Some(t) = fx.server_ttl("ttl:1") {
        assert!(
            (1..=5).contains(&t) && t >= 4,
            "{kind}: 1 s must become 5 s, TTL {t}"
        );
    }
    ks.set_cache("ttl:0", &1, Ttl::Seconds(0)).await.unwrap();
    if let Some(t) = fx.server_ttl("ttl:0") {
        assert!(t >= 4, "{kind}: 0 s must become 5 s, TTL {t}");
    }
    match fx.backend.ttl_floor() {
        0 => {
            assert_eq!(ks.ttl("ttl:1").await.unwrap(), Some(Ttl::Seconds(1)));
            assert_eq!(ks.ttl("ttl:0").await.unwrap(), None, "0 s expires at once");
            assert_eq!(ks.get_cache::<i32>("ttl:0").await.unwrap(), None);
        }
        floor => {
            for name in ["ttl:1", "ttl:0"] {
                let left = seconds(ks.ttl(name).await.unwrap());
                assert!(
                    left <= floor && left + 1 >= floor,
                    "{kind}: {name}: {left} s"
                );
                assert_eq!(ks.get_cache::<i32>(name).await.unwrap(), Some(1));
            }
        }
    }

    // The default TTL (system.cachettl, 300 s unless configured).
    ks.set_cache("ttl:default", &1, Ttl::Default).await.unwrap();
    let want = ks.config().default_ttl.expect("a default TTL") as i64;
    if let Some(t) = fx.server_ttl("ttl:default") {
        assert!(
            t > want - 5 && t <= want,
            "{kind}: default TTL {t}, want {want}"
        );
    }
    let left = seconds(ks.ttl("ttl:default").await.unwrap()) as i64;
    assert!(left > want - 5 && left <= want, "{kind}: {left} of {want}");

    ks.set_cache("k", &1, Ttl::Seconds(10)).await.unwrap();
    let left = ks.ttl("k").await.unwrap();
    if fx.backend.is_server() {
        // The server's clock runs while it answers.
        assert!(
            matches!(left, Some(Ttl::Seconds(9 | 10))),
            "{kind}: {left:?}"
        );
    } else {
        assert_eq!(left, Some(Ttl::Seconds(10)));
    }
    // Expiry is stored rounded up to a whole second: 3.5 to 4.5 s are left.
    fx.advance(Duration::from_millis(6500));
    let left = ks.ttl("k").await.unwrap();
    assert!(
        matches!(left, Some(Ttl::Seconds(3 | 4))),
        "{kind}: {left:?} after 6.5 of 10 s"
    );
    fx.advance(Duration::from_millis(4500));
    assert_eq!(ks.ttl("k").await.unwrap(), None, "{kind}: expired");
    fx.shutdown().await;
}

/// An entry past its TTL reads as missing at once (RocksDB filters it on
/// read, before any sweep; a server drops it itself), one short of it reads
/// as stored, and deleting it finds nothing live.
async fn expired_entries_are_never_returned_even_before_a_sweep(fx: Fixture) {
    let (ks, kind) = (&fx.ks, fx.backend.kind());
    ks.set_cache("short", &1, Ttl::Seconds(10)).await.unwrap();
    ks.set_cache("default", &2, Ttl::Default).await.unwrap(); // system.cachettl = 300
    ks.set_cache("forever", &3, Ttl::Never).await.unwrap();
    fx.advance(Duration::from_secs(9));
    assert_eq!(ks.get_cache::<i32>("short").await.unwrap(), Some(1));
    fx.advance(Duration::from_secs(2));
    assert_eq!(
        ks.get_cache::<i32>("short").await.unwrap(),
        None,
        "{kind}: the expired key is still returned"
    );
    assert_eq!(ks.get_cache::<i32>("default").await.unwrap(), Some(2));
    fx.advance(Duration::from_secs(300));
    assert_eq!(ks.get_cache::<i32>("default").await.unwrap(), None);
    fx.advance(Duration::from_secs(10 * 365 * 86400));
    assert_eq!(ks.get_cache::<i32>("forever").await.unwrap(), Some(3));
    // Deleting an expired key reports that nothing live was there.
    assert!(!ks.delete("short").await.unwrap());
    let stats = ks.stats().await;
    assert_eq!((stats.hits, stats.misses), (3, 2), "{kind}: {stats:?}");
    assert_eq!(
        stats.janitor_removed, 0,
        "no sweep ran: reads filtered expiry"
    );
    fx.shutdown().await;
}

/// `Ttl::Never` stores no expiry (on a server, a plain SET), also over a
/// name that had one, and the entry outlives any amount of time.
async fn never_expire_outlives_any_clock(fx: Fixture) {
    let (ks, kind) = (&fx.ks, fx.backend.kind());
    ks.set_cache("ttl:never", &1, Ttl::Never).await.unwrap();
    ks.set_cache("was:60", &1, Ttl::Seconds(60)).await.unwrap();
    ks.set_cache("was:60", &2, Ttl::Never).await.unwrap();
    for name in ["ttl:never", "was:60"] {
        if let Some(t) = fx.server_ttl(name) {
            assert_eq!(t, -1, "{kind}: never-expire must be a plain SET");
        }
        assert_eq!(ks.ttl(name).await.unwrap(), Some(Ttl::Never), "{kind}");
    }
    fx.advance(Duration::from_secs(10 * 365 * 86400));
    assert_eq!(ks.get_cache::<i32>("ttl:never").await.unwrap(), Some(1));
    assert_eq!(ks.get_cache::<i32>("was:60").await.unwrap(), Some(2));
    fx.shutdown().await;
}

/// Batches, ttl, prefix delete (with glob characters) and clear.
async fn batches_prefixes_and_ttl(fx: Fixture) {
    let ks = &fx.ks;
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
    fx.shutdown().await;
}

/// A batch answers in the order asked, a name asked twice twice; a name
/// written twice in one batch keeps its last value; each entry of a batch
/// carries the batch's TTL; empty batches are no-ops.
async fn batches_answer_in_order_and_keep_the_last_of_a_duplicate(fx: Fixture) {
    let (ks, kind) = (&fx.ks, fx.backend.kind());
    let entries = [("d:a", 1), ("d:b", 2), ("d:a", 3), ("{t}d:c", 4)];
    ks.set_many(&entries, Ttl::Seconds(600)).await.unwrap();
    let asked = ["d:b", "d:a", "d:missing", "{t}d:c", "d:a"];
    let got: Vec<Option<u32>> = ks.get_many(&asked).await.unwrap();
    assert_eq!(got, [Some(2), Some(3), None, Some(4), Some(3)], "{kind}");
    for name in ["d:a", "d:b", "{t}d:c"] {
        let left = ks.ttl(name).await.unwrap();
        assert!(
            matches!(left, Some(Ttl::Seconds(s)) if s <= 600 && s + 5 >= 600),
            "{kind}: {name}: {left:?}"
        );
    }
    ks.set_many::<u32, &str>(&[], Ttl::Never).await.unwrap();
    assert_eq!(ks.delete_many::<&str>(&[]).await.unwrap(), 0);
    assert_eq!(
        ks.delete_many(&["d:a", "d:missing", "d:a"]).await.unwrap(),
        1,
        "{kind}"
    );
    let got: Vec<Option<u32>> = ks.get_many(&asked).await.unwrap();
    assert_eq!(got, [Some(2), None, None, Some(4), None], "{kind}");
    fx.shutdown().await;
}

/// Single flight, loader errors and panics.
async fn get_or_set_single_flight(fx: Fixture) {
    let ks = &fx.ks;
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
    fx.shutdown().await;
}

/// A waiter that gives up does not cancel the load for the others: a short
/// request timeout (300 ms), a slow loader (900 ms), one caller dropped early.
async fn a_waiter_that_gives_up_cancels_nothing(fx: Fixture) {
    // RocksDB takes one opener: the quick keystore replaces the fixture's.
    fx.shutdown().await;
    let ks = &fx.another_with(|s| s.request_timeout(Duration::from_millis(300)));
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
    ks.clone().shutdown().await;
}

/// Spawns `tasks` tasks, task `t` running `call(ks, t)`, and answers their
/// results in task order.
async fn each_task<T, Fut>(ks: &Keystore, tasks: u32, call: impl Fn(Keystore, u32) -> Fut) -> Vec<T>
where
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..tasks)
        .map(|t| tokio::spawn(call(ks.clone(), t)))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("a task panicked"));
    }
    out
}

/// Concurrent callers lose nothing: 100 tasks x 50 SETs of JSON values of
/// several sizes, then as many GETs (10 000 operations, counted exactly in
/// the stats); then 10 000 tasks of one SET each and 10 000 of one GET each.
async fn ten_thousand_concurrent_operations_lose_nothing(fx: Fixture) {
    let (ks, kind) = (&fx.ks, fx.backend.kind());
    each_task(ks, 100, |ks, t| async move {
        for i in 0..50u32 {
            let v = serde_json::json!({"t": t, "i": i, "pad": "x".repeat((i % 7) as usize * 100)});
            ks.set_cache(&format!("c:{t}:{i}"), &v, Ttl::Seconds(3600))
                .await
                .unwrap();
        }
    })
    .await;
    each_task(ks, 100, |ks, t| async move {
        for i in 0..50u32 {
            let v: serde_json::Value = ks.get_cache(&format!("c:{t}:{i}")).await.unwrap().unwrap();
            assert_eq!(
                (v["t"].as_u64(), v["i"].as_u64()),
                (Some(t.into()), Some(i.into()))
            );
        }
    })
    .await;
    let stats = ks.stats().await;
    assert_eq!(stats.set.count, 5000, "{kind}");
    assert_eq!(stats.get.count, 5000, "{kind}");
    assert_eq!(
        (stats.hits, stats.misses, stats.errors()),
        (5000, 0, 0),
        "{kind}"
    );
    assert_eq!(stats.events_dropped, 0, "{kind}");
    assert_eq!(stats.in_flight, 0, "{kind}");
    assert_eq!(ks.clear().await.unwrap(), 5000, "{kind}: every SET landed");

    let sets = each_task(ks, 10_000, |ks, i| async move {
        ks.set_cache(&format!("k{i}"), &i, Ttl::Seconds(300)).await
    });
    for r in sets.await {
        r.unwrap();
    }
    if let Some(n) = fx.stored_keys() {
        assert_eq!(n, 10_000, "{kind}: DBSIZE");
    }
    let gets = each_task(ks, 10_000, |ks, i| async move {
        (i, ks.get_cache::<u32>(&format!("k{i}")).await)
    });
    for (i, r) in gets.await {
        assert_eq!(r.unwrap(), Some(i), "{kind}");
    }
    assert_eq!(ks.clear().await.unwrap(), 10_000, "{kind}");
    fx.shutdown().await;
}

/// A stored value that does not decode as the caller's type is an
/// `ErrorKind::Serialization` error naming the key, from a single read, a
/// batch and `get_or_set` (whose loader does not run over it); the value
/// itself is untouched.
async fn a_value_that_does_not_decode_as_t_is_a_serialization_error_naming_the_key(fx: Fixture) {
    let (ks, kind) = (&fx.ks, fx.backend.kind());
    ks.set_cache("good", &1, Ttl::Never).await.unwrap();
    ks.set_cache("text", "words", Ttl::Never).await.unwrap();
    let err = ks.get_cache::<Vec<String>>("good").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization, "{kind}: {err}");
    assert!(err.is_data_error(), "{kind}: {err}");
    assert!(err.to_string().contains("\"good\""), "{kind}: {err}");
    let err = ks
        .get_many::<String, _>(&["missing", "text", "good"])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization, "{kind}: {err}");
    assert!(err.to_string().contains("\"good\""), "{kind}: {err}");
    let err = ks
        .get_or_set("text", Ttl::Never, || async {
            Err::<u32, _>("the loader must not run over a stored value")
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization, "{kind}: {err}");
    assert!(err.to_string().contains("\"text\""), "{kind}: {err}");
    assert_eq!(ks.get_cache::<i32>("good").await.unwrap(), Some(1));
    assert_eq!(ks.get_json("good").await.unwrap().as_deref(), Some("1"));
    assert_eq!(
        ks.get_cache::<String>("text").await.unwrap().as_deref(),
        Some("words")
    );
    fx.shutdown().await;
}

/// Names and values larger than the keystore takes
/// (`keystore.max_key_bytes`, 8 KiB by default; `keystore.max_value_bytes`,
/// 64 MiB) are an `ErrorKind::TooLarge` error naming the key and the limit,
/// before anything reaches the backend: a batch holding one writes none of
/// it, and `get_or_set` does not run its loader. A read of any name is sent.
async fn names_and_values_over_the_limits_are_refused_before_the_backend(fx: Fixture) {
    let (ks, kind) = (&fx.ks, fx.backend.kind());
    let long = "k".repeat(8 * 1024 + 1);
    let err = ks.set_cache(&long, &1, Ttl::Seconds(60)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{kind}: {err}");
    assert!(
        err.to_string().contains("keystore.max_key_bytes (8192)"),
        "{kind}: {err}"
    );
    assert!(err.to_string().contains("\"kkkk"), "{kind}: {err}");
    assert_eq!(ks.get_cache::<i32>(&long).await.unwrap(), None);
    let longest = "k".repeat(8 * 1024);
    ks.set_cache(&longest, &1, Ttl::Seconds(60)).await.unwrap();
    assert_eq!(ks.get_cache::<i32>(&longest).await.unwrap(), Some(1));

    let huge = "x".repeat(64 << 20);
    let err = ks
        .set_cache("huge", &huge, Ttl::Seconds(60))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{kind}: {err}");
    let text = err.to_string();
    assert!(text.contains("\"huge\""), "{kind}: {text}");
    assert!(
        text.contains("keystore.max_value_bytes (67108864)"),
        "{kind}: {text}"
    );
    let err = ks
        .set_many(
            &[("small", "x".to_owned()), ("huge", huge)],
            Ttl::Seconds(60),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{kind}: {err}");
    let none: Vec<Option<String>> = ks.get_many(&["small", "huge"]).await.unwrap();
    assert_eq!(none, [None, None], "{kind}");
    let err = ks
        .get_or_set(&long, Ttl::Seconds(60), || async {
            Err::<i32, _>("the loader must not run under a name too long")
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{kind}: {err}");
    fx.shutdown().await;
}
