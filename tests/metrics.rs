//! Prometheus metrics end to end: exact counts in the exposition text,
//! `promtool check metrics`, the shared registry and listener, the CLI flag,
//! and every PromQL expression of the Grafana dashboard evaluated by a real
//! Prometheus scraping a real engine.
//!
//! Each test that reads numbers records into its own private
//! [`MetricsRegistry`], so tests running in parallel in this binary never see
//! each other's counts. `prometheus` and `promtool` come from Debian's
//! packages (`scripts/install-deps.sh`); under `CI=true` a missing one fails
//! the test, elsewhere the test is skipped with a message.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Setup, cli, rocks_config};
use objdatakey::metrics::MetricsRegistry;
use objdatakey::{Clock, ErrorKind, Keystore, Ttl};

// ---------------------------------------------------------------- helpers

/// The value of the sample `name{labels…}` in exposition `text` (labels given
/// must all match; others are ignored), or `None` when absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
                let end = r.find('}')?;
                (&r[..end], r[end + 1..].trim())
            } else if rest.starts_with(' ') {
                ("", rest.trim())
            } else {
                return None;
            };
            let ok = labels
                .iter()
                .all(|(k, v)| label_part.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            if !ok {
                return None;
            }
            value.split_whitespace().next()?.parse().ok()
        })
}

fn must(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in the exposition:\n{text}"))
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
fn http_get(addr: SocketAddr, path_and_query: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A RocksDB fixture (manual clock) recording into `registry`.
fn recorded(registry: &MetricsRegistry) -> Setup {
    Backend::RocksDb.setup().metrics_registry(registry)
}

/// One round of every kind of operation and outcome, including an error.
async fn workload_round(ks: &Keystore, clock: &Clock, i: u64) {
    let key = format!("k{i}");
    ks.set_cache(&key, &"value", Ttl::Seconds(1)).await.unwrap();
    ks.set_cache("fixed", &i, Ttl::Never).await.unwrap();
    let _: Option<String> = ks.get_cache(&key).await.unwrap(); // hit
    let _: Option<String> = ks.get_cache("never-set").await.unwrap(); // miss
    let bad = ks.get_cache::<Vec<bool>>("fixed").await; // a number is not a Vec
    assert_eq!(bad.unwrap_err().kind(), ErrorKind::Serialization);
    ks.delete("fixed").await.unwrap();
    ks.ping().await.unwrap();
    clock.advance(Duration::from_secs(2)); // k{i} expires: the janitor has work
    ks.purge_expired().await.unwrap();
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_miss_and_op_counts_are_exact() {
    let registry = MetricsRegistry::new();
    let fx = recorded(&registry).start().unwrap();
    let ks = fx.ks.clone();

    ks.set_cache("a", &"x", Ttl::Never).await.unwrap();
    ks.set_cache("b", &1, Ttl::Never).await.unwrap();
    assert!(ks.get_cache::<String>("a").await.unwrap().is_some()); // hit
    assert!(ks.get_cache::<u32>("b").await.unwrap().is_some()); // hit
    assert!(ks.get_cache::<u32>("c").await.unwrap().is_none()); // miss
    assert!(ks.get_cache::<u32>("a").await.is_err()); // serialization error
    assert!(ks.delete("a").await.unwrap());
    assert!(ks.get_cache::<String>("a").await.unwrap().is_none()); // miss
    ks.ping().await.unwrap();
    ks.flush_metrics().await;

    let text = ks.render_metrics();
    let rocks = ("backend", "rocksdb");
    assert_eq!(must(&text, "objdatakey_cache_hits_total", &[rocks]), 2.0);
    assert_eq!(must(&text, "objdatakey_cache_misses_total", &[rocks]), 2.0);
    let ops = |op, result| {
        must(
            &text,
            "objdatakey_operations_total",
            &[rocks, ("op", op), ("result", result)],
        )
    };
    assert_eq!(ops("get", "hit"), 2.0);
    assert_eq!(ops("get", "miss"), 2.0);
    assert_eq!(ops("get", "error"), 1.0);
    assert_eq!(ops("set", "ok"), 2.0);
    assert_eq!(ops("set", "error"), 0.0);
    assert_eq!(ops("delete", "ok"), 1.0);
    assert_eq!(ops("ping", "ok"), 1.0);
    assert_eq!(
        must(
            &text,
            "objdatakey_errors_total",
            &[rocks, ("op", "get"), ("kind", "serialization")]
        ),
        1.0
    );
    // Every panel shows a number from the first scrape: the error kinds an
    // op meets at run time are there at 0 before any error happened.
    for op in ["get", "set", "delete", "ping"] {
        for kind in [
            "timeout",
            "busy",
            "connection",
            "backend",
            "shutdown",
            "panic",
        ] {
            assert_eq!(
                must(
                    &text,
                    "objdatakey_errors_total",
                    &[rocks, ("op", op), ("kind", kind)]
                ),
                0.0,
                "{op} {kind}"
            );
        }
    }
    assert_eq!(
        must(
            &text,
            "objdatakey_errors_total",
            &[rocks, ("op", "get"), ("kind", "corrupt_value")]
        ),
        0.0
    );
    assert_eq!(
        must(
            &text,
            "objdatakey_errors_total",
            &[rocks, ("op", "set"), ("kind", "serialization")]
        ),
        0.0
    );
    // ...and not every kind for every op: the series count stays small.
    let error_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("objdatakey_errors_total{") && l.contains("rocksdb"))
        .collect();
    let ops_seen: std::collections::BTreeSet<&str> = error_lines
        .iter()
        .filter_map(|l| l.split("op=\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        error_lines.len() <= 8 * ops_seen.len(),
        "{} error series for {} ops",
        error_lines.len(),
        ops_seen.len()
    );
    let count = |op| {
        must(
            &text,
            "objdatakey_operation_duration_seconds_count",
            &[rocks, ("op", op)],
        )
    };
    assert_eq!(
        (count("get"), count("set"), count("delete")),
        (5.0, 2.0, 1.0)
    );
    assert_eq!(
        must(
            &text,
            "objdatakey_operation_duration_seconds_bucket",
            &[rocks, ("op", "get"), ("le", "+Inf")]
        ),
        5.0
    );
    assert_eq!(must(&text, "objdatakey_backend_up", &[rocks]), 1.0);
    assert_eq!(must(&text, "objdatakey_engines", &[rocks]), 1.0);
    assert_eq!(
        must(&text, "objdatakey_requests_in_flight_limit", &[rocks]),
        ks.config().engine.max_in_flight as f64
    );
    assert_eq!(
        must(&text, "objdatakey_backend_restarts_total", &[rocks]),
        0.0
    );
    assert_eq!(
        must(&text, "objdatakey_metrics_events_dropped_total", &[rocks]),
        0.0
    );
    assert!(!text.contains("key=\""), "no key label, ever");

    // Stats agree with the exposition.
    let stats = ks.stats().await;
    assert_eq!((stats.hits, stats.misses), (2, 2));
    assert_eq!((stats.get.count, stats.get.errors), (5, 1));
    assert!(stats.backend_up);

    // A stopped engine takes its share of the gauges back.
    ks.shutdown().await;
    let text = registry.render();
    assert_eq!(must(&text, "objdatakey_engines", &[rocks]), 0.0);
    assert_eq!(must(&text, "objdatakey_backend_up", &[rocks]), 0.0);
    assert_eq!(
        must(&text, "objdatakey_requests_in_flight_limit", &[rocks]),
        0.0
    );
    assert_eq!(must(&text, "objdatakey_cache_hits_total", &[rocks]), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_sweeps_are_counted() {
    let registry = MetricsRegistry::new();
    let fx = recorded(&registry).start().unwrap();
    let (ks, clock) = (fx.ks.clone(), fx.clock.clone());
    for i in 0..3 {
        ks.set_cache(&format!("t{i}"), &i, Ttl::Seconds(10))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(11));
    assert_eq!(ks.purge_expired().await.unwrap(), 3);
    ks.flush_metrics().await;
    let text = ks.render_metrics();
    let rocks = ("backend", "rocksdb");
    assert_eq!(
        must(&text, "objdatakey_janitor_sweeps_total", &[rocks]),
        1.0
    );
    assert_eq!(
        must(&text, "objdatakey_janitor_keys_removed_total", &[rocks]),
        3.0
    );
    assert_eq!(
        must(
            &text,
            "objdatakey_janitor_sweep_duration_seconds_count",
            &[rocks]
        ),
        1.0
    );
    assert_eq!(
        must(&text, "objdatakey_janitor_sweep_failures_total", &[rocks]),
        0.0
    );
    ks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = MetricsRegistry::new();
    let mut config = rocks_config(dir.path());
    // Ignored when metrics are off: nothing listens.
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let ks = Keystore::builder()
        .config(config)
        .metrics(false)
        .metrics_registry(registry.clone())
        .build()
        .unwrap();
    ks.set_cache("a", &1, Ttl::Never).await.unwrap();
    let _: Option<u32> = ks.get_cache("a").await.unwrap();
    ks.flush_metrics().await;
    let stats = ks.stats().await;
    assert_eq!((stats.hits, stats.misses, stats.get.count), (0, 0, 0));
    assert!(!ks.render_metrics().contains("objdatakey_cache_hits_total{"));
    assert_eq!(ks.metrics_addr(), None);
    ks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_exposition() {
    if !common::have_tool("promtool") {
        return;
    }
    let registry = MetricsRegistry::new();
    let fx = recorded(&registry).start().unwrap();
    let (ks, clock) = (fx.ks.clone(), fx.clock.clone());
    for i in 0..5 {
        workload_round(&ks, &clock, i).await;
    }
    ks.flush_metrics().await;
    let text = ks.render_metrics();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics rejected the exposition:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ks.shutdown().await;
}

/// Two engines in one process: no global-recorder clash, one registry, one
/// listener per address; the listener stops with its last engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_share_the_global_registry_and_listener() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c1 = rocks_config(d1.path());
    c1.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let k1 = Keystore::from_config(c1).unwrap();
    let addr = k1.metrics_addr().expect("listening");
    assert!(addr.ip().is_loopback() && addr.port() != 0);

    let mut c2 = rocks_config(d2.path());
    c2.metrics.listen = Some(addr);
    let k2 = Keystore::from_config(c2.clone()).unwrap();
    assert_eq!(k2.metrics_addr(), Some(addr), "same address, same listener");

    // A private registry cannot take an address the global one serves.
    let d3 = tempfile::tempdir().unwrap();
    let mut c3 = rocks_config(d3.path());
    c3.metrics.listen = Some(addr);
    let err = Keystore::builder()
        .config(c3)
        .metrics_registry(MetricsRegistry::new())
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("metrics.listen"), "{err}");

    k1.set_cache("a", &1, Ttl::Never).await.unwrap();
    let _: Option<u32> = k2.get_cache("a").await.unwrap();
    k1.flush_metrics().await;
    k2.flush_metrics().await;
    let addr2 = addr;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(addr2, "/metrics"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert!(must(&body, "objdatakey_engines", &[("backend", "rocksdb")]) >= 2.0);
    // Either handle renders the same shared registry.
    assert!(k1.render_metrics().contains("objdatakey_engines{"));
    assert!(k2.render_metrics().contains("objdatakey_engines{"));
    let (status, _) = tokio::task::spawn_blocking(move || http_get(addr2, "/nope"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 404);

    k1.shutdown().await;
    let (status, _) = tokio::task::spawn_blocking(move || http_get(addr2, "/health"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "still served for the second engine");
    k2.shutdown().await;
    // The last engine is gone: the port is released.
    TcpListener::bind(addr).expect("the listener closed with its last engine");
}

#[test]
fn cli_accepts_metrics_listen_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "keystore:\n  type: rocksdb\n  rocksdb:\n    path: {}\n",
            dir.path().join("db").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(cli())
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let m = ["--metrics-listen", "127.0.0.1:0"];
    for args in [
        vec!["check"],
        vec!["set", "k", "1"],
        vec!["get", "k"],
        vec!["del", "k"],
        vec!["info"],
    ] {
        // Before and after the subcommand: the flag is global.
        for flagged in [[&m[..], &args[..]].concat(), [&args[..], &m[..]].concat()] {
            let (code, out, err) = run(&flagged);
            assert_eq!(code, Some(0), "{flagged:?}: {out}{err}");
        }
    }
    let (_, out, _) = run(&["info", "--metrics-listen", "127.0.0.1:9898"]);
    assert!(
        out.contains("Metrics: http://127.0.0.1:9898/metrics"),
        "{out}"
    );
    let (code, _, err) = run(&["info", "--metrics-listen", "not-an-address"]);
    assert_eq!(code, Some(2), "{err}");
}

// ---------------------------------------------------------------- Prometheus

/// A `prometheus` process, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: objdatakey\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// `/api/v1/query` of `expr`: Ok(number of series) or Err(the error).
    fn query(&self, expr: &str) -> Result<usize, String> {
        let (status, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", url_encode(expr)),
        )
        .map_err(|e| format!("HTTP: {e}"))?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("status {status}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("status {status}: {body}"));
        }
        Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `expr` in the dashboard JSON, in order.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/objdatakey.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard JSON");
    let mut out = Vec::new();
    walk(&json, &mut out);
    out
}

/// Grafana's variables as Grafana would fill them for "All" jobs, instances
/// and backends with a 1 s scrape interval.
fn substitute(expr: &str) -> String {
    let mut s = expr
        .replace("$__rate_interval", "10s")
        .replace("$__interval", "5s")
        .replace("$__range", "1m");
    for var in ["job", "instance", "backend"] {
        s = s
            .replace(&format!("${{{var}}}"), ".*")
            .replace(&format!("${var}"), ".*");
    }
    assert!(!s.contains('$'), "unsubstituted variable in {expr}");
    s
}

#[test]
fn dashboard_queries_return_data_from_a_real_prometheus() {
    if !common::have_tool("prometheus") {
        return;
    }
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() >= 10,
        "dashboard has only {} exprs",
        exprs.len()
    );

    // A real engine with the exporter on a free loopback port, under load.
    let registry = MetricsRegistry::new();
    let fx = recorded(&registry)
        .config(|c| {
            c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
            c.rocksdb.ttl_cleanup_interval = Duration::from_secs(1);
        })
        .start()
        .unwrap();
    let (ks, clock) = (fx.ks.clone(), fx.clock.clone());
    let target = ks.metrics_addr().expect("exporter listening");
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let load = {
        let (ks, stop) = (ks.clone(), stop.clone());
        rt.spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                workload_round(&ks, &clock, i).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let prom = Prometheus::start(target);
    // Generous: a loaded 2-core CI machine; this bounds waiting, it asserts no speed.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending: Vec<String> = exprs.iter().map(|e| substitute(e)).collect();
    let mut last_err = String::new();
    while !pending.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let mut still = Vec::new();
        for q in pending {
            match prom.query(&q) {
                Ok(n) if n > 0 => {}
                Ok(_) => still.push(q),
                Err(e) if e.starts_with("HTTP") => {
                    // Prometheus is still starting.
                    last_err = e;
                    still.push(q);
                }
                Err(e) => panic!("Prometheus rejected a dashboard query:\n{q}\n{e}"),
            }
        }
        pending = still;
    }
    stop.store(true, Ordering::Relaxed);
    rt.block_on(load).unwrap();
    assert!(
        pending.is_empty(),
        "dashboard queries with no data after 120 s (last error: {last_err}):\n{}",
        pending.join("\n")
    );
    drop(prom);
    rt.block_on(ks.shutdown());
}
