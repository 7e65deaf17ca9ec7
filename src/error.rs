//! The one error type of the crate, [`KeystoreError`], and its [`ErrorKind`].
//!
//! Every message says what failed, where (file, key, address or path) and,
//! where there is one, how to fix it. Callers branch on [`ErrorKind`] or on the
//! classifiers ([`KeystoreError::is_retryable`], [`KeystoreError::is_timeout`],
//! [`KeystoreError::is_connection_error`], ...) rather than on message text,
//! which may be reworded. The underlying error (redis-rs's, RocksDB's,
//! serde's, an I/O error, a `get_or_set` loader's) is kept as itself:
//! [`std::error::Error::source`] returns it.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// The result type of every fallible call in this crate.
pub type Result<T, E = KeystoreError> = std::result::Result<T, E>;

/// What kind of failure a [`KeystoreError`] is.
///
/// New kinds may be added in minor releases, so matches need a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration file is missing, unreadable, not YAML, or has a bad value.
    Config,
    /// A network backend could not be reached, or the connection dropped.
    Connection,
    /// The server refused our credentials (wrong ACL user or password).
    Auth,
    /// TLS setup or handshake failed (bad CA file, wrong certificate).
    Tls,
    /// The server answered with an error of its own (a refused or unknown
    /// command, out of memory, a read-only replica): the source says which.
    Backend,
    /// The backend stopped while the call was on its way (its workers or
    /// actor are being restarted by the supervisor): retry the call.
    Stopped,
    /// The embedded database could not read or write (an I/O error, a full
    /// disk, a damaged file): the source is RocksDB's error.
    Storage,
    /// A server's answer did not have the shape its command promises (a
    /// proxy or a server of another kind in between).
    Protocol,
    /// An embedded database is locked by another process (or another handle).
    Locked,
    /// The embedded database does not exist and `create_if_missing` is off.
    NotFound,
    /// A stored value is not in the format this crate writes.
    CorruptValue,
    /// A value could not be encoded to, or decoded from, JSON as the caller's type.
    Serialization,
    /// The request did not complete within the configured request timeout.
    Timeout,
    /// Too many requests in flight: the engine stayed full for the whole timeout.
    Busy,
    /// The engine has shut down (or its backend actor is gone).
    Shutdown,
    /// A backend call panicked; the supervisor restarts the backend.
    Panic,
    /// The API was used in a way that cannot work (e.g. a blocking call on an async thread).
    Usage,
    /// An I/O error outside the backends (e.g. creating a directory).
    Io,
    /// The loader given to `get_or_set` failed (its error is the source) or
    /// panicked; nothing was stored.
    Loader,
    /// A name or value is larger than the keystore takes
    /// (`keystore.max_key_bytes`, `keystore.max_value_bytes`); nothing was
    /// sent to the backend.
    TooLarge,
}

impl ErrorKind {
    /// A short, stable, lower-case name: used as the `kind` label in metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connection => "connection",
            ErrorKind::Auth => "auth",
            ErrorKind::Tls => "tls",
            ErrorKind::Backend => "backend",
            ErrorKind::Stopped => "stopped",
            ErrorKind::Storage => "storage",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Locked => "locked",
            ErrorKind::NotFound => "not_found",
            ErrorKind::CorruptValue => "corrupt_value",
            ErrorKind::Serialization => "serialization",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Busy => "busy",
            ErrorKind::Shutdown => "shutdown",
            ErrorKind::Panic => "panic",
            ErrorKind::Usage => "usage",
            ErrorKind::Io => "io",
            ErrorKind::Loader => "loader",
            ErrorKind::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible call in this crate.
///
/// `Display` gives the whole message (what, where, how to fix) followed by
/// the underlying error's; [`kind`](Self::kind) gives the category to branch
/// on; [`source`](std::error::Error::source) gives the underlying error
/// itself. Cheap to clone, so one failure can be answered to several waiters.
#[derive(Clone)]
pub struct KeystoreError {
    kind: ErrorKind,
    message: String,
    /// The underlying error, shared by the clones.
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl KeystoreError {
    /// A new error of `kind` with a full message.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        KeystoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Keeps the underlying error (an error value, or a text: `message: cause`).
    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// Puts `what` (the operation, and what it was about) before the message.
    pub(crate) fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The category of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the same call may succeed if made again, as it is: the
    /// backend was unreachable, slow, full or restarting (kinds
    /// `Connection`, `Timeout`, `Busy`, `Stopped`, `Panic`). Everything
    /// else (bad config, credentials, data, usage, a server's own error)
    /// fails again until something is fixed.
    ///
    /// A write that failed this way may still have been applied (its reply
    /// was lost): a SET repeated is harmless, a counter built on it is not.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Connection
                | ErrorKind::Timeout
                | ErrorKind::Busy
                | ErrorKind::Stopped
                | ErrorKind::Panic
        )
    }

    /// The backend failed, not the caller or the data: unreachable, slow,
    /// full, restarting, or answering errors (the kinds a fail-safe copy
    /// may stand in for).
    #[must_use]
    pub fn is_backend_failure(&self) -> bool {
        self.is_retryable()
            || matches!(
                self.kind,
                ErrorKind::Backend | ErrorKind::Storage | ErrorKind::Protocol
            )
    }

    /// The request did not finish in time (including waiting for room in a full engine).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout | ErrorKind::Busy)
    }

    /// The backend could not be reached or the connection dropped: retrying later may work.
    #[must_use]
    pub fn is_connection_error(&self) -> bool {
        matches!(self.kind, ErrorKind::Connection | ErrorKind::Tls)
    }

    /// The configuration is wrong: fix the file, retrying will not help.
    #[must_use]
    pub fn is_config_error(&self) -> bool {
        matches!(self.kind, ErrorKind::Config)
    }

    /// The stored data or the caller's type does not match: an error for that key only.
    #[must_use]
    pub fn is_data_error(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::CorruptValue | ErrorKind::Serialization
        )
    }
}

impl fmt::Display for KeystoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeystoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeystoreError({}: {self})", self.kind)
    }
}

impl StdError for KeystoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let source: &(dyn StdError + Send + Sync + 'static) = self.source.as_deref()?;
        Some(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_includes_source_and_kind_classifies() {
        let e = KeystoreError::new(
            ErrorKind::Connection,
            "Redis connection failed: 127.0.0.1:1",
        )
        .with_source("Connection refused");
        assert_eq!(
            e.to_string(),
            "Redis connection failed: 127.0.0.1:1: Connection refused"
        );
        assert!(e.is_connection_error());
        assert!(!e.is_timeout());
        assert!(KeystoreError::new(ErrorKind::Busy, "full").is_timeout());
        assert!(format!("{e:?}").contains("connection"));
        assert!(e.is_retryable());
        assert!(!KeystoreError::new(ErrorKind::Config, "bad").is_retryable());
    }

    #[test]
    fn the_source_is_the_underlying_error_itself() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        let e =
            KeystoreError::new(ErrorKind::Storage, "set of key \"k\" on rocksdb").with_source(io);
        let source = e.source().expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the io::Error itself");
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
        assert_eq!(e.to_string(), "set of key \"k\" on rocksdb: no space left");
        // A clone shares it.
        assert!(e.clone().source().is_some());
        assert!(KeystoreError::new(ErrorKind::Usage, "x").source().is_none());
    }
}
