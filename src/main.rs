//! `objdatakey`: check, inspect, use and load-test a keystore from the command line.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use objdatakey::config::{ConfigLoader, RedisConfig};
use objdatakey::{BackendKind, Config, Keystore, Ttl};

/// Check, inspect and use an objdatakey keystore.
#[derive(Parser, Debug)]
#[command(name = "objdatakey", version, about)]
struct Cli {
    /// Config file (default: $OBJDATAKEY_CONFIG, else ./config.yaml).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics while the command runs
    /// (overrides metrics.listen), e.g. 127.0.0.1:9898.
    #[arg(long, global = true, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the config source and keystore type, then test the connection.
    Check {
        /// Refuse a config file with keys that are not ours (a misspelt
        /// `ttl_cleanup_intervall`, an unknown section of ours): exit 2,
        /// naming each with the nearest known key.
        #[arg(long)]
        strict: bool,
    },
    /// Print the backend type and its settings (secrets as set/unset).
    Info,
    /// Store a JSON value.
    Set {
        /// Key name.
        name: String,
        /// The value, as JSON text (e.g. '{"a": 1}' or '"text"').
        json: String,
        /// Seconds, `never`, or `default` (system.cachettl).
        #[arg(long, default_value = "default")]
        ttl: Ttl,
    },
    /// Print a stored value as JSON; exit 1 when missing or expired.
    Get {
        /// Key name.
        name: String,
    },
    /// Print the stored values of several keys as JSON, one line each
    /// (`null` for a missing or expired one).
    Mget {
        /// Key names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete a key, or (with --prefix) every key that starts with a prefix
    /// and print how many were removed.
    Del {
        /// Key name.
        #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
        name: Option<String>,
        /// Delete every key starting with this (glob characters are literal).
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
    },
    /// Delete EVERY key this keystore can address (on a shared Redis
    /// database: every key in it) and print how many; needs --yes.
    Clear {
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
    /// Print the seconds a key has left, or `never`; exit 1 when missing or expired.
    Ttl {
        /// Key name.
        name: String,
    },
    /// Load-test the configured keystore: throughput, latency percentiles,
    /// hit rate, errors and peak RSS.
    Load(cli::load::LoadArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> objdatakey::Result<Config> {
    let mut loader = ConfigLoader::from_env();
    if let Some(p) = &cli.config {
        loader = loader.path(p);
    }
    let mut config = loader.load()?;
    if let Some(addr) = cli.metrics_listen {
        config.metrics.listen = Some(addr);
    }
    Ok(config)
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = load_config(&cli)?;
    match cli.command {
        Command::Check { strict } => {
            println!("Config: {}", config.source);
            println!("Current keystore type: {}", config.backend);
            if strict && !config.unknown_keys.is_empty() {
                for unknown in &config.unknown_keys {
                    eprintln!("error: {unknown}");
                }
                let keys: Vec<&str> = config.unknown_keys.iter().map(|u| u.key.as_str()).collect();
                eprintln!(
                    "error: {}: unknown keys refused by check --strict: {}; fix or remove them",
                    config.source,
                    keys.join(", "),
                );
                return Ok(ExitCode::from(2));
            }
            if !config.enabled {
                println!("Keystore is disabled (keystore.enabled: false).");
                return Ok(ExitCode::FAILURE);
            }
            let keystore = Keystore::from_config(config)?;
            keystore.blocking().ping()?;
            println!("Keystore connection is active.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Info => {
            print_info(&config);
            Ok(ExitCode::SUCCESS)
        }
        Command::Set { name, json, ttl } => {
            let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
                format!(
                    "the value for key {name:?} is not valid JSON ({e}); quote text as '\"text\"'"
                )
            })?;
            let keystore = Keystore::from_config(config)?;
            keystore.blocking().set_cache(&name, &value, ttl)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { name } => {
            let keystore = Keystore::from_config(config)?;
            match keystore.blocking().get_json(&name)? {
                Some(json) => {
                    println!("{json}");
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("key {name:?} not found (missing or expired)");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Mget { names } => {
            let keystore = Keystore::from_config(config)?;
            let values: Vec<Option<Box<serde_json::value::RawValue>>> =
                keystore.blocking().get_many(&names)?;
            for v in values {
                println!("{}", v.as_deref().map_or("null", |raw| raw.get()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Del {
            name: Some(name), ..
        } => {
            let keystore = Keystore::from_config(config)?;
            if keystore.blocking().delete(&name)? {
                println!("deleted");
            } else {
                println!("not found");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Del {
            prefix: Some(prefix),
            ..
        } => {
            if prefix.is_empty() {
                eprintln!("error: an empty --prefix means every key; use `objdatakey clear --yes`");
                return Ok(ExitCode::from(2));
            }
            let keystore = Keystore::from_config(config)?;
            println!("{}", keystore.blocking().delete_prefix(&prefix)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Del { .. } => unreachable!("clap requires a name or --prefix"),
        Command::Clear { yes: false } => {
            eprintln!(
                "error: clear deletes every key of the {} keystore ({}); nothing was deleted. \
                 Run `objdatakey clear --yes` to do it.",
                config.backend,
                clear_scope(&config)
            );
            Ok(ExitCode::from(2))
        }
        Command::Clear { yes: true } => {
            let keystore = Keystore::from_config(config)?;
            println!("{}", keystore.blocking().clear()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ttl { name } => {
            let keystore = Keystore::from_config(config)?;
            match keystore.blocking().ttl(&name)? {
                Some(Ttl::Seconds(s)) => println!("{s}"),
                Some(_) => println!("never"),
                None => {
                    eprintln!("key {name:?} not found (missing or expired)");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(args) => cli::load::run(config, args),
    }
}

/// What `clear` would empty, for its refusal message.
fn clear_scope(c: &Config) -> String {
    match c.server() {
        Some(s) if !s.nodes.is_empty() => "every key on every master of the cluster".to_owned(),
        Some(s) => format!("every key in the database at {}", s.address()),
        None => format!("the whole RocksDB database at {}", c.rocksdb.path.display()),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn print_server(name: &str, s: &RedisConfig, active: bool) {
    println!("{name}:{}", if active { " (active)" } else { "" });
    if s.nodes.is_empty() {
        println!("  address: {}", s.address());
    } else {
        let nodes: Vec<String> = s.nodes.iter().map(ToString::to_string).collect();
        println!("  cluster nodes: {}", nodes.join(", "));
    }
    println!("  user: {}", s.user.as_deref().unwrap_or("(none)"));
    println!(
        "  password: {}",
        if s.password.is_some() { "set" } else { "unset" }
    );
    println!("  ssl: {}", yes_no(s.ssl));
    if let Some(ca) = &s.ca_file {
        println!("  ca_file: {}", ca.display());
    }
}

fn print_info(c: &Config) {
    // The Python module's lines first, as operators grep them.
    println!("Keystore Type: {}", c.backend);
    match c.server() {
        Some(s) => {
            let label = if c.backend == BackendKind::Dragonfly {
                "Dragonfly"
            } else {
                "Redis"
            };
            println!("{label} IP: {}", s.ip);
            println!("{label} Port: {}", s.port);
        }
        None => println!("RocksDB Path: {}", c.rocksdb.path.display()),
    }
    println!("Config: {}", c.source);
    println!("Enabled: {}", yes_no(c.enabled));
    match c.default_ttl {
        Some(t) => println!("Default TTL (system.cachettl): {t} s"),
        None => println!("Default TTL (system.cachettl): never"),
    }
    println!("Max in flight: {}", c.engine.max_in_flight);
    println!(
        "Request timeout: {} ms",
        c.engine.request_timeout.as_millis()
    );
    println!("Max value bytes: {}", c.engine.max_value_bytes);
    println!("Max key bytes: {}", c.engine.max_key_bytes);
    print_server("Redis", &c.redis, c.backend == BackendKind::Redis);
    print_server(
        "Dragonfly",
        &c.dragonfly,
        c.backend == BackendKind::Dragonfly,
    );
    let r = &c.rocksdb;
    println!(
        "RocksDB:{}",
        if c.backend == BackendKind::RocksDb {
            " (active)"
        } else {
            ""
        }
    );
    let abs = std::path::absolute(&r.path).unwrap_or_else(|_| r.path.clone());
    println!("  path: {} ({})", r.path.display(), abs.display());
    println!("  create_if_missing: {}", yes_no(r.create_if_missing));
    println!(
        "  ttl_cleanup_interval: {} s",
        r.ttl_cleanup_interval.as_secs_f64()
    );
    println!("  workers: {}", r.workers);
    println!("  format_version: {}", r.format_version);
    println!("  sync_writes: {}", yes_no(r.sync_writes));
    let t = &c.tier;
    println!("L1 (in-process tier): {}", yes_no(t.enabled));
    println!("  max_bytes: {}", t.max_bytes);
    println!("  ttl_max: {} s", t.ttl_max.as_secs_f64());
    let backplane = if !t.enabled {
        "off (the tier is off)".to_owned()
    } else if !c.backend.is_network() {
        "off (an embedded database has one process)".to_owned()
    } else if t.backplane {
        format!("on, channel {}", t.channel)
    } else {
        "off (keystore.backplane.enabled: false)".to_owned()
    };
    println!("Backplane: {backplane}");
    if t.fail_safe_max_age.is_zero() {
        println!("Fail-safe: off");
    } else {
        println!(
            "Fail-safe: stale values served up to {} s past their tier lifetime",
            t.fail_safe_max_age.as_secs_f64()
        );
    }
    if t.eager_refresh > 0.0 {
        println!(
            "Eager refresh: get_or_set reloads after {} of the TTL",
            t.eager_refresh
        );
    } else {
        println!("Eager refresh: off");
    }
    match c.metrics.listen {
        Some(a) => println!("Metrics: http://{a}/metrics"),
        None => println!("Metrics: off"),
    }
    for w in &c.warnings {
        println!("Warning: {w}");
    }
}
