//! [`RedisTarget`]: everything needed to reach one server or cluster,
//! checked and built once from the `keystore.redis` / `keystore.dragonfly`
//! section (addresses, ACL credentials, TLS with an optional CA file).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError, TlsCertificates};

use crate::config::{BackendKind, RedisConfig};
use crate::error::{ErrorKind, KeystoreError, Result};

/// Everything needed to reach one server or cluster, checked and built once
/// (a CA file that cannot be read is a config error at startup, not at the
/// first request).
pub(crate) struct RedisTarget {
    /// `redis` or `dragonfly`: names the config section and the messages.
    pub(super) kind: BackendKind,
    /// `127.0.0.1:6379`, or the seed nodes of a cluster, for messages.
    pub(super) address: String,
    pub(super) client: Client,
    /// A plain client per node (`address`, client), for the backplane's
    /// subscription: the server itself, or each seed node of a cluster.
    pub(super) subscribers: Vec<(String, redis::Client)>,
    /// How long a connection attempt (TCP and TLS handshake) may take.
    pub(super) connect_timeout: Duration,
    /// How long a command may wait for its reply (the request timeout).
    pub(super) response_timeout: Duration,
    pub(super) tls: bool,
    /// Credentials every connection authenticates with.
    settings: RedisConnectionInfo,
    /// The CA certificates (PEM) a TLS connection checks the server against.
    certs: Option<Vec<u8>>,
    /// Cleared once the server refuses `EVAL` (an ACL without scripting,
    /// or the command renamed away): SETs of one TTL then go out as a
    /// pipeline instead of one script call (see `commands`).
    scripts: AtomicBool,
}

// One per engine, built once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Client {
    Single(redis::Client),
    /// The seed nodes of a cluster; [`cluster`](super::cluster) connects to
    /// each node it routes to with [`RedisTarget::node_client`].
    Cluster(Vec<(String, u16)>),
}

impl RedisTarget {
    /// Checks `cfg` (the `keystore.<kind>` section) and builds the client.
    pub(crate) fn new(
        kind: BackendKind,
        cfg: &RedisConfig,
        request_timeout: Duration,
    ) -> Result<RedisTarget> {
        let section = format!("keystore.{kind}");
        let certs = match (&cfg.ca_file, cfg.ssl) {
            (Some(path), true) => {
                let pem = std::fs::read(path).map_err(|e| {
                    KeystoreError::new(
                        ErrorKind::Config,
                        format!(
                            "cannot read the CA file {} ({section}.ca_file); \
                             point it at a PEM file of CA certificates",
                            path.display()
                        ),
                    )
                    .with_source(e)
                })?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(KeystoreError::new(
                        ErrorKind::Config,
                        format!(
                            "the CA file {} ({section}.ca_file) holds no PEM certificate \
                             (no -----BEGIN CERTIFICATE----- line)",
                            path.display()
                        ),
                    ));
                }
                Some(pem)
            }
            (Some(path), false) => {
                tracing::warn!(
                    "{section}.ca_file ({}) is ignored because {section}.ssl is false",
                    path.display()
                );
                None
            }
            (None, _) => None,
        };
        let mut settings = RedisConnectionInfo::default();
        if let Some(u) = &cfg.user {
            settings = settings.set_username(u);
        }
        if let Some(p) = &cfg.password {
            settings = settings.set_password(p.expose());
        }
        let mut target = RedisTarget {
            kind,
            address: cfg.address(),
            client: Client::Cluster(Vec::new()),
            subscribers: Vec::new(),
            connect_timeout: cfg.connect_timeout,
            response_timeout: request_timeout,
            tls: cfg.ssl,
            settings,
            certs,
            scripts: AtomicBool::new(true),
        };
        // One plain client per node: the whole target for a single server,
        // and what the backplane subscribes through on a cluster (a plain
        // PUBLISH reaches every node's subscribers).
        target.subscribers = if cfg.nodes.is_empty() {
            vec![(cfg.address(), target.node_client(&cfg.ip, cfg.port)?)]
        } else {
            cfg.nodes
                .iter()
                .map(|n| Ok((n.to_string(), target.node_client(&n.host, n.port)?)))
                .collect::<Result<Vec<_>>>()?
        };
        if cfg.nodes.is_empty() {
            target.client = Client::Single(target.subscribers[0].1.clone());
        } else {
            target.client =
                Client::Cluster(cfg.nodes.iter().map(|n| (n.host.clone(), n.port)).collect());
            target.address = format!(
                "cluster {}",
                cfg.nodes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        Ok(target)
    }

    /// A plain client for the node at `host:port`, with the section's
    /// credentials and TLS settings.
    pub(super) fn node_client(&self, host: &str, port: u16) -> Result<redis::Client> {
        let kind = self.kind;
        let bad_client = |e: RedisError| {
            KeystoreError::new(
                ErrorKind::Config,
                format!("cannot set up the {kind} client from keystore.{kind}"),
            )
            .with_source(e)
        };
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_owned(), port)
        };
        let info = addr
            .into_connection_info()
            .map_err(bad_client)?
            .set_redis_settings(self.settings.clone());
        match &self.certs {
            Some(pem) => redis::Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
        .map_err(bad_client)
    }

    /// A lazy connection manager over `client` (a node's connection): it
    /// connects on first use and, after an I/O error, makes one new attempt
    /// per failure (no retry loop), so while the node is down requests fail
    /// fast with the connect error instead of waiting out a backoff. It
    /// spawns on the current runtime, which must be the connection's home.
    ///
    /// It has no response timeout of its own: every command it carries runs
    /// under its call's deadline (the request timeout, counted from the call:
    /// [`RedisDirect::call_alone`](super::direct::RedisDirect::call_alone),
    /// and the cluster's `CLUSTER SLOTS` under its own), and a second timer
    /// per command costs a timer-wheel insert and removal on every call. A
    /// command given up on leaves its reply to be read and dropped when it
    /// comes, as redis-rs does after its own timeout.
    pub(super) fn manager(&self, client: redis::Client) -> redis::RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        ConnectionManager::new_lazy_with_config(client, config)
    }

    /// Whether combined SETs with a TTL may go out as one `EVAL`.
    pub(super) fn scripts_allowed(&self) -> bool {
        self.scripts.load(Ordering::Relaxed)
    }

    /// The server refused `EVAL` with `e`: from now on SETs of one TTL go
    /// out as a pipeline. Said once, at warn level: it costs throughput.
    pub(super) fn refuse_scripts(&self, e: &RedisError) {
        if self.scripts.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "{} at {} refuses EVAL ({e}); concurrent SETs with a TTL now go out as \
                 pipelines of SET … EX instead of one script call each (allow EVAL for \
                 this user, e.g. ACL SETUSER <user> +eval, to get it back)",
                self.label(),
                self.address
            );
        }
    }

    /// The address errors name: `host:port`, or `cluster h1:p1,h2:p2`.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// `redis` or `dragonfly`.
    pub(crate) fn kind(&self) -> BackendKind {
        self.kind
    }

    /// `Redis` or `Dragonfly`, to start messages with.
    pub(super) fn label(&self) -> &'static str {
        match self.kind {
            BackendKind::Dragonfly => "Dragonfly",
            _ => "Redis",
        }
    }
}
