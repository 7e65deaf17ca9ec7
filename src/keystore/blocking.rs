//! [`BlockingKeystore`]: the same calls as [`Keystore`], for synchronous code.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Keystore;
use crate::config::BackendKind;
use crate::engine::timer;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::metrics::Stats;
use crate::ttl::Ttl;

/// The blocking API: the same calls as [`Keystore`], for synchronous code.
///
/// Each call blocks the calling thread until the answer (or the request
/// timeout). Calling it from inside an async runtime is an error
/// ([`ErrorKind::Usage`]) rather than a deadlock: use the async methods there.
#[derive(Clone, Debug)]
pub struct BlockingKeystore {
    keystore: Keystore,
}

impl BlockingKeystore {
    pub(super) fn new(keystore: Keystore) -> Self {
        BlockingKeystore { keystore }
    }

    /// Drives `f` to completion on this thread. The async calls need no
    /// runtime of the caller's (their timers live on the engine's timer
    /// runtime, Redis I/O on the connection's), so any thread will do.
    fn run<F: Future>(&self, what: &str, f: F) -> Result<F::Output> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(KeystoreError::new(
                ErrorKind::Usage,
                format!(
                    "blocking {what} called on an async runtime thread; use the async method \
                     (`keystore.{what}(..).await`) there"
                ),
            ));
        }
        Ok(timer::handle().block_on(f))
    }

    /// The async handle this wraps.
    #[must_use]
    pub fn handle(&self) -> &Keystore {
        &self.keystore
    }

    /// See [`Keystore::set_cache`].
    pub fn set_cache<T: Serialize + ?Sized>(&self, name: &str, value: &T, ttl: Ttl) -> Result<()> {
        self.run("set_cache", self.keystore.set_cache(name, value, ttl))?
    }

    /// See [`Keystore::get_cache`].
    pub fn get_cache<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.run("get_cache", self.keystore.get_cache(name))?
    }

    /// See [`Keystore::get_json`].
    pub fn get_json(&self, name: &str) -> Result<Option<String>> {
        self.run("get_json", self.keystore.get_json(name))?
    }

    /// See [`Keystore::delete`].
    pub fn delete(&self, name: &str) -> Result<bool> {
        self.run("delete", self.keystore.delete(name))?
    }

    /// See [`Keystore::get_many`].
    pub fn get_many<T: DeserializeOwned, S: AsRef<str>>(
        &self,
        names: &[S],
    ) -> Result<Vec<Option<T>>> {
        self.run("get_many", self.keystore.get_many(names))?
    }

    /// See [`Keystore::set_many`].
    pub fn set_many<T: Serialize, S: AsRef<str>>(
        &self,
        entries: &[(S, T)],
        ttl: Ttl,
    ) -> Result<()> {
        self.run("set_many", self.keystore.set_many(entries, ttl))?
    }

    /// See [`Keystore::delete_many`].
    pub fn delete_many<S: AsRef<str>>(&self, names: &[S]) -> Result<u64> {
        self.run("delete_many", self.keystore.delete_many(names))?
    }

    /// See [`Keystore::delete_prefix`].
    pub fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.run("delete_prefix", self.keystore.delete_prefix(prefix))?
    }

    /// See [`Keystore::clear`].
    pub fn clear(&self) -> Result<u64> {
        self.run("clear", self.keystore.clear())?
    }

    /// See [`Keystore::ttl`].
    pub fn ttl(&self, name: &str) -> Result<Option<Ttl>> {
        self.run("ttl", self.keystore.ttl(name))?
    }

    /// See [`Keystore::get_or_set`]; the loader here is a plain function. It
    /// runs on a thread for blocking work, not on this one, so a caller that
    /// times out does not cancel it for the others.
    pub fn get_or_set<T, F, E>(&self, name: &str, ttl: Ttl, loader: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> std::result::Result<T, E> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let load = || async move {
            match tokio::task::spawn_blocking(loader).await {
                Ok(result) => result,
                // A panic in the loader: re-raised here, caught by the flight.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        };
        self.run("get_or_set", self.keystore.get_or_set(name, ttl, load))?
    }

    /// See [`Keystore::ping`].
    pub fn ping(&self) -> Result<()> {
        self.run("ping", self.keystore.ping())?
    }

    /// See [`Keystore::has_keystore`].
    #[must_use]
    pub fn has_keystore(&self) -> bool {
        self.ping().is_ok()
    }

    /// See [`Keystore::purge_expired`].
    pub fn purge_expired(&self) -> Result<u64> {
        self.run("purge_expired", self.keystore.purge_expired())?
    }

    /// See [`Keystore::stats`].
    pub fn stats(&self) -> Result<Stats> {
        self.run("stats", self.keystore.stats())
    }

    /// See [`Keystore::backend`].
    #[must_use]
    pub fn backend(&self) -> BackendKind {
        self.keystore.backend()
    }
}
