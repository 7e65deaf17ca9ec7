//! [`MetricsServer`]: the `/metrics` HTTP listener.
//!
//! Ours, not `PrometheusBuilder::with_http_listener`: that one always builds a
//! *new* recorder and cannot serve an existing registry. Ours runs on a small
//! dedicated thread (independent of any one engine's lifetime) and is started
//! once per address: engines that ask for the same address with the same
//! registry share it; it stops when the last of them is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

use super::registry::MetricsRegistry;
use crate::error::{ErrorKind, KeystoreError, Result};

impl MetricsRegistry {
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
            if existing.registry_id == self.id() {
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
        let registry_id = registry.id();
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
