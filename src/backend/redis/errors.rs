//! Turning a redis-rs error into a [`KeystoreError`] that says what failed,
//! where (the address) and which config key fixes it.

use redis::RedisError;

use super::RedisTarget;
use super::target::Client;
use crate::error::{ErrorKind, KeystoreError};

impl RedisTarget {
    /// A [`KeystoreError`] for `err`, met while doing `what`.
    pub(super) fn error(&self, what: &str, err: &RedisError) -> KeystoreError {
        let section = format!("keystore.{}", self.kind);
        let text = err.to_string();
        let lower = text.to_ascii_lowercase();
        if err.kind() == redis::ErrorKind::AuthenticationFailed
            || err
                .code()
                .is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH")
            || lower.contains("wrongpass")
            || lower.contains("noauth")
        {
            return KeystoreError::new(
                ErrorKind::Auth,
                format!(
                    "{} authentication failed: {}: the server refused the credentials; \
                     check {section}.user and {section}.password",
                    self.label(),
                    self.address
                ),
            )
            .with_source(text);
        }
        if self.tls
            && (lower.contains("certificate")
                || lower.contains("tls")
                || lower.contains("handshake")
                || lower.contains("unknownissuer"))
        {
            return KeystoreError::new(
                ErrorKind::Tls,
                format!(
                    "{} TLS handshake failed: {}: the server's certificate was not accepted; \
                     check {section}.ca_file (the CA that signed the server's certificate) \
                     and that the certificate names the host you connect to",
                    self.label(),
                    self.address
                ),
            )
            .with_source(text);
        }
        if err.is_timeout() {
            return KeystoreError::new(
                ErrorKind::Timeout,
                format!(
                    "{what} on {} timed out: {} did not answer in time",
                    self.kind, self.address
                ),
            );
        }
        if err.is_connection_refusal() {
            let keys = if matches!(self.client, Client::Cluster(_)) {
                format!("is {section}.nodes right")
            } else {
                format!("are {section}.ip and {section}.port right")
            };
            return KeystoreError::new(
                ErrorKind::Connection,
                format!(
                    "{} connection failed: {}: Connection refused; is the server running, \
                     and {keys}?",
                    self.label(),
                    self.address
                ),
            );
        }
        // The server is there but cannot serve the key yet: a cluster node
        // down or rejoining (CLUSTERDOWN, MASTERDOWN, TRYAGAIN) or a server
        // loading its data (LOADING). Like a refused connection, it passes.
        if let redis::ErrorKind::Server(
            code @ (redis::ServerErrorKind::ClusterDown
            | redis::ServerErrorKind::MasterDown
            | redis::ServerErrorKind::TryAgain
            | redis::ServerErrorKind::BusyLoading),
        ) = err.kind()
        {
            return KeystoreError::new(
                ErrorKind::Connection,
                format!(
                    "{what} on {} ({}) failed: the server cannot serve it yet ({code:?}: a \
                     cluster node is down or rejoining, or the server is loading its data); \
                     retry shortly",
                    self.kind, self.address
                ),
            )
            .with_source(text);
        }
        if err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error() {
            return KeystoreError::new(
                ErrorKind::Connection,
                format!(
                    "{} connection failed: {}: {}",
                    self.label(),
                    self.address,
                    io_text(&text)
                ),
            );
        }
        KeystoreError::new(
            ErrorKind::Backend,
            format!("{what} on {} ({}) failed", self.kind, self.address),
        )
        .with_source(text)
    }
}

/// The OS error text without the `(os error N)` suffix noise kept by `io::Error`.
fn io_text(text: &str) -> &str {
    text.split(" (os error").next().unwrap_or(text)
}
