//! What only the Redis and Dragonfly backends do, against real
//! `redis-server` processes: the stored text Python clients share,
//! connection failures, ACL and TLS, a cluster's slots, outages, where the
//! socket I/O runs, the CLI. What every backend promises (round trips,
//! TTLs, batches, concurrency) is in `tests/contract.rs`.
//!
//! There is no DragonflyDB binary in the registries this project builds from,
//! so the Dragonfly backend runs against redis-server as a protocol stand-in
//! (Dragonfly speaks the Redis protocol); it still reports itself as
//! `dragonfly`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::redis_server::{Options, RedisServer, TlsFiles, free_port};
use common::{Backend, Fixture, Setup};
use objdatakey::config::ConfigLoader;
use objdatakey::{BackendKind, Config, ErrorKind, Keystore, Ttl};
use redis::Commands;
use serde::Deserialize;

/// The backends one redis-server serves.
const SERVERS: [Backend; 2] = [Backend::Redis, Backend::Dragonfly];

/// `backend`'s knobs with the request timeout these tests use.
fn setup(backend: Backend) -> Setup {
    backend.setup().request_timeout(Duration::from_secs(3))
}

/// A fixture on one redis-server of its own; `None` when redis-server is
/// missing (outside CI).
fn redis() -> Option<Fixture> {
    setup(Backend::Redis).start()
}

#[derive(Debug, Deserialize)]
struct Session {
    user: String,
    visits: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_plain_json_text_shared_with_python_clients() {
    let Some(fx) = redis() else {
        return;
    };
    let ks = &fx.ks;
    let mut raw = fx.server().raw();
    // What redis-py writes with `r.setex(name, ttl, json.dumps(data))`.
    let _: () = raw
        .set_ex(
            "from-python",
            r#"{"user": "bob", "roles": [], "visits": 7}"#,
            60,
        )
        .unwrap();
    let got = ks
        .get_cache::<Session>("from-python")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.user, "bob");
    assert_eq!(got.visits, 7);
    // What Python reads back with `json.loads(r.get(name))`.
    ks.set_cache("from-rust", &vec![1, 2, 3], Ttl::Seconds(60))
        .await
        .unwrap();
    let text: String = raw.get("from-rust").unwrap();
    assert_eq!(text, "[1,2,3]");
    // Bytes that are not UTF-8 text are a data error for that key, not a panic.
    let _: () = raw.set("binary", vec![0xff_u8, 0xfe, 0x00]).unwrap();
    let err = ks.get_cache::<String>("binary").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptValue, "{err}");
    assert!(err.to_string().contains("\"binary\""), "{err}");
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_fails_fast_with_a_clear_error() {
    for backend in SERVERS {
        let kind = backend.kind();
        let port = free_port();
        let ks = setup(backend).at_port(port);
        let started = Instant::now();
        let err = ks.ping().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
        assert!(err.is_connection_error());
        let label = if kind == BackendKind::Redis {
            "Redis"
        } else {
            "Dragonfly"
        };
        let want = format!("{label} connection failed: 127.0.0.1:{port}: Connection refused");
        assert!(err.to_string().contains(&want), "{err}\nwant: {want}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a refused connection must not wait for the request timeout"
        );
        assert!(!ks.has_keystore().await);
        let err = ks.set_cache("k", &1, Ttl::Seconds(10)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
        ks.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_and_password_and_wrong_password() {
    let Some(fx) = setup(Backend::Redis)
        .server_options(Options {
            password: Some("default-secret".into()),
            acl_user: Some(("app".into(), "app-secret".into())),
            ..Options::default()
        })
        .start()
    else {
        return;
    };
    // ACL user.
    let ks = fx.another_with(|s| signed_in(s, Some("app"), "app-secret"));
    ks.ping().await.unwrap();
    ks.set_cache("acl", &"ok", Ttl::Seconds(30)).await.unwrap();
    assert_eq!(
        ks.get_cache::<String>("acl").await.unwrap().as_deref(),
        Some("ok")
    );
    ks.shutdown().await;

    // Password only (the `default` user).
    let ks = fx.another_with(|s| signed_in(s, None, "default-secret"));
    ks.ping().await.unwrap();
    ks.shutdown().await;

    // Wrong password: an Auth error at once, no hang, no secret in the text.
    let ks = fx.another_with(|s| signed_in(s, Some("app"), "wrong-password"));
    let err = ks.ping().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("keystore.redis.password"), "{err}");
    assert!(
        !err.to_string().contains("wrong-password"),
        "secret leaked: {err}"
    );
    assert!(!ks.has_keystore().await);
    let err = ks.get_cache::<String>("acl").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    ks.shutdown().await;

    // No password at all against a server that needs one.
    let err = fx.ks.ping().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    fx.shutdown().await;
}

/// `setup` signing in as `user` (the `default` user when `None`) with `password`.
fn signed_in(setup: Setup, user: Option<&'static str>, password: &'static str) -> Setup {
    setup.config(move |c| {
        c.redis.user = user.map(String::from);
        c.redis.password = Some(objdatakey::config::Secret::new(password));
    })
}

/// The section the config selects (`keystore.redis` or
/// `keystore.dragonfly`) speaks TLS and trusts `ca`.
fn tls_trusting(ca: PathBuf) -> impl Fn(&mut Config) + Send + Sync + 'static {
    move |c| {
        let s = match c.backend {
            BackendKind::Dragonfly => &mut c.dragonfly,
            _ => &mut c.redis,
        };
        s.ssl = true;
        s.ca_file = Some(ca.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_configured_ca_and_with_the_wrong_ca() {
    if !common::redis_server::have_tool("openssl") {
        return;
    }
    let tls = TlsFiles::generate();
    let Some(fx) = setup(Backend::Redis)
        .server_options(Options {
            tls: Some((tls.cert.clone(), tls.key.clone(), tls.ca.clone())),
            ..Options::default()
        })
        .start()
    else {
        return;
    };
    for backend in SERVERS {
        let ks = fx.another_with(|s| s.backend(backend).config(tls_trusting(tls.ca.clone())));
        ks.ping().await.unwrap();
        ks.set_cache("tls", &42, Ttl::Seconds(30)).await.unwrap();
        assert_eq!(ks.get_cache::<i32>("tls").await.unwrap(), Some(42));
        ks.shutdown().await;
    }

    // A CA that did not sign the server's certificate.
    let ks = fx.another_with(|s| s.config(tls_trusting(tls.other_ca.clone())));
    let err = ks.ping().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.is_connection_error());
    assert!(err.to_string().contains("keystore.redis.ca_file"), "{err}");
    ks.shutdown().await;

    // Plain text against a TLS port: an error, not a hang past the timeout.
    let err = fx.ks.ping().await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
        "{err}"
    );
    fx.shutdown().await;

    // A CA file that is missing is a config error at build time, naming it.
    let missing = tls.dir.path().join("missing.pem");
    let err = fx
        .try_another_with(|s| s.config(tls_trusting(missing)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_three_masters_serves_keys_over_all_slots() {
    // Two of the three masters as seeds: the client discovers the rest.
    let Some(fx) = setup(Backend::Cluster)
        .config(|c| c.redis.nodes.truncate(2))
        .start()
    else {
        return;
    };
    let ks = &fx.ks;
    ks.ping().await.unwrap();
    let n = 2000;
    let mut tasks = Vec::new();
    for i in 0..n {
        let ks = ks.clone();
        tasks.push(tokio::spawn(async move {
            ks.set_cache(&format!("user:{i}"), &i, Ttl::Seconds(120))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for i in 0..n {
        assert_eq!(
            ks.get_cache::<i32>(&format!("user:{i}")).await.unwrap(),
            Some(i)
        );
    }
    // Every master holds a share: the keys really are spread over the slots.
    let mut total = 0;
    for node in fx.nodes() {
        let size: i64 = node.cli(&["DBSIZE"]).trim().parse().unwrap();
        assert!(
            size > n as i64 / 10,
            "master {} holds only {size} keys",
            node.port
        );
        total += size;
    }
    assert_eq!(total, n as i64);
    assert!(ks.delete("user:7").await.unwrap());
    assert_eq!(ks.get_cache::<i32>("user:7").await.unwrap(), None);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_gives_clean_errors_and_the_same_handle_recovers() {
    for backend in SERVERS {
        let kind = backend.kind();
        let timeout = Duration::from_secs(2);
        let Some(mut fx) = backend.setup().request_timeout(timeout).start() else {
            return;
        };
        let ks = fx.ks.clone();
        ks.set_cache("before", &1, Ttl::Never).await.unwrap();

        // Load from 32 tasks while the server is killed under them.
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..32 {
            let ks = ks.clone();
            let stop = stop.clone();
            workers.push(tokio::spawn(async move {
                let mut kinds = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load:{w}:{}", i % 50);
                    let started = Instant::now();
                    let r = if i.is_multiple_of(2) {
                        ks.set_cache(&key, &i, Ttl::Seconds(60)).await.err()
                    } else {
                        ks.get_cache::<u64>(&key).await.err()
                    };
                    // Never past the request timeout (plus scheduling slack).
                    assert!(started.elapsed() < timeout + Duration::from_secs(2));
                    if let Some(e) = r {
                        kinds.push(e.kind());
                    }
                    i += 1;
                    tokio::task::yield_now().await;
                }
                (i, kinds)
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        fx.server_mut().kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!ks.has_keystore().await, "{kind}: the server is dead");
        let err = ks.get_cache::<i32>("before").await.unwrap_err();
        assert!(err.is_connection_error() || err.is_timeout(), "{err}");

        fx.server_mut().restart();
        // The same handle recovers within a few seconds, no restart needed.
        let mut recovered = false;
        for _ in 0..100 {
            if ks.has_keystore().await {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "{kind}: no recovery within 10 s");
        stop.store(true, Ordering::Relaxed);
        let mut ops = 0;
        for w in workers {
            let (n, kinds) = w.await.expect("a load task panicked");
            ops += n;
            for k in kinds {
                assert!(
                    matches!(k, ErrorKind::Connection | ErrorKind::Timeout),
                    "{kind}: unexpected error kind {k:?} during the outage"
                );
            }
        }
        assert!(ops > 0);
        // The restarted server is empty; writes and reads work again.
        ks.set_cache("after", &2, Ttl::Seconds(60)).await.unwrap();
        assert_eq!(ks.get_cache::<i32>("after").await.unwrap(), Some(2));
        ks.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_times_out_and_the_same_handle_recovers() {
    let Some(fx) = Backend::Redis
        .setup()
        .request_timeout(Duration::from_millis(400))
        .start()
    else {
        return;
    };
    let (ks, server) = (&fx.ks, fx.server());
    ks.set_cache("k", &1, Ttl::Seconds(60)).await.unwrap();
    // Stopped, not killed: the socket stays open and nothing answers.
    server.signal("STOP");
    for name in ["k", "other"] {
        let err = ks.get_cache::<i32>(name).await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(
            err.to_string().contains(&format!("{name:?}")),
            "names the key: {err}"
        );
    }
    let err = ks.set_cache("k", &2, Ttl::Seconds(60)).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    server.signal("CONT");
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match ks.get_cache::<i32>("k").await {
            // The SET that timed out may still have reached the server.
            Ok(v) => {
                assert!(matches!(v, Some(1 | 2)), "{v:?}");
                break;
            }
            Err(e) => {
                assert!(Instant::now() < give_up, "no recovery after SIGCONT: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    ks.set_cache("k", &3, Ttl::Seconds(60)).await.unwrap();
    assert_eq!(ks.get_cache::<i32>("k").await.unwrap(), Some(3));
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_not_serialized_behind_a_slow_one() {
    let Some(fx) = redis() else {
        return;
    };
    let ks = &fx.ks;
    ks.set_cache("fast", &1, Ttl::Seconds(60)).await.unwrap();
    let stalled = Arc::new(AtomicBool::new(false));
    let slow = {
        let ks = ks.clone();
        let stalled = stalled.clone();
        tokio::spawn(async move {
            let r = ks.inject_backend_stall(Duration::from_millis(1500)).await;
            stalled.store(true, Ordering::SeqCst);
            r
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..200 {
        assert_eq!(ks.get_cache::<i32>("fast").await.unwrap(), Some(1));
    }
    assert!(
        !stalled.load(Ordering::SeqCst),
        "200 gets waited for the stalled request: the backend serializes"
    );
    slow.await.unwrap().unwrap();
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_redis_backend_is_an_error_and_the_next_call_works() {
    let Some(fx) = redis() else {
        return;
    };
    let ks = &fx.ks;
    ks.set_cache("k", &5, Ttl::Seconds(60)).await.unwrap();
    let err = ks.inject_backend_panic().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panic, "{err}");
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(v) = ks.get_cache::<i32>("k").await {
            assert_eq!(v, Some(5));
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the backend did not come back after the panic");
    assert!(ks.stats().await.backend_restarts >= 1);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_redis_keys_and_the_config_file_select_the_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "keystore:\n  type: redis\nredis:\n  activate: true\n  redisip: 127.0.0.1\n  redisport: {}\n",
            server.port
        ),
    )
    .unwrap();
    let config = ConfigLoader::new().path(&path).load().unwrap();
    assert_eq!(config.redis.address(), format!("127.0.0.1:{}", server.port));
    let ks = Keystore::builder().config_path(&path).build().unwrap();
    ks.set_cache("legacy", &true, Ttl::Seconds(30))
        .await
        .unwrap();
    assert_eq!(server.cli(&["GET", "legacy"]).trim(), "true");
    ks.shutdown().await;

    // The dragonfly section with the same keys.
    std::fs::write(
        &path,
        format!(
            "keystore:\n  type: dragonfly\n  dragonfly:\n    ip: ''\n    port: {}\n",
            server.port
        ),
    )
    .unwrap();
    let config = ConfigLoader::new()
        .path(&path)
        .docker_axion(false)
        .load()
        .unwrap();
    // An empty ip is localhost (172.17.0.1 only under DOCKER_AXION; not dialled here).
    assert_eq!(config.dragonfly.ip, "localhost");
    let ks = Keystore::builder().config(config).build().unwrap();
    assert_eq!(ks.backend(), BackendKind::Dragonfly);
    ks.set_cache("df", &1, Ttl::Seconds(30)).await.unwrap();
    assert_eq!(server.cli(&["GET", "df"]).trim(), "1");
    ks.shutdown().await;
}

/// A multi-thread runtime of `workers` threads with every driver.
fn multi_thread(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// Sets then reads back `n` keys `{prefix}:{i}` from `n` concurrent tasks.
async fn round_trip_many(ks: &Keystore, prefix: &str, n: u32) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let ks = ks.clone();
        let key = format!("{prefix}:{i}");
        tasks.push(tokio::spawn(async move {
            ks.set_cache(&key, &i, Ttl::Seconds(300)).await?;
            ks.get_cache::<u32>(&key).await.map(|v| (i, v))
        }));
    }
    for t in tasks {
        let (i, v) = t.await.unwrap().unwrap();
        assert_eq!(v, Some(i), "{prefix}:{i}");
    }
}

#[test]
fn an_io_runtime_carries_the_connection_and_its_shutdown_moves_it_back() {
    let io = multi_thread(1);
    let callers = multi_thread(2);
    let Some(fx) = setup(Backend::Redis).io_runtime(io.handle()).start() else {
        return;
    };
    let (ks, server) = (fx.ks.clone(), fx.server());
    // Callers on the I/O runtime itself (the intended use), on another
    // runtime, and on a plain thread through the blocking API.
    io.block_on(round_trip_many(&ks, "io", 500));
    callers.block_on(round_trip_many(&ks, "other", 500));
    let blocking = ks.blocking();
    assert_eq!(blocking.get_cache::<u32>("io:7").unwrap(), Some(7));
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "1000");

    // The I/O runtime goes away while the keystore lives on: the connection
    // moves to the engine's thread and nothing is lost.
    drop(io);
    callers.block_on(async {
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            match ks.get_cache::<u32>("other:9").await {
                Ok(v) => {
                    assert_eq!(v, Some(9));
                    break;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < give_up,
                        "no recovery after the I/O runtime shut down: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        round_trip_many(&ks, "after", 500).await;
    });
    assert_eq!(blocking.get_cache::<u32>("after:499").unwrap(), Some(499));
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "1500");
    drop(blocking);
    callers.block_on(ks.shutdown());
}

/// No I/O setting: a keystore built on a multi-thread runtime (as under
/// `#[tokio::main]`) does its socket I/O there (the connection's tasks live
/// on it), and moves it to the engine's thread when that runtime shuts down.
/// Built on a runtime without an IO driver, it keeps the I/O on its own
/// thread and works from any runtime.
#[test]
fn a_keystore_built_on_a_multi_thread_runtime_does_its_io_there_by_default() {
    let app = multi_thread(2);
    let other = multi_thread(1);
    let Some(fx) = app.block_on(async { redis() }) else {
        return;
    };
    let ks = fx.ks.clone();
    app.block_on(round_trip_many(&ks, "app", 300));
    assert!(
        app.metrics().num_alive_tasks() > 0,
        "the connection's tasks are not on the runtime the keystore was built on"
    );
    drop(app);
    other.block_on(async {
        let give_up = Instant::now() + Duration::from_secs(10);
        while let Err(e) = ks.get_cache::<u32>("app:9").await {
            assert!(
                Instant::now() < give_up,
                "no recovery after the runtime shut down: {e}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        round_trip_many(&ks, "after", 300).await;
        ks.shutdown().await;
    });

    // A runtime with timers but no IO driver cannot carry a socket.
    let no_io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let ks = {
        let _entered = no_io.enter();
        fx.another()
    };
    other.block_on(round_trip_many(&ks, "no-io", 300));
    assert_eq!(no_io.metrics().num_alive_tasks(), 0);
    assert_eq!(fx.server().cli(&["DBSIZE"]).trim(), "900");
    other.block_on(ks.shutdown());
}

#[test]
fn blocking_api_against_redis() {
    let Some(fx) = redis() else {
        return;
    };
    let ks = fx.ks.blocking();
    ks.set_cache("b", &"x", Ttl::Seconds(30)).unwrap();
    assert_eq!(ks.get_cache::<String>("b").unwrap().as_deref(), Some("x"));
    assert!(ks.has_keystore());
    assert_eq!(ks.purge_expired().unwrap(), 0);
}

#[test]
fn cli_check_info_set_get_del_on_redis_and_dragonfly() {
    for kind in SERVERS.map(Backend::kind) {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            format!(
                "keystore:\n  type: {kind}\n  {kind}:\n    ip: 127.0.0.1\n    port: {}\n    password: ''\n",
                server.port
            ),
        )
        .unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new(common::cli())
                .arg("--config")
                .arg(&path)
                .args(args)
                .env_remove("OBJDATAKEY_CONFIG")
                .env_remove("AXION_PACKAGE")
                .env_remove("DOCKER_AXION")
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, out, err) = run(&["check"]);
        assert!(ok, "{kind} check: {out}{err}");
        assert!(
            out.contains(&format!("Current keystore type: {kind}")),
            "{out}"
        );
        assert!(out.contains("Keystore connection is active."), "{out}");
        let (ok, out, _) = run(&["info"]);
        assert!(ok);
        assert!(out.contains(&format!("127.0.0.1:{}", server.port)), "{out}");
        let (ok, _, err) = run(&["set", "cli-key", r#"{"n":1}"#, "--ttl", "60"]);
        assert!(ok, "{err}");
        assert_eq!(server.cli(&["GET", "cli-key"]).trim(), r#"{"n":1}"#);
        let (ok, out, _) = run(&["get", "cli-key"]);
        assert!(ok);
        assert_eq!(out.trim(), r#"{"n":1}"#);
        let (ok, out, _) = run(&["del", "cli-key"]);
        assert!(ok);
        assert_eq!(out.trim(), "deleted");
        let (ok, _, _) = run(&["get", "cli-key"]);
        assert!(!ok, "a missing key exits non-zero");

        // With the server gone, check fails with the clear message.
        drop(server);
        let (ok, _, err) = run(&["check"]);
        assert!(!ok);
        assert!(err.contains("connection failed: 127.0.0.1:"), "{err}");
        assert!(err.contains("Connection refused"), "{err}");
    }
}

/// `RUST_LOG=trace` with an ACL user and a password: no output line of the
/// CLI (logs included) carries a secret, on success or on a wrong password.
#[test]
fn trace_logging_never_prints_a_secret() {
    let Some(server) = RedisServer::start_with(Options {
        password: Some("default-pw-0xC0FFEE".into()),
        acl_user: Some(("app".into(), "app-pw-0xBADF00D".into())),
        ..Options::default()
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |password: &str, args: &[&str]| {
        std::fs::write(
            dir.path().join("config.yaml"),
            format!(
                "keystore:\n  type: redis\n  redis: {{ip: 127.0.0.1, port: {}, user: app, password: {password}}}\n",
                server.port
            ),
        )
        .unwrap();
        let o = std::process::Command::new(common::cli())
            .current_dir(dir.path())
            .args(args)
            .env("RUST_LOG", "trace")
            .env_remove("OBJDATAKEY_CONFIG")
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), all)
    };
    let mut lines = 0;
    for args in [
        &["check"][..],
        &["info"],
        &["set", "k", "{\"a\":1}", "--ttl", "60"],
        &["get", "k"],
        &["mget", "k", "j"],
    ] {
        let (ok, all) = run("app-pw-0xBADF00D", args);
        assert!(ok, "{args:?}: {all}");
        lines += all.lines().count();
        for secret in ["app-pw-0xBADF00D", "default-pw-0xC0FFEE", "0xBADF00D"] {
            assert!(!all.contains(secret), "{args:?} printed a secret:\n{all}");
        }
    }
    assert!(lines > 10, "trace logging printed only {lines} lines");
    let (ok, all) = run("wrong-pw-0xDEAD", &["check"]);
    assert!(!ok);
    assert!(all.contains("authentication failed"), "{all}");
    assert!(
        !all.contains("wrong-pw-0xDEAD"),
        "a wrong password was printed:\n{all}"
    );
}
