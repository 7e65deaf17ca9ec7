//! Starting and stopping the actors, inside the caller's actix System or on
//! an engine thread of our own.
//!
//! `Actor::start` needs a running actix System. Inside one (an actix-web
//! worker, `#[actix::main]`) the actors join the current arbiter. Anywhere
//! else (a plain tokio runtime, synchronous code) the engine runs its own
//! System on a dedicated thread, stopped when the last handle is dropped.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::Duration;

use actix::prelude::*;

use crate::backend::BackendSlot;
use crate::config::Config;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::prometheus::{EngineMetrics, MetricsRegistry};
use crate::stats::{Event, Recorder};

pub(crate) mod janitor;
pub(crate) mod metrics;
pub(crate) mod rocks_worker;
pub(crate) mod supervisor;

use metrics::MetricsActor;
use supervisor::{BackendSpec, Supervisor};

/// How long dropping the last handle waits for the database to close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The running actors, as the handle reaches them.
pub(crate) struct Actors {
    pub supervisor: Addr<Supervisor>,
    pub metrics: Addr<MetricsActor>,
    pub slot: Arc<BackendSlot>,
    pub recorder: Recorder,
    /// Bounds requests in flight (shared with the metrics actor, which samples it).
    pub limiter: Arc<tokio::sync::Semaphore>,
    /// The runtime the actors run on: its timer serves request timeouts, and
    /// the blocking API drives futures through it.
    pub rt: tokio::runtime::Handle,
}

/// Who runs the actix System the actors live in.
pub(crate) enum Host {
    /// Our own System on a dedicated thread.
    Owned {
        system: System,
        thread: Option<JoinHandle<()>>,
    },
    /// The caller's System: it outlives us.
    Shared,
}

/// Everything needed to start the actors.
pub(crate) struct Launch {
    pub config: Config,
    pub spec: BackendSpec,
    /// Where to record; `None` turns recording off entirely.
    pub metrics: Option<MetricsRegistry>,
}

fn launch_here(l: Launch) -> Actors {
    let (recorder, events, dropped): (
        Recorder,
        crossbeam_channel::Receiver<Event>,
        Arc<AtomicU64>,
    ) = Recorder::new(l.metrics.is_some());
    let max_in_flight = l.config.engine.max_in_flight;
    let limiter = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let prom = l
        .metrics
        .map(|r| EngineMetrics::new(r, l.config.backend, max_in_flight));
    let metrics = MetricsActor::new(
        l.config.backend,
        events,
        dropped,
        recorder.counters(),
        prom,
        limiter.clone(),
        max_in_flight,
    )
    .start();
    let slot = Arc::new(BackendSlot::default());
    let supervisor = Supervisor::launch(&l.config, l.spec, slot.clone(), recorder.clone());
    Actors {
        supervisor,
        metrics,
        slot,
        recorder,
        limiter,
        rt: tokio::runtime::Handle::current(),
    }
}

/// Whether this thread runs an actix arbiter (so `Actor::start` works here).
fn in_actix() -> bool {
    actix::Arbiter::try_current().is_some() && tokio::runtime::Handle::try_current().is_ok()
}

/// Starts the actors, in the current actix System if there is one.
pub(crate) fn start(l: Launch) -> Result<(Actors, Host)> {
    if in_actix() {
        return Ok((launch_here(l), Host::Shared));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("objdatakey-engine".into())
        .spawn(move || {
            let system = System::new();
            let actors = system.block_on(async move { launch_here(l) });
            if tx.send((actors, System::current())).is_err() {
                return;
            }
            if let Err(e) = system.run() {
                tracing::error!("objdatakey engine thread stopped with an error: {e}");
            }
        })
        .map_err(|e| {
            KeystoreError::new(ErrorKind::Io, "cannot start the engine thread").with_source(e)
        })?;
    let (actors, system) = rx.recv().map_err(|_| {
        KeystoreError::new(ErrorKind::Panic, "the engine thread died while starting")
    })?;
    Ok((
        actors,
        Host::Owned {
            system,
            thread: Some(thread),
        },
    ))
}

impl Host {
    /// Stops an owned System and waits for its thread; nothing for a shared one.
    /// Answers whether the caller may now wait for the backend to close: not
    /// on the engine thread itself (that thread must return first), nor on a
    /// shared arbiter thread inside async code (the actors need that thread).
    pub(crate) fn stop(&mut self) -> bool {
        match self {
            Host::Owned { system, thread } => {
                system.stop();
                match thread.take() {
                    Some(t) if t.thread().id() == std::thread::current().id() => {
                        *thread = Some(t);
                        false
                    }
                    Some(t) => {
                        let _ = t.join();
                        true
                    }
                    None => true,
                }
            }
            Host::Shared => tokio::runtime::Handle::try_current().is_err(),
        }
    }
}

/// Waits (blocking, bounded) until the store behind `closed` is dropped.
pub(crate) fn wait_closed(closed: &crossbeam_channel::Receiver<()>) -> bool {
    matches!(
        closed.recv_timeout(CLOSE_WAIT),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    )
}
