//! Finding and reading the config file: the explicit path, `OBJDATAKEY_CONFIG`
//! or `./config.yaml`, the `AXION_PACKAGE` overlay merged over it, and
//! `DOCKER_AXION`.
//!
//! Everything here is about *which* YAML tree to read and from where; what the
//! tree means is `parse`'s business, so a loader with a different environment
//! (tests, the CLI's `--config`) reuses the same parsing untouched.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::yaml::show;
use super::{AXION_PACKAGE_ENV, CONFIG_ENV, Config, ConfigSource, DOCKER_AXION_ENV};
use crate::error::{ErrorKind, KeystoreError, Result};

impl Config {
    /// Loads the config as the process environment says: `OBJDATAKEY_CONFIG`,
    /// else `./config.yaml` (built-in defaults when that file does not exist).
    pub fn load() -> Result<Config> {
        ConfigLoader::from_env().load()
    }

    /// Loads the config from `path` (the overlay and `DOCKER_AXION` still apply).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config> {
        ConfigLoader::from_env().path(path).load()
    }

    /// Parses YAML text (no overlay; `DOCKER_AXION` from the environment).
    /// `origin` names the text in error messages.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Config> {
        let env = ConfigLoader::from_env();
        let root = parse_yaml(text, origin)?;
        Config::from_tree(
            &root,
            origin,
            env.docker_axion,
            ConfigSource::Text(origin.into()),
        )
    }
}

/// Finds and loads a config file, with the environment given explicitly so
/// callers (and tests) need not change the process environment.
///
/// [`ConfigLoader::from_env`] reads `OBJDATAKEY_CONFIG`, `DOCKER_AXION` and
/// `AXION_PACKAGE`; the setters override each.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ConfigLoader {
    path: Option<PathBuf>,
    env_path: Option<PathBuf>,
    docker_axion: bool,
    axion_package: Option<String>,
}

impl ConfigLoader {
    /// A loader with nothing from the environment: `./config.yaml`, no docker, no overlay.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// A loader that takes `OBJDATAKEY_CONFIG`, `DOCKER_AXION` and `AXION_PACKAGE`
    /// from the process environment.
    pub fn from_env() -> Self {
        ConfigLoader {
            path: None,
            env_path: std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            docker_axion: std::env::var_os(DOCKER_AXION_ENV).is_some(),
            axion_package: std::env::var(AXION_PACKAGE_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty()),
        }
    }

    /// An explicit file (wins over `OBJDATAKEY_CONFIG`).
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.path = Some(path.as_ref().to_path_buf());
        self
    }

    /// As if `DOCKER_AXION` were set (`true`) or unset.
    pub fn docker_axion(mut self, on: bool) -> Self {
        self.docker_axion = on;
        self
    }

    /// As if `AXION_PACKAGE` were `name` (`None`: unset).
    pub fn axion_package(mut self, name: Option<&str>) -> Self {
        self.axion_package = name.map(str::to_owned);
        self
    }

    /// Reads, merges and validates the config.
    pub fn load(&self) -> Result<Config> {
        let (path, explicit) = match (&self.path, &self.env_path) {
            (Some(p), _) => (p.clone(), true),
            (None, Some(p)) => (p.clone(), true),
            (None, None) => (PathBuf::from("config.yaml"), false),
        };
        if !path.exists() {
            if explicit {
                return Err(KeystoreError::new(
                    ErrorKind::Config,
                    format!(
                        "config file {} not found; pass an existing file (--config or {CONFIG_ENV})",
                        path.display()
                    ),
                ));
            }
            let mut cfg = Config::defaults(self.docker_axion);
            cfg.source = ConfigSource::Defaults;
            return Ok(cfg);
        }
        // Shown in messages and by `check`: absolute, so it is unambiguous.
        let path = std::path::absolute(&path).unwrap_or(path);
        let origin = path.display().to_string();
        let mut root = parse_yaml(&read_file(&path)?, &origin)?;

        let mut overlay_path = None;
        if let Some(pkg) = &self.axion_package {
            let name = format!("config.{pkg}.yaml");
            let candidate = path.parent().unwrap_or(Path::new("")).join(name);
            if candidate.exists() {
                let o_origin = candidate.display().to_string();
                let overlay = parse_yaml(&read_file(&candidate)?, &o_origin)?;
                deep_merge(&mut root, overlay);
                overlay_path = Some(candidate);
            } else {
                tracing::debug!(
                    "{AXION_PACKAGE_ENV}={pkg}: no overlay at {}",
                    candidate.display()
                );
            }
        }
        let origin = match &overlay_path {
            Some(o) => format!("{origin} (with overlay {})", o.display()),
            None => origin,
        };
        Config::from_tree(
            &root,
            &origin,
            self.docker_axion,
            ConfigSource::File {
                path,
                overlay: overlay_path,
            },
        )
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        KeystoreError::new(
            ErrorKind::Config,
            format!("cannot read config file {}", path.display()),
        )
        .with_source(e)
    })
}

fn parse_yaml(text: &str, origin: &str) -> Result<Value> {
    let v: Value = serde_yaml::from_str(text).map_err(|e| {
        // serde_yaml's own guards, against a file that would take all the
        // memory (an alias bomb) or the stack (deep nesting) to read.
        let said = e.to_string();
        let what = if said.contains("repetition limit exceeded") {
            "refused: its aliases expand to more than 100 times the file; write the \
             settings out instead of repeating anchors"
        } else if said.contains("recursion limit exceeded") {
            "refused: it nests more than 128 levels deep; a config file needs a few"
        } else {
            "YAML syntax error"
        };
        KeystoreError::new(ErrorKind::Config, format!("config {origin}: {what}")).with_source(e)
    })?;
    match v {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        Value::Mapping(_) => Ok(v),
        other => Err(KeystoreError::new(
            ErrorKind::Config,
            format!(
                "config {origin}: the top level must be a mapping (keystore:, system:, ...), got {}",
                show(&other)
            ),
        )),
    }
}

/// Merges `overlay` into `base`: mappings merge key by key, anything else is replaced.
fn deep_merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_merge_overlay_wins_and_keeps_siblings() {
        let mut base: Value =
            serde_yaml::from_str("keystore: {type: redis, redis: {ip: a, port: 1}}").unwrap();
        let over: Value = serde_yaml::from_str("keystore: {redis: {port: 2}}").unwrap();
        deep_merge(&mut base, over);
        let cfg = Config::from_tree(&base, "t", false, ConfigSource::Defaults).unwrap();
        assert_eq!(cfg.redis.ip, "a");
        assert_eq!(cfg.redis.port, 2);
    }
}
