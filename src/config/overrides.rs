//! [`Overrides`]: explicit connection settings that win over the config file.

use std::path::PathBuf;

use super::{BackendKind, Config, Secret};

/// Explicit connection settings that win over the config file
/// (the original module's `connect_keystore` arguments).
///
/// `ip`, `port`, `user` and `password` apply to the section of the chosen
/// backend (`keystore.redis` or `keystore.dragonfly`); `path` to RocksDB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Overrides {
    /// The backend to use instead of `keystore.type`.
    pub backend: Option<BackendKind>,
    /// Server host.
    pub ip: Option<String>,
    /// Server port.
    pub port: Option<u16>,
    /// ACL user.
    pub user: Option<String>,
    /// Password (never printed).
    pub password: Option<Secret>,
    /// RocksDB directory.
    pub path: Option<PathBuf>,
}

impl Overrides {
    /// No overrides.
    pub fn new() -> Self {
        Overrides::default()
    }

    /// Use `backend`.
    pub fn backend(mut self, backend: BackendKind) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Server host.
    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    /// Server port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// ACL user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Password.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password));
        self
    }

    /// RocksDB directory.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Writes these settings into `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(b) = self.backend {
            config.backend = b;
        }
        let server = match config.backend {
            BackendKind::Dragonfly => &mut config.dragonfly,
            _ => &mut config.redis,
        };
        if let Some(ip) = &self.ip {
            server.ip = ip.clone();
        }
        if let Some(p) = self.port {
            server.port = p;
        }
        if let Some(u) = &self.user {
            server.user = Some(u.clone());
        }
        if let Some(p) = &self.password {
            server.password = Some(p.clone());
        }
        if let Some(p) = &self.path {
            config.rocksdb.path = p.clone();
        }
    }
}
