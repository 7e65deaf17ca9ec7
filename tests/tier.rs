//! The in-process tier (`keystore.l1`): coherence across instances through
//! the backplane (two keystores of this process, and a second process: the
//! CLI) on a real redis-server and a 3-master Redis Cluster; fail-safe
//! through a server outage and the backplane's reconnect; eager refresh;
//! the byte bound; RocksDB with the tier on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use objdatakey::{Clock, ErrorKind, Keystore, Ttl};

/// `backend`'s knobs as these tests use them: a 2 s request timeout, `clock`.
fn setup(backend: Backend, clock: &Clock) -> Setup {
    backend
        .setup()
        .request_timeout(Duration::from_secs(2))
        .clock(clock)
}

async fn get(ks: &Keystore, name: &str) -> Option<String> {
    ks.get_cache::<String>(name).await.expect("get_cache")
}

/// Polls `name` on `ks` until it answers `want` (bounded: the backplane is
/// asynchronous by nature; this waits, it asserts no speed).
async fn eventually_reads(ks: &Keystore, name: &str, want: Option<&str>) {
    for _ in 0..250 {
        if get(ks, name).await.as_deref() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{name:?} still reads {:?}, not {want:?}, 5 s after the change",
        get(ks, name).await
    );
}

/// Waits until `ks` reports its backplane subscription up.
async fn backplane_up(ks: &Keystore) {
    for _ in 0..250 {
        if ks.stats().await.tier.backplane_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the backplane did not come up in 5 s");
}

/// Set, set_many, delete, delete_many, delete_prefix and clear on `a` each
/// reach `b`'s copies, which a long `ttl_max` would otherwise keep.
async fn writes_on_a_reach_b(a: &Keystore, b: &Keystore) {
    backplane_up(a).await;
    backplane_up(b).await;
    let ttl = Ttl::Seconds(600);
    a.set_cache("user:1", "one", ttl).await.unwrap();
    a.set_cache("user:2", "two", ttl).await.unwrap();
    a.set_cache("other", "x", ttl).await.unwrap();
    for n in ["user:1", "user:2", "other"] {
        assert!(get(b, n).await.is_some());
    }
    // A later read is a tier hit. (The invalidations of A's writes may reach
    // B after its first read filled the copy, dropping it once more: the
    // backplane is asynchronous, so this waits for them to settle.)
    let mut hit = false;
    for _ in 0..100 {
        let before = b.stats().await.tier;
        assert_eq!(get(b, "user:1").await.as_deref(), Some("one"));
        if b.stats().await.tier.hits > before.hits {
            hit = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hit, "no read of user:1 was answered by the tier");

    a.set_cache("user:1", "uno", ttl).await.unwrap();
    eventually_reads(b, "user:1", Some("uno")).await;

    a.set_many(&[("user:1", "1"), ("user:2", "2")], ttl)
        .await
        .unwrap();
    eventually_reads(b, "user:1", Some("1")).await;
    eventually_reads(b, "user:2", Some("2")).await;

    assert!(a.delete("user:1").await.unwrap());
    eventually_reads(b, "user:1", None).await;

    a.set_cache("user:1", "back", ttl).await.unwrap();
    assert_eq!(get(b, "user:1").await.as_deref(), Some("back"));
    assert_eq!(a.delete_many(&["user:1"]).await.unwrap(), 1);
    eventually_reads(b, "user:1", None).await;

    assert_eq!(get(b, "user:2").await.as_deref(), Some("2"));
    assert_eq!(a.delete_prefix("user:").await.unwrap(), 1);
    eventually_reads(b, "user:2", None).await;
    assert_eq!(get(b, "other").await.as_deref(), Some("x"));

    a.clear().await.unwrap();
    eventually_reads(b, "other", None).await;

    a.flush_metrics().await;
    b.flush_metrics().await;
    let (sa, sb) = (a.stats().await.tier, b.stats().await.tier);
    assert!(sa.invalidations_sent >= 8, "{sa:?}");
    assert!(sb.invalidations_received >= 8, "{sb:?}");
}

/// Two keystores with the tier on, on `backend`: writes on one reach the
/// other. Answers the fixture (holding the first) and the second.
async fn two_instances(backend: Backend) -> Option<(Fixture, Keystore)> {
    let fx = setup(backend, &Clock::system())
        .tier(Duration::from_secs(300))
        .start()?;
    let b = fx.another();
    writes_on_a_reach_b(&fx.ks, &b).await;
    Some((fx, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_server_stay_coherent() {
    if let Some((a, b)) = two_instances(Backend::Redis).await {
        a.shutdown().await;
        b.shutdown().await;
    }
}

/// Dragonfly's section and protocol (redis-server stands in for it: no
/// Dragonfly binary is installable here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_dragonfly_protocol_stay_coherent() {
    if let Some((a, b)) = two_instances(Backend::Dragonfly).await {
        a.shutdown().await;
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_redis_cluster_stay_coherent() {
    let Some((fx, b)) = two_instances(Backend::Cluster).await else {
        return;
    };
    let a = &fx.ks;
    // Names over every master: a prefix delete reaches them all.
    let names: Vec<String> = (0..30).map(|i| format!("p:{i}")).collect();
    let entries: Vec<(String, String)> = names.iter().map(|n| (n.clone(), n.clone())).collect();
    a.set_many(&entries, Ttl::Seconds(600)).await.unwrap();
    let seen: Vec<Option<String>> = b.get_many(&names).await.unwrap();
    assert!(seen.iter().all(Option::is_some));
    assert_eq!(a.delete_prefix("p:").await.unwrap(), 30);
    for n in &names {
        eventually_reads(&b, n, None).await;
    }
    fx.shutdown().await;
    b.shutdown().await;
}

/// A second process (the CLI, with the tier on in its config file) writes:
/// this process's copy is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_from_another_process_reaches_this_tier() {
    let Some(fx) = setup(Backend::Redis, &Clock::system())
        .tier(Duration::from_secs(300))
        .start()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "keystore:\n  type: redis\n  redis:\n    ip: 127.0.0.1\n    port: {}\n  \
         l1:\n    enabled: true\n    ttl_max: 300\n",
        fx.server().port
    );
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let cli_set = |value: &str| {
        let out = std::process::Command::new(cli())
            .args(["--config", cfg.to_str().unwrap(), "set", "shared", value])
            .args(["--ttl", "600"])
            .output()
            .expect("run objdatakey set");
        assert!(
            out.status.success(),
            "objdatakey set failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let b = &fx.ks;
    backplane_up(b).await;
    cli_set("\"first\"");
    assert_eq!(get(b, "shared").await.as_deref(), Some("first"));
    cli_set("\"second\"");
    eventually_reads(b, "shared", Some("second")).await;
    fx.shutdown().await;
}

/// A writer that publishes nothing (redis-cli, a Python service): the copy
/// is stale for at most `ttl_max` (on the keystore's clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_max_bounds_staleness_against_silent_writers() {
    let Some(fx) = setup(Backend::Redis, &Clock::manual())
        .tier(Duration::from_secs(5))
        .start()
    else {
        return;
    };
    let (b, server, clock) = (&fx.ks, fx.server(), &fx.clock);
    // Subscribing clears the tier: wait for it before filling.
    backplane_up(b).await;
    server.cli(&["SET", "silent", "\"old\"", "EX", "600"]);
    assert_eq!(get(b, "silent").await.as_deref(), Some("old"));
    server.cli(&["SET", "silent", "\"new\"", "EX", "600"]);
    assert_eq!(get(b, "silent").await.as_deref(), Some("old"), "a copy");
    clock.advance(Duration::from_secs(6));
    assert_eq!(get(b, "silent").await.as_deref(), Some("new"));
    // A value with less TTL left than ttl_max lives only that long.
    server.cli(&["SET", "brief", "\"1\"", "PX", "1500"]);
    assert_eq!(get(b, "brief").await.as_deref(), Some("1"));
    clock.advance(Duration::from_secs(2));
    server.cli(&["SET", "brief", "\"2\"", "EX", "600"]);
    assert_eq!(get(b, "brief").await.as_deref(), Some("2"));
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_serves_stale_within_max_age_and_the_backplane_reconnects() {
    let Some(mut fx) = setup(Backend::Redis, &Clock::manual())
        .tier(Duration::from_secs(5))
        .config(|c| c.tier.fail_safe_max_age = Duration::from_secs(30))
        .start()
    else {
        return;
    };
    let (b, clock, port) = (fx.ks.clone(), fx.clock.clone(), fx.server().port);
    backplane_up(&b).await;
    b.set_cache("hot", "v1", Ttl::Seconds(600)).await.unwrap();
    b.set_cache("never-read", "x", Ttl::Seconds(600))
        .await
        .unwrap();
    b.delete("never-read").await.unwrap();

    fx.server_mut().kill();
    // Still fresh in the tier: no backend call at all.
    assert_eq!(get(&b, "hot").await.as_deref(), Some("v1"));
    // Past its tier lifetime: the backend fails, the stale copy answers.
    clock.advance(Duration::from_secs(10));
    assert_eq!(get(&b, "hot").await.as_deref(), Some("v1"));
    let v: String = b
        .get_or_set("hot", Ttl::Seconds(600), || async {
            Err::<String, _>("the loader must not run: a stale copy answers")
        })
        .await
        .unwrap();
    assert_eq!(v, "v1");
    // No copy at all: the backend's error.
    let e = b.get_cache::<String>("never-read").await.unwrap_err();
    assert!(e.is_connection_error() || e.is_timeout(), "{e}");
    // Past max_age: the error, naming the server.
    clock.advance(Duration::from_secs(30));
    let e = b.get_cache::<String>("hot").await.unwrap_err();
    assert!(e.is_connection_error() || e.is_timeout(), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
    b.flush_metrics().await;
    let s = b.stats().await;
    assert_eq!(s.tier.stale_served, 2, "{:?}", s.tier);

    // The backplane noticed, and comes back with the server, clearing the tier.
    for _ in 0..250 {
        if !b.stats().await.tier.backplane_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !b.stats().await.tier.backplane_up,
        "the subscription was lost"
    );
    fx.server_mut().restart();
    backplane_up(&b).await;
    assert_eq!(b.stats().await.tier.entries, 0, "cleared on resubscribe");
    // And the server works again through the handle.
    for _ in 0..100 {
        if b.set_cache("hot", "v2", Ttl::Seconds(600)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&b, "hot").await.as_deref(), Some("v2"));
    b.shutdown().await;
}

/// A batch read through the tier when the backend fails: the stale copies
/// answer only when every name the tier lacks has one, and are counted
/// only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_answers_a_batch_only_when_every_name_has_a_stale_copy() {
    let Some(mut fx) = setup(Backend::Redis, &Clock::manual())
        .tier(Duration::from_secs(5))
        .config(|c| c.tier.fail_safe_max_age = Duration::from_secs(30))
        .start()
    else {
        return;
    };
    let (b, clock) = (fx.ks.clone(), fx.clock.clone());
    for (name, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        b.set_cache(name, v, Ttl::Seconds(600)).await.unwrap();
    }
    // "c" is written through another path: no copy of it in the tier.
    b.delete("c").await.unwrap();
    let names = ["a", "b"];
    let fresh: Vec<Option<String>> = b.get_many(&names).await.unwrap();
    assert_eq!(fresh, [Some("1".to_owned()), Some("2".to_owned())]);

    fx.server_mut().kill();
    clock.advance(Duration::from_secs(10));
    let stale: Vec<Option<String>> = b.get_many(&names).await.unwrap();
    assert_eq!(stale, [Some("1".to_owned()), Some("2".to_owned())]);
    let e = b.get_many::<String, _>(&["a", "b", "c"]).await.unwrap_err();
    assert!(e.is_connection_error() || e.is_timeout(), "{e}");
    b.flush_metrics().await;
    let s = b.stats().await;
    assert_eq!(s.tier.stale_served, 2, "{:?}", s.tier);
    b.shutdown().await;
}

/// Eager refresh on RocksDB (its TTLs follow the keystore's clock, so no
/// waiting): past the fraction, callers get the old value at once while one
/// background load replaces it.
async fn eager_refresh_reloads_once_in_the_background(l1: bool) {
    let fx = setup(Backend::RocksDb, &Clock::manual())
        .config(move |c| {
            c.tier.enabled = l1;
            c.tier.eager_refresh = 0.5;
        })
        .start()
        .unwrap();
    let (ks, clock) = (&fx.ks, &fx.clock);
    let loads = Arc::new(AtomicUsize::new(0));
    let load = |loads: Arc<AtomicUsize>| async move {
        let n = loads.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, String>(format!("v{n}"))
    };
    let ttl = Ttl::Seconds(100);
    let first: String = ks
        .get_or_set("e", ttl, || load(loads.clone()))
        .await
        .unwrap();
    assert_eq!(first, "v1");
    // Young: a plain hit.
    clock.advance(Duration::from_secs(30));
    let v: String = ks
        .get_or_set("e", ttl, || load(loads.clone()))
        .await
        .unwrap();
    assert_eq!((v.as_str(), loads.load(Ordering::SeqCst)), ("v1", 1));
    // Past half its TTL: 20 callers get v1 at once, one reload starts.
    clock.advance(Duration::from_secs(30));
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let (ks, loads) = (ks.clone(), loads.clone());
            tokio::spawn(async move {
                ks.get_or_set::<String, _, _, _>("e", ttl, || load(loads))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for c in callers {
        assert_eq!(c.await.unwrap(), "v1");
    }
    let mut refreshed = false;
    for _ in 0..250 {
        if get(ks, "e").await.as_deref() == Some("v2") {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refreshed, "the background reload stored v2");
    assert_eq!(loads.load(Ordering::SeqCst), 2, "one reload for 20 callers");
    // The reload stored a new TTL: young again.
    let v: String = ks
        .get_or_set("e", ttl, || load(loads.clone()))
        .await
        .unwrap();
    assert_eq!((v.as_str(), loads.load(Ordering::SeqCst)), ("v2", 2));
    ks.flush_metrics().await;
    assert_eq!(ks.stats().await.tier.refreshes, 1);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_refresh_with_the_tier_on() {
    eager_refresh_reloads_once_in_the_background(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_refresh_with_the_tier_off() {
    eager_refresh_reloads_once_in_the_background(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_holds_and_reads_stay_correct_on_rocksdb() {
    let fx = setup(Backend::RocksDb, &Clock::manual())
        .config(|c| {
            c.tier.enabled = true;
            c.tier.max_bytes = 64 * 1024;
        })
        .start()
        .unwrap();
    let (ks, clock) = (&fx.ks, &fx.clock);
    let value = "x".repeat(1000);
    for i in 0..1000 {
        ks.set_cache(&format!("big:{i}"), &value, Ttl::Seconds(600))
            .await
            .unwrap();
    }
    for i in (0..1000).step_by(7) {
        assert_eq!(get(ks, &format!("big:{i}")).await.as_deref(), Some(&*value));
    }
    ks.flush_metrics().await;
    let s = ks.stats().await.tier;
    assert!(s.bytes <= 64 * 1024, "{s:?}");
    assert!(s.bytes > 32 * 1024, "the tier is used: {s:?}");
    assert!(s.evictions > 0, "{s:?}");
    // Writes and deletes on RocksDB keep the tier right (no backplane there).
    ks.set_cache("big:7", "changed", Ttl::Seconds(600))
        .await
        .unwrap();
    assert_eq!(get(ks, "big:7").await.as_deref(), Some("changed"));
    ks.delete_prefix("big:").await.unwrap();
    assert_eq!(get(ks, "big:7").await, None);
    let many: Vec<Option<String>> = ks.get_many(&["big:1", "big:2"]).await.unwrap();
    assert_eq!(many, vec![None, None]);
    // Expiry follows the value's TTL, not only ttl_max.
    ks.set_cache("short", "s", Ttl::Seconds(2)).await.unwrap();
    assert_eq!(get(ks, "short").await.as_deref(), Some("s"));
    clock.advance(Duration::from_secs(3));
    assert_eq!(get(ks, "short").await, None);
    assert!(
        !ks.stats().await.tier.backplane_up,
        "no backplane on RocksDB"
    );
    fx.shutdown().await;
}

#[test]
fn the_tier_keys_are_validated_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let load = |yaml: &str| {
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, yaml).unwrap();
        objdatakey::config::ConfigLoader::new().path(&p).load()
    };
    let c = load(
        "keystore:\n  l1: {enabled: true, max_bytes: 1048576, ttl_max: 2}\n  \
         backplane: {channel: inv}\n  fail_safe: {max_age: 60}\n  eager_refresh: 0.8\n",
    )
    .unwrap();
    assert!(c.tier.enabled);
    assert_eq!(c.tier.max_bytes, 1 << 20);
    assert_eq!(c.tier.ttl_max, Duration::from_secs(2));
    assert_eq!(c.tier.channel, "inv");
    assert_eq!(c.tier.fail_safe_max_age, Duration::from_secs(60));
    assert!((c.tier.eager_refresh - 0.8).abs() < 1e-9);
    let defaults = load("keystore: {}\n").unwrap();
    assert!(!defaults.tier.enabled && defaults.tier.backplane);
    for (yaml, key) in [
        (
            "keystore:\n  l1: {max_bytes: lots}\n",
            "keystore.l1.max_bytes",
        ),
        ("keystore:\n  l1: {ttl_max: 0}\n", "keystore.l1.ttl_max"),
        ("keystore:\n  l1: {enabled: maybe}\n", "keystore.l1.enabled"),
        ("keystore:\n  l1: 5\n", "keystore.l1"),
        (
            "keystore:\n  backplane: {channel: ''}\n",
            "keystore.backplane.channel",
        ),
        (
            "keystore:\n  fail_safe: {max_age: -1}\n",
            "keystore.fail_safe.max_age",
        ),
        (
            "keystore:\n  eager_refresh: 1.5\n",
            "keystore.eager_refresh",
        ),
        (
            "keystore:\n  eager_refresh: soon\n",
            "keystore.eager_refresh",
        ),
    ] {
        let e = load(yaml).expect_err(yaml);
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains(key), "{yaml}: {e}");
        assert!(e.to_string().contains("c.yaml"), "{e}");
    }
}
