//! Real `redis-server` processes for the tests: plain, password/ACL, TLS and
//! cluster variants, each on free loopback ports, killed on drop.
//!
//! Outside CI a missing `redis-server` skips the test with a message; under
//! `CI=true` it is a failure, since CI installs it (`scripts/install-deps.sh`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use super::{free_port, have_tool};

/// TLS material made with `openssl` for one test: a CA and a server
/// certificate for 127.0.0.1 signed by it, plus an unrelated second CA.
pub struct TlsFiles {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsFiles {
    pub fn generate() -> TlsFiles {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["ca", "other"] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.crt"),
                    "-subj",
                    &format!("/CN=objdatakey test {name} CA"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            );
        }
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        TlsFiles {
            ca: d.join("ca.crt"),
            other_ca: d.join("other.crt"),
            cert: d.join("server.crt"),
            key: d.join("server.key"),
            dir,
        }
    }
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct Options {
    /// `requirepass` (the `default` user's password).
    pub password: Option<String>,
    /// An ACL user and its password.
    pub acl_user: Option<(String, String)>,
    /// Serve TLS only, with these files.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Cluster mode.
    pub cluster: bool,
}

/// One redis-server child process.
pub struct RedisServer {
    pub port: u16,
    opts: Options,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a plain server; `None` when redis-server is missing (outside CI).
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Option<RedisServer> {
        if !have_tool("redis-server") {
            return None;
        }
        let mut s = RedisServer {
            port: free_port(),
            opts,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(self.dir.path())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .args(["--dir", self.dir.path().to_str().unwrap()]);
        match &self.opts.tls {
            Some((cert, key, ca)) => {
                cmd.args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key)
                    .arg("--tls-ca-cert-file")
                    .arg(ca)
                    .args(["--tls-auth-clients", "no"]);
            }
            None => {
                cmd.args(["--port", &port]);
            }
        }
        if let Some(p) = &self.opts.password {
            cmd.args(["--requirepass", p]);
        }
        if let Some((user, pass)) = &self.opts.acl_user {
            // Each word of the ACL rule is its own argument (one quoted
            // string would be read as a user name with spaces).
            cmd.args([
                "--user",
                user,
                "on",
                &format!(">{pass}"),
                "~*",
                "&*",
                "+@all",
            ]);
        }
        if self.opts.cluster {
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "2000"]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().expect("start redis-server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the port accepts connections (and, without TLS, answers PING).
    fn wait_ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                );
            }
            if let Ok(conn) = TcpStream::connect(("127.0.0.1", self.port)) {
                if self.opts.tls.is_some() || self.opts.password.is_some() {
                    return;
                }
                drop(conn);
                if self.cli(&["PING"]).trim() == "PONG" {
                    return;
                }
            }
            assert!(
                Instant::now() < end,
                "redis-server on port {} did not start within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `redis-cli` against this (plain) server and answers its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A raw redis-rs connection (plain servers), to check what is stored.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .expect("raw connection to the test server")
    }

    /// Kills the server at once (SIGKILL): clients see the connection drop.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a stopped server keeps
    /// its connections open but answers nothing.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A local Redis Cluster of `masters` masters (no replicas).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Option<RedisCluster> {
        if !have_tool("redis-server") || !have_tool("redis-cli") {
            return None;
        }
        let opts = Options {
            cluster: true,
            ..Options::default()
        };
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::start_with(opts.clone()).unwrap())
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let end = Instant::now() + Duration::from_secs(30);
        for n in &nodes {
            while !n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(
                    Instant::now() < end,
                    "the cluster did not become ok in 30 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(RedisCluster { nodes })
    }
}

/// A config selecting `kind` (redis or dragonfly) at `127.0.0.1:port`.
pub fn server_config(kind: objdatakey::BackendKind, port: u16) -> objdatakey::Config {
    let mut c = objdatakey::Config {
        backend: kind,
        ..objdatakey::Config::default()
    };
    let s = match kind {
        objdatakey::BackendKind::Dragonfly => &mut c.dragonfly,
        _ => &mut c.redis,
    };
    s.ip = "127.0.0.1".into();
    s.port = port;
    c
}

/// A config selecting Redis Cluster with every node of `cluster` as a seed.
pub fn cluster_config(cluster: &RedisCluster) -> objdatakey::Config {
    let mut c = objdatakey::Config {
        backend: objdatakey::BackendKind::Redis,
        ..objdatakey::Config::default()
    };
    c.redis.nodes = cluster
        .nodes
        .iter()
        .map(|n| objdatakey::config::NodeAddr {
            host: "127.0.0.1".into(),
            port: n.port,
        })
        .collect();
    c
}
