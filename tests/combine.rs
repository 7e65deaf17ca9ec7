//! Concurrent GETs combined into MGETs and SETs into MSETs and script calls
//! on a real redis-server and a 3-master Redis Cluster: every
//! caller gets its own name's value, every SET lands with its own TTL, a
//! bad value is an error for its own callers only, a refused batch is an
//! error for each of its callers naming its key, a server that refuses
//! `EVAL` gets pipelines instead, and a stalled server times each caller
//! out on its own deadline, naming its key.

mod common;

use std::time::Duration;

use common::redis_server::{Options, RedisServer};
use common::{Backend, Fixture};
use objdatakey::{ErrorKind, Keystore, Ttl};

/// A fixture on `backend` with `timeout`; `None` when redis-server is
/// missing (outside CI).
fn start(backend: Backend, timeout: Duration) -> Option<Fixture> {
    backend.setup().request_timeout(timeout).start()
}

/// `callers` concurrent tasks, task `i` running `call(ks, n, name)` with
/// `n = i % names.len()` and `name = names[n]`; answers each task's name and
/// result.
async fn concurrently<T, F, Fut>(
    ks: &Keystore,
    names: &[String],
    callers: usize,
    call: F,
) -> Vec<(String, T)>
where
    F: Fn(Keystore, usize, String) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let n = i % names.len();
            let name = names[n].clone();
            let run = call(ks.clone(), n, name.clone());
            tokio::spawn(async move { (name, run.await) })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// `callers` concurrent GETs of `names[i % names.len()]`: each answers its
/// own name's value (`Err` text for a failed one).
async fn concurrent_gets(
    ks: &Keystore,
    names: &[String],
    callers: usize,
) -> Vec<(String, Result<Option<String>, objdatakey::KeystoreError>)> {
    concurrently(ks, names, callers, |ks, _, name| async move {
        ks.get_cache::<String>(&name).await
    })
    .await
}

/// Calls of `command` (lower case) the server has answered (`INFO commandstats`).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.cli(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn every_caller_gets_its_own_value(ks: &Keystore) {
    let names: Vec<String> = (0..300).map(|i| format!("c:{i}")).collect();
    let entries: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.clone(), format!("v-{n}")))
        .collect();
    ks.set_many(&entries, Ttl::Seconds(600)).await.unwrap();
    let mut asked = names.clone();
    asked.push("c:missing".into());
    for round in 0..5 {
        for (name, got) in concurrent_gets(ks, &asked, 1024).await {
            let want = (name != "c:missing").then(|| format!("v-{name}"));
            assert_eq!(got.unwrap(), want, "round {round}: {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_are_combined_and_each_caller_gets_its_own_value() {
    let Some(fx) = start(Backend::Redis, Duration::from_secs(5)) else {
        return;
    };
    let (ks, server) = (&fx.ks, fx.server());
    every_caller_gets_its_own_value(ks).await;
    assert!(
        calls(server, "mget") > 0,
        "no GET was combined into an MGET"
    );

    // A value that is not text: an error for its own callers only.
    let mut raw = server.raw();
    redis::cmd("SET")
        .arg("c:bad")
        .arg(&b"\xff\xfe"[..])
        .query::<()>(&mut raw)
        .unwrap();
    let names: Vec<String> = (0..300)
        .map(|i| {
            if i % 30 == 0 {
                "c:bad".to_owned()
            } else {
                format!("c:{i}")
            }
        })
        .collect();
    for (name, got) in concurrent_gets(ks, &names, 1024).await {
        if name == "c:bad" {
            let e = got.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::CorruptValue, "{e}");
            assert!(e.to_string().contains("\"c:bad\""), "{e}");
        } else {
            assert_eq!(got.unwrap(), Some(format!("v-{name}")), "{name}");
        }
    }
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_gets_across_cluster_slots_come_back_under_their_names() {
    let Some(fx) = start(Backend::Cluster, Duration::from_secs(5)) else {
        return;
    };
    every_caller_gets_its_own_value(&fx.ks).await;
    let combined: u64 = fx.nodes().into_iter().map(|node| calls(node, "mget")).sum();
    assert!(
        combined > 0,
        "no GET was combined into an MGET on any master"
    );
    fx.shutdown().await;
}

/// `callers` concurrent SETs, caller `i` writing `names[i % n]` with the
/// value `v-<name>` and a TTL of 600 s for even names, 1200 s for odd ones
/// (so a batch carries two TTLs).
async fn concurrent_sets(
    ks: &Keystore,
    names: &[String],
    callers: usize,
) -> Vec<(String, Result<(), objdatakey::KeystoreError>)> {
    concurrently(ks, names, callers, |ks, n, name| async move {
        ks.set_cache(&name, &format!("v-{name}"), ttl_of(n)).await
    })
    .await
}

/// The TTL the `n`th name is written with: three groups, one of them
/// without expiry (combined into MSETs, the others into pipelines).
fn ttl_of(n: usize) -> Ttl {
    match n % 3 {
        0 => Ttl::Never,
        1 => Ttl::Seconds(600),
        _ => Ttl::Seconds(1200),
    }
}

async fn every_set_lands_with_its_own_ttl(ks: &Keystore) {
    let names: Vec<String> = (0..300).map(|i| format!("w:{i}")).collect();
    for round in 0..5 {
        for (name, done) in concurrent_sets(ks, &names, 1024).await {
            done.unwrap_or_else(|e| panic!("round {round}: {name}: {e}"));
        }
        assert_landed(
            ks,
            &names,
            |name| format!("v-{name}"),
            &format!("round {round}"),
        )
        .await;
    }
}

/// Every name of `names` holds `want(name)`, with the TTL of its place
/// ([`ttl_of`]).
async fn assert_landed(ks: &Keystore, names: &[String], want: impl Fn(&str) -> String, at: &str) {
    let values: Vec<Option<String>> = ks.get_many(names).await.unwrap();
    for (n, (name, value)) in names.iter().zip(values).enumerate() {
        assert_eq!(value, Some(want(name)), "{at}: {name}");
        match (ttl_of(n), ks.ttl(name).await.unwrap()) {
            (Ttl::Never, Some(Ttl::Never)) => {}
            (Ttl::Seconds(want), Some(Ttl::Seconds(left))) => {
                assert!(
                    left <= want && left + 60 >= want,
                    "{at}: {name}: {left} s left"
                );
            }
            (want, got) => panic!("{at}: {name}: TTL {got:?}, written with {want:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sets_are_combined_and_each_lands_with_its_own_ttl() {
    let Some(fx) = start(Backend::Redis, Duration::from_secs(5)) else {
        return;
    };
    let (ks, server) = (&fx.ks, fx.server());
    every_set_lands_with_its_own_ttl(ks).await;

    // The server refuses every write (no memory left): each caller gets
    // the refusal naming its own key, and some went out in a pipeline or
    // an MSET.
    let mut raw = server.raw();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query::<()>(&mut raw)
        .unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("oom:{i}")).collect();
    let (mut piped, mut msets) = (0, 0);
    for (name, done) in concurrent_sets(ks, &names, 1024).await {
        let e = done.unwrap_err();
        assert!(e.to_string().contains(&format!("{name:?}")), "{name}: {e}");
        assert!(e.to_string().contains("OOM"), "{name}: {e}");
        piped += usize::from(e.to_string().contains("one script call or pipeline"));
        msets += usize::from(e.to_string().contains("one MSET"));
    }
    assert!(
        piped > 0,
        "no SET with a TTL was combined into a script call"
    );
    assert!(msets > 0, "no SET without a TTL was combined into an MSET");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query::<()>(&mut raw)
        .unwrap();
    ks.set_cache("oom:0", "fine", Ttl::Seconds(60))
        .await
        .unwrap();
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_of_more_than_2_kib_of_json_are_never_combined() {
    let Some(fx) = start(Backend::Redis, Duration::from_secs(5)) else {
        return;
    };
    let (ks, server) = (&fx.ks, fx.server());
    let names: Vec<String> = (0..300).map(|i| format!("big:{i}")).collect();
    // 2 049 bytes of JSON: one past the longest a combined SET carries.
    let big = |name: &str| format!("{name}:{}", "x".repeat(2047 - name.len() - 1));
    assert_eq!(serde_json::to_string(&big("big:7")).unwrap().len(), 2049);
    let sets = concurrently(ks, &names, 1024, |ks, n, name| async move {
        ks.set_cache(&name, &big(&name), ttl_of(n)).await
    })
    .await;
    for (name, done) in sets {
        done.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(
        (calls(server, "eval"), calls(server, "mset")),
        (0, 0),
        "a SET of more than 2 KiB was combined"
    );
    assert_eq!(calls(server, "set"), 1024, "one SET per caller");
    assert_landed(ks, &names, big, "over 2 KiB").await;
    // The same load with small values is combined (the check above can fail).
    every_set_lands_with_its_own_ttl(ks).await;
    assert!(calls(server, "eval") + calls(server, "mset") > 0);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_sets_across_cluster_slots_land_under_their_names() {
    let Some(fx) = start(Backend::Cluster, Duration::from_secs(5)) else {
        return;
    };
    every_set_lands_with_its_own_ttl(&fx.ks).await;
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_times_each_caller_out_naming_its_key() {
    let Some(fx) = start(Backend::Redis, Duration::from_millis(500)) else {
        return;
    };
    let (ks, server) = (&fx.ks, fx.server());
    ks.set_cache("s:0", "x", Ttl::Seconds(600)).await.unwrap();
    server.signal("STOP");
    let names: Vec<String> = (0..64).map(|i| format!("s:{i}")).collect();
    let (answers, writes) = tokio::join!(
        concurrent_gets(ks, &names, 256),
        concurrent_sets(ks, &names, 256)
    );
    server.signal("CONT");
    let errors = answers
        .into_iter()
        .map(|(name, got)| (name, got.map(drop)))
        .chain(writes);
    for (name, got) in errors {
        let e = got.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{name}: {e}");
        assert!(e.to_string().contains(&format!("{name:?}")), "{name}: {e}");
    }
    // The same handle works again once the server answers.
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(Some(v)) = ks.get_cache::<String>("s:0").await {
            // A SET that timed out was sent: the server applies it on resuming.
            assert!(v == "x" || v == "v-s:0", "{v}");
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "no GET succeeded after the server resumed");
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_with_a_ttl_go_out_as_pipelines_where_eval_is_refused() {
    let Some(fx) = Backend::Redis
        .setup()
        .request_timeout(Duration::from_secs(5))
        .server_options(Options {
            acl_user: Some(("app".into(), "app-secret".into())),
            ..Options::default()
        })
        .config(|c| {
            c.redis.user = Some("app".into());
            c.redis.password = Some(objdatakey::config::Secret::new("app-secret"));
        })
        .start()
    else {
        return;
    };
    let ks = &fx.ks;
    // The user may do everything but run scripts.
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("-eval")
        .query::<()>(&mut fx.server().raw())
        .unwrap();

    // A batch with a TTL: refused as a script, written as a pipeline.
    let entries = [("acl:a", "1"), ("acl:b", "2")];
    ks.set_many(&entries, Ttl::Seconds(300)).await.unwrap();
    for (name, value) in entries {
        assert_eq!(
            ks.get_cache::<String>(name).await.unwrap().as_deref(),
            Some(value)
        );
        assert!(
            matches!(ks.ttl(name).await.unwrap(), Some(Ttl::Seconds(s)) if s <= 300 && s > 240)
        );
    }
    // Concurrent SETs, combined: every one lands with its own TTL.
    every_set_lands_with_its_own_ttl(ks).await;
    fx.shutdown().await;
}
