//! Prometheus metrics: the [`MetricsRegistry`] the engines record into, the
//! per-engine metric handles the metrics actor updates, and the HTTP listener
//! that serves `/metrics`.
//!
//! # Why no global recorder
//! The `metrics` crate's usual pattern installs one global recorder; a second
//! install fails, and tests that read a global recorder see each other's
//! numbers. So this crate never installs one. Instead:
//! - one process-wide registry ([`MetricsRegistry::global`]) is built once, in
//!   a `OnceLock`, from `PrometheusBuilder::build_recorder()` with explicit
//!   histogram buckets. Every engine registers its handles on it directly
//!   (`metrics::Recorder::register_counter(&recorder, ..)`), so any number of
//!   engines share one registry, and a host application's own global recorder
//!   (if it has one) is left alone;
//! - a private registry ([`MetricsRegistry::new`]) can be given to
//!   [`KeystoreBuilder::metrics_registry`](crate::KeystoreBuilder::metrics_registry),
//!   which is how tests read exact numbers without seeing other engines;
//! - the HTTP listener is ours, not `PrometheusBuilder::with_http_listener`:
//!   that one always builds a *new* recorder and cannot serve an existing
//!   registry. Ours runs on a small dedicated thread (independent of any one
//!   engine's lifetime) and is started once per address: engines that ask for
//!   the same address with the same registry share it; it stops when the last
//!   of them is dropped.
//!
//! # Labels
//! Only `backend`, `op`, `result` and `kind`: a handful of values each, never
//! the key, so the number of series stays small and fixed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::config::BackendKind;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::stats::{Event, Op, OpTotals};

/// `objdatakey_operation_duration_seconds` buckets: 5 µs (an embedded read) to
/// 10 s (past any sane request timeout), about three per decade.
pub const OPERATION_BUCKETS: [f64; 19] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// `objdatakey_janitor_sweep_duration_seconds` buckets: 100 µs to 5 minutes.
pub const SWEEP_BUCKETS: [f64; 12] = [
    0.000_1, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0,
];

/// Every metric name, with its type and help text (the exposition's `# HELP`).
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "objdatakey_cache_hits_total",
        "counter",
        "get_cache calls that found a live value",
    ),
    (
        "objdatakey_cache_misses_total",
        "counter",
        "get_cache calls that found nothing or an expired value",
    ),
    (
        "objdatakey_operations_total",
        "counter",
        "Completed operations by op and result (hit, miss, ok, error)",
    ),
    (
        "objdatakey_errors_total",
        "counter",
        "Failed operations by op and error kind",
    ),
    (
        "objdatakey_operation_duration_seconds",
        "histogram",
        "Operation latency as the caller saw it, queueing included",
    ),
    (
        "objdatakey_requests_in_flight",
        "gauge",
        "Requests admitted and not yet answered (sampled every 100 ms)",
    ),
    (
        "objdatakey_requests_in_flight_limit",
        "gauge",
        "The in-flight limit (keystore.max_in_flight), summed over engines",
    ),
    (
        "objdatakey_backend_up",
        "gauge",
        "Engines whose backend is up: 1 when the one engine of a backend is connected/open, 0 when not",
    ),
    (
        "objdatakey_backend_restarts_total",
        "counter",
        "Times a supervisor restarted its backend actor",
    ),
    (
        "objdatakey_engines",
        "gauge",
        "Keystore engines running in this process",
    ),
    (
        "objdatakey_janitor_sweeps_total",
        "counter",
        "Completed janitor sweeps of expired entries",
    ),
    (
        "objdatakey_janitor_sweep_failures_total",
        "counter",
        "Janitor sweeps that failed (retried at the next interval)",
    ),
    (
        "objdatakey_janitor_keys_removed_total",
        "counter",
        "Expired entries the janitor deleted",
    ),
    (
        "objdatakey_janitor_keys_scanned_total",
        "counter",
        "Expiry-index entries the janitor looked at",
    ),
    (
        "objdatakey_janitor_sweep_duration_seconds",
        "histogram",
        "Duration of one whole janitor sweep",
    ),
    (
        "objdatakey_metrics_events_dropped_total",
        "counter",
        "Metric events lost because the metrics channel was full (normally 0)",
    ),
];

static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(1);

/// A Prometheus registry that keystores record into, and its rendering.
///
/// [`MetricsRegistry::global`] (the default for every keystore) is shared by
/// all engines of the process; [`MetricsRegistry::new`] makes a private one.
/// Cheap to clone. It is never installed as the `metrics` crate's global
/// recorder (see the module docs for why).
#[derive(Clone)]
pub struct MetricsRegistry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    id: u64,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRegistry")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        MetricsRegistry::global()
    }
}

impl MetricsRegistry {
    /// The process-wide registry, created on first use; every keystore records
    /// here unless given another one.
    #[must_use]
    pub fn global() -> MetricsRegistry {
        static GLOBAL: OnceLock<MetricsRegistry> = OnceLock::new();
        GLOBAL.get_or_init(MetricsRegistry::new).clone()
    }

    /// A new, private registry (for tests, or to keep one keystore's numbers apart).
    #[must_use]
    pub fn new() -> MetricsRegistry {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("objdatakey_operation_duration_seconds".into()),
                &OPERATION_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("objdatakey_janitor_sweep_duration_seconds".into()),
                    &SWEEP_BUCKETS,
                )
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        for (name, kind, help) in METRICS {
            let name = KeyName::from_const_str(name);
            let help = (*help).into();
            match *kind {
                "counter" => recorder.describe_counter(name, None, help),
                "gauge" => recorder.describe_gauge(name, None, help),
                _ => recorder.describe_histogram(name, None, help),
            }
        }
        let handle = recorder.handle();
        MetricsRegistry {
            inner: Arc::new(RegistryInner {
                id: NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed),
                recorder,
                handle,
            }),
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of everything recorded here.
    #[must_use]
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// Folds recorded histogram samples into their buckets (rendering does it
    /// too); the metrics actors call it periodically so memory stays bounded
    /// when nobody scrapes.
    pub(crate) fn upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    fn key(name: &'static str, labels: Vec<Label>) -> Key {
        Key::from_parts(name, labels)
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.inner
            .recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.inner
            .recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.inner
            .recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// Serves this registry at `http://addr/metrics` until the returned guard
    /// (and every clone of it) is dropped.
    ///
    /// An address already served for this registry in this process is shared
    /// (the same guard); port 0 always binds a new listener on a free port
    /// ([`MetricsServer::local_addr`] tells which).
    pub fn serve(&self, addr: SocketAddr) -> Result<MetricsServer> {
        static SERVERS: OnceLock<Mutex<HashMap<SocketAddr, Weak<ServerInner>>>> = OnceLock::new();
        let mut servers = SERVERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        servers.retain(|_, w| w.strong_count() > 0);
        if addr.port() != 0
            && let Some(existing) = servers.get(&addr).and_then(Weak::upgrade)
        {
            if existing.registry_id == self.inner.id {
                return Ok(MetricsServer { inner: existing });
            }
            return Err(KeystoreError::new(
                ErrorKind::Config,
                format!(
                    "metrics.listen {addr}: this process already serves another metrics \
                     registry there; give each registry its own address"
                ),
            ));
        }
        let inner = Arc::new(ServerInner::start(addr, self.clone())?);
        servers.insert(inner.local_addr, Arc::downgrade(&inner));
        Ok(MetricsServer { inner })
    }
}

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

fn label(k: &'static str, v: &'static str) -> Label {
    Label::from_static_parts(k, v)
}

/// Handles for one op.
struct OpHandles {
    /// By result: hit, miss, ok, error (get has no `ok`; the others no hit/miss).
    hit: Option<Counter>,
    miss: Option<Counter>,
    ok: Option<Counter>,
    error: Counter,
    duration: Histogram,
}

/// One engine's metric handles, registered once when the engine starts, and
/// what this engine adds to the shared gauges (taken back when it stops, so
/// several engines of one backend sum correctly).
pub(crate) struct EngineMetrics {
    registry: MetricsRegistry,
    backend: &'static str,
    hits: Counter,
    misses: Counter,
    ops: [OpHandles; 4],
    /// `(op, kind)` → counter, registered on first use (15 kinds × 4 ops would
    /// be 60 idle series).
    errors: Vec<((Op, ErrorKind), Counter)>,
    in_flight: Gauge,
    in_flight_limit: Gauge,
    up: Gauge,
    engines: Gauge,
    restarts: Counter,
    sweeps: Counter,
    sweep_failures: Counter,
    removed: Counter,
    scanned: Counter,
    sweep_duration: Histogram,
    events_dropped: Counter,
    // This engine's contribution to the shared gauges.
    my_limit: f64,
    my_in_flight: f64,
    my_up: bool,
    my_dropped: u64,
}

impl EngineMetrics {
    pub(crate) fn new(registry: MetricsRegistry, backend: BackendKind, limit: usize) -> Self {
        let b = backend.as_str();
        let bl = || vec![label("backend", b)];
        let op_handles = |op: Op| {
            let ol = |result: &'static str| {
                vec![
                    label("backend", b),
                    label("op", op.as_str()),
                    label("result", result),
                ]
            };
            let c = |result| registry.counter("objdatakey_operations_total", ol(result));
            let is_get = op == Op::Get;
            OpHandles {
                hit: is_get.then(|| c("hit")),
                miss: is_get.then(|| c("miss")),
                ok: (!is_get).then(|| c("ok")),
                error: c("error"),
                duration: registry.histogram(
                    "objdatakey_operation_duration_seconds",
                    vec![label("backend", b), label("op", op.as_str())],
                ),
            }
        };
        let m = EngineMetrics {
            hits: registry.counter("objdatakey_cache_hits_total", bl()),
            misses: registry.counter("objdatakey_cache_misses_total", bl()),
            ops: Op::ALL.map(op_handles),
            errors: Vec::new(),
            in_flight: registry.gauge("objdatakey_requests_in_flight", bl()),
            in_flight_limit: registry.gauge("objdatakey_requests_in_flight_limit", bl()),
            up: registry.gauge("objdatakey_backend_up", bl()),
            engines: registry.gauge("objdatakey_engines", bl()),
            restarts: registry.counter("objdatakey_backend_restarts_total", bl()),
            sweeps: registry.counter("objdatakey_janitor_sweeps_total", bl()),
            sweep_failures: registry.counter("objdatakey_janitor_sweep_failures_total", bl()),
            removed: registry.counter("objdatakey_janitor_keys_removed_total", bl()),
            scanned: registry.counter("objdatakey_janitor_keys_scanned_total", bl()),
            sweep_duration: registry.histogram("objdatakey_janitor_sweep_duration_seconds", bl()),
            events_dropped: registry.counter("objdatakey_metrics_events_dropped_total", bl()),
            registry,
            backend: b,
            my_limit: limit as f64,
            my_in_flight: 0.0,
            my_up: false,
            my_dropped: 0,
        };
        m.engines.increment(1.0);
        m.in_flight_limit.increment(m.my_limit);
        m
    }

    pub(crate) fn registry(&self) -> &MetricsRegistry {
        &self.registry
    }

    /// Adds what the striped op counters gained since the last drain.
    /// Latencies arrive as bucket counts and are recorded at each bucket's
    /// middle: within about 12% of the measured values.
    pub(crate) fn apply_counts(&mut self, d: &OpTotals) {
        for op in Op::ALL {
            let h = &self.ops[op as usize];
            let (hits, misses, ok) = d.results(op);
            for (counter, n) in [(&h.hit, hits), (&h.miss, misses), (&h.ok, ok)] {
                if let Some(c) = counter
                    && n > 0
                {
                    c.increment(n);
                }
            }
            if hits > 0 {
                self.hits.increment(hits);
            }
            if misses > 0 {
                self.misses.increment(misses);
            }
            for (latency, n) in d.latencies(op) {
                h.duration.record_many(
                    latency.as_secs_f64(),
                    usize::try_from(n).unwrap_or(usize::MAX),
                );
            }
        }
    }

    /// Applies one event to the handles.
    pub(crate) fn apply(&mut self, event: &Event) {
        match *event {
            Event::Failed { op, kind, latency } => {
                let h = &self.ops[op as usize];
                h.duration.record(latency.as_secs_f64());
                h.error.increment(1);
                self.error(op, kind).increment(1);
            }
            Event::Sweep {
                removed,
                scanned,
                duration,
            } => {
                self.sweeps.increment(1);
                self.removed.increment(removed);
                self.scanned.increment(scanned);
                self.sweep_duration.record(duration.as_secs_f64());
            }
            Event::SweepFailed => self.sweep_failures.increment(1),
            Event::Restart => self.restarts.increment(1),
            Event::BackendUp(up) => {
                if up != self.my_up {
                    self.up.increment(if up { 1.0 } else { -1.0 });
                    self.my_up = up;
                }
            }
        }
    }

    fn error(&mut self, op: Op, kind: ErrorKind) -> &Counter {
        let i = match self.errors.iter().position(|(k, _)| *k == (op, kind)) {
            Some(i) => i,
            None => {
                let c = self.registry.counter(
                    "objdatakey_errors_total",
                    vec![
                        label("backend", self.backend),
                        label("op", op.as_str()),
                        label("kind", kind.as_str()),
                    ],
                );
                self.errors.push(((op, kind), c));
                self.errors.len() - 1
            }
        };
        &self.errors[i].1
    }

    /// Samples what is not an event: requests in flight, events dropped.
    pub(crate) fn sample(&mut self, in_flight: usize, dropped: u64) {
        let now = in_flight as f64;
        if now != self.my_in_flight {
            self.in_flight.increment(now - self.my_in_flight);
            self.my_in_flight = now;
        }
        if dropped > self.my_dropped {
            self.events_dropped.increment(dropped - self.my_dropped);
            self.my_dropped = dropped;
        }
    }
}

impl Drop for EngineMetrics {
    /// The engine is gone: take back what it added to the shared gauges.
    fn drop(&mut self) {
        self.engines.decrement(1.0);
        self.in_flight_limit.decrement(self.my_limit);
        self.in_flight.decrement(self.my_in_flight);
        if self.my_up {
            self.up.decrement(1.0);
        }
    }
}

/// A running `/metrics` listener; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct MetricsServer {
    inner: Arc<ServerInner>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// The address it listens on (the real port when port 0 was asked for).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }
}

struct ServerInner {
    local_addr: SocketAddr,
    registry_id: u64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerInner {
    fn start(addr: SocketAddr, registry: MetricsRegistry) -> Result<ServerInner> {
        let io_err = |what: &str, e: std::io::Error| {
            KeystoreError::new(
                ErrorKind::Io,
                format!("metrics.listen {addr}: {what}: {e}; choose another address or port"),
            )
            .with_source(e)
        };
        // Bind here, not on the thread, so a taken port is reported at once.
        let listener = std::net::TcpListener::bind(addr).map_err(|e| io_err("cannot listen", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| io_err("cannot set up the socket", e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| io_err("cannot read the bound address", e))?;
        let registry_id = registry.inner.id;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("objdatakey-metrics-http".into())
            .spawn(move || serve_thread(listener, registry, stop_rx))
            .map_err(|e| io_err("cannot start the listener thread", e))?;
        tracing::info!("serving Prometheus metrics at http://{local_addr}/metrics");
        Ok(ServerInner {
            local_addr,
            registry_id,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerInner {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            // Quick: the thread only finishes its accept loop and drops its runtime.
            let _ = t.join();
        }
    }
}

fn serve_thread(
    listener: std::net::TcpListener,
    registry: MetricsRegistry,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("metrics listener: cannot start its runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("metrics listener: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let registry = registry.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let registry = registry.clone();
                                async move { Ok::<_, Infallible>(respond(&registry, &req)) }
                            });
                            let conn = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                            // A client that goes quiet is dropped rather than held forever.
                            let _ = tokio::time::timeout(Duration::from_secs(300), conn).await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!("metrics listener: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    });
}

fn respond(registry: &MetricsRegistry, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        "/health" => (StatusCode::OK, "text/plain", "OK\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: metrics are at /metrics\n".to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}
