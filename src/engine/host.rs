//! [`Host`]: who runs the actix System the actors live in.
//!
//! `Actor::start` needs a running actix System. Inside one (an actix-web
//! worker, `#[actix::main]`) the actors join the current arbiter. Anywhere
//! else (a plain tokio runtime, synchronous code) the engine runs its own
//! System on a dedicated thread, stopped when the engine is dropped.

use std::thread::JoinHandle;

use actix::System;

use crate::error::{ErrorKind, KeystoreError, Result};

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

/// After [`Host::stop`]: whether the caller may now block until the
/// backend has closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MayWait {
    /// The engine's thread has finished; waiting for the store is safe.
    Yes,
    /// Waiting here would block the thread the actors need to finish (the
    /// engine thread itself, or a shared arbiter thread inside async code).
    No,
}

/// Whether this thread runs an actix arbiter (so `Actor::start` works here).
fn in_actix() -> bool {
    actix::Arbiter::try_current().is_some() && tokio::runtime::Handle::try_current().is_ok()
}

impl Host {
    /// Runs `launch` inside an actix System, the current one if there is one,
    /// else a new one on a dedicated thread, and returns what it built.
    pub(crate) fn start<T: Send + 'static>(
        launch: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(T, Host)> {
        if in_actix() {
            return Ok((launch(), Host::Shared));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("objdatakey-engine".into())
            .spawn(move || {
                let system = System::new();
                let built = system.block_on(async move { launch() });
                if tx.send((built, System::current())).is_err() {
                    return;
                }
                if let Err(e) = system.run() {
                    tracing::error!("objdatakey engine thread stopped with an error: {e}");
                }
            })
            .map_err(|e| {
                KeystoreError::new(ErrorKind::Io, "cannot start the engine thread").with_source(e)
            })?;
        let (built, system) = rx.recv().map_err(|_| {
            KeystoreError::new(ErrorKind::Panic, "the engine thread died while starting")
        })?;
        Ok((
            built,
            Host::Owned {
                system,
                thread: Some(thread),
            },
        ))
    }

    /// Stops an owned System and joins its thread; nothing for a shared one.
    pub(crate) fn stop(&mut self) -> MayWait {
        match self {
            Host::Owned { system, thread } => {
                system.stop();
                match thread.take() {
                    Some(t) if t.thread().id() == std::thread::current().id() => {
                        *thread = Some(t);
                        MayWait::No
                    }
                    Some(t) => {
                        let _ = t.join();
                        MayWait::Yes
                    }
                    None => MayWait::Yes,
                }
            }
            Host::Shared if tokio::runtime::Handle::try_current().is_err() => MayWait::Yes,
            Host::Shared => MayWait::No,
        }
    }
}
