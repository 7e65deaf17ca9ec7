//! [`RedisTarget`]: everything needed to reach one server or cluster,
//! checked and built once from the `keystore.redis` / `keystore.dragonfly`
//! section (addresses, ACL credentials, TLS with an optional CA file).

use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
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
}

// One per engine, built once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
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
        let bad_client = |e: RedisError| {
            KeystoreError::new(
                ErrorKind::Config,
                format!("cannot set up the {kind} client from {section}"),
            )
            .with_source(e)
        };
        // One plain client per node: the whole target for a single server,
        // and what the backplane subscribes through on a cluster (a plain
        // PUBLISH reaches every node's subscribers).
        let node_client = |host: &str, port: u16| -> Result<redis::Client> {
            let addr = if cfg.ssl {
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
                .set_redis_settings(settings.clone());
            match &certs {
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
        };
        let subscribers = if cfg.nodes.is_empty() {
            vec![(cfg.address(), node_client(&cfg.ip, cfg.port)?)]
        } else {
            cfg.nodes
                .iter()
                .map(|n| Ok((n.to_string(), node_client(&n.host, n.port)?)))
                .collect::<Result<Vec<_>>>()?
        };
        let (client, address) = if cfg.nodes.is_empty() {
            (Client::Single(subscribers[0].1.clone()), cfg.address())
        } else {
            let nodes: Vec<(String, u16)> =
                cfg.nodes.iter().map(|n| (n.host.clone(), n.port)).collect();
            let mut b = ClusterClientBuilder::new(nodes)
                .connection_timeout(cfg.connect_timeout)
                .response_timeout(request_timeout)
                .retries(2);
            if let Some(u) = &cfg.user {
                b = b.username(u);
            }
            if let Some(p) = &cfg.password {
                b = b.password(p.expose());
            }
            if cfg.ssl {
                b = b.tls(redis::TlsMode::Secure);
                if let Some(pem) = certs {
                    b = b.certs(TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    });
                }
            }
            let address = format!(
                "cluster {}",
                cfg.nodes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            (Client::Cluster(b.build().map_err(bad_client)?), address)
        };
        Ok(RedisTarget {
            kind,
            address,
            client,
            subscribers,
            connect_timeout: cfg.connect_timeout,
            response_timeout: request_timeout,
            tls: cfg.ssl,
        })
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
