//! Bad input, tried at volume (proptest): config YAML with wrong types at
//! every key, stored RocksDB envelopes that are not ours, odd key names and
//! deeply nested stored JSON. Each case is a clear error or a correct value:
//! no panic, no hang, no stack overflow.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{raw_put, rocks_config};
use objdatakey::config::ConfigLoader;
use objdatakey::{ErrorKind, Keystore, Ttl};
use proptest::prelude::*;
use serde_yaml::Value;

/// Every key path of `config.yaml` the loader reads.
const KEYS: &[&[&str]] = &[
    &["keystore", "type"],
    &["keystore", "enabled"],
    &["keystore", "redis", "ip"],
    &["keystore", "redis", "port"],
    &["keystore", "redis", "user"],
    &["keystore", "redis", "password"],
    &["keystore", "redis", "ssl"],
    &["keystore", "redis", "nodes"],
    &["keystore", "dragonfly", "ip"],
    &["keystore", "dragonfly", "port"],
    &["keystore", "rocksdb", "path"],
    &["keystore", "rocksdb", "create_if_missing"],
    &["keystore", "rocksdb", "ttl_cleanup_interval"],
    &["keystore", "rocksdb", "workers"],
    &["keystore", "rocksdb", "sync_writes"],
    &["keystore", "rocksdb", "format_version"],
    &["keystore", "request_timeout_ms"],
    &["keystore", "max_in_flight"],
    &["system", "cachettl"],
    &["redis", "activate"],
    &["redis", "redisip"],
    &["redis", "redisport"],
    &["metrics", "listen"],
];

/// Any YAML value, nested a few levels.
fn yaml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Value::Number(f.into())),
        ".{0,12}".prop_map(Value::String),
        Just(Value::String("65536".into())),
        Just(Value::String("-1".into())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4).prop_map(|kv| {
                Value::Mapping(kv.into_iter().map(|(k, v)| (Value::String(k), v)).collect())
            }),
        ]
    })
}

/// Sets `path` in `root` to `v`, making mappings on the way (replacing
/// whatever non-mapping was there).
fn set_path(root: &mut Value, path: &[&str], v: Value) {
    let mut cur = root;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Default::default());
        }
        let map = cur.as_mapping_mut().unwrap();
        let k = Value::String((*key).into());
        if i + 1 == path.len() {
            map.insert(k, v);
            return;
        }
        cur = map.entry(k).or_insert(Value::Mapping(Default::default()));
    }
}

static CONFIG_CASES: AtomicUsize = AtomicUsize::new(0);
static ENVELOPE_CASES: AtomicUsize = AtomicUsize::new(0);
static KEY_CASES: AtomicUsize = AtomicUsize::new(0);

/// Counts cases, printing the running total every 256.
fn count(what: &str, counter: &AtomicUsize, n: usize) {
    let total = counter.fetch_add(n, Ordering::Relaxed) + n;
    if total.is_multiple_of(256) {
        println!("{what}: {total} cases so far");
    }
}

/// Loads `text` as a config file: a config, or a Config error naming the file.
fn check_config_text(dir: &std::path::Path, text: &str) {
    count("config texts", &CONFIG_CASES, 1);
    let p = dir.join("config.yaml");
    std::fs::write(&p, text).unwrap();
    match ConfigLoader::new().path(&p).load() {
        Ok(_) => {}
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Config, "{e}\n{text}");
            assert!(
                e.to_string().contains(&p.display().to_string()),
                "the error does not name the file: {e}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Random trees with a random value at one known key, plus random keys.
    #[test]
    fn config_trees_with_any_value_at_any_key(
        base in yaml_value(),
        key in 0..KEYS.len(),
        value in yaml_value(),
        second in 0..KEYS.len(),
        value2 in yaml_value(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut root = base;
        set_path(&mut root, KEYS[key], value);
        set_path(&mut root, KEYS[second], value2);
        let text = serde_yaml::to_string(&root).unwrap();
        check_config_text(dir.path(), &text);
    }

    /// Text that is barely YAML at all.
    #[test]
    fn config_text_of_any_characters(text in "(keystore:|  |type: |redis|port: |\\[|\\{|-|\n|[ -~]){0,40}") {
        let dir = tempfile::tempdir().unwrap();
        check_config_text(dir.path(), &text);
    }
}

/// Stored values: random bytes, truncated envelopes, odd `expires_at`.
fn stored_value() -> impl Strategy<Value = Vec<u8>> {
    let good = r#"{"data": "{\"a\": [1, 2.5, \"x\"]}", "expires_at": -1}"#;
    let expires = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("1e400".to_string()),
        Just("-1e400".to_string()),
        Just("99999999999999999999999999999".to_string()),
        Just("-1.5".to_string()),
        Just("\"-1\"".to_string()),
        Just("null".to_string()),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (0..good.len()).prop_map(move |n| good.as_bytes()[..n].to_vec()),
        expires.prop_map(|e| format!(r#"{{"data": "1", "expires_at": {e}}}"#).into_bytes()),
        ".{0,16}".prop_map(|d| serde_json::json!({"data": d, "expires_at": -1})
            .to_string()
            .into_bytes()),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|junk| {
            let mut v = br#"{"data": ""#.to_vec();
            v.extend(junk);
            v.extend(br#"", "expires_at": -1}"#);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Each stored value reads as a value, nothing, or a CorruptValue error
    /// for that key.
    #[test]
    fn stored_rocksdb_values_that_are_not_ours(values in prop::collection::vec(stored_value(), 64)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = rocks_config(dir.path());
        let keys: Vec<String> = (0..values.len()).map(|i| format!("k{i}")).collect();
        let entries: Vec<(&[u8], &[u8])> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.as_bytes(), v.as_slice()))
            .collect();
        raw_put(&cfg.rocksdb.path, &entries);
        let ks = Keystore::builder().config(cfg).build().unwrap();
        let b = ks.blocking();
        for (k, v) in keys.iter().zip(&values) {
            count("stored RocksDB values", &ENVELOPE_CASES, 1);
            match b.get_cache::<serde_json::Value>(k) {
                Ok(got) => {
                    // A well-formed never-expiring envelope gives its data back.
                    if let Ok(env) = serde_json::from_slice::<serde_json::Value>(v)
                        && env["expires_at"] == serde_json::json!(-1)
                        && let Some(data) = env["data"].as_str()
                        && let Ok(want) = serde_json::from_str::<serde_json::Value>(data)
                    {
                        prop_assert_eq!(got, Some(want));
                    }
                }
                Err(e) => {
                    prop_assert!(e.is_data_error(), "{:?}: {}", e.kind(), e);
                    prop_assert!(e.to_string().contains(k.as_str()), "{}", e);
                }
            }
        }
    }
}

/// Key names: empty, NUL, glob characters, long; each round-trips or is a
/// clear error.
fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[*?\\[\\]\\\\\0a-c]{1,12}",
        ".{1,24}",
        (1usize..4).prop_map(|n| "k".repeat(n * 100_000)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn odd_key_names_round_trip_on_rocksdb(names in prop::collection::vec(key_name(), 32)) {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::builder().config(rocks_config(dir.path())).build().unwrap();
        let b = ks.blocking();
        for (i, name) in names.iter().enumerate() {
            count("key names", &KEY_CASES, 1);
            match b.set_cache(name, &i, Ttl::Never) {
                Ok(()) => {
                    let got = b.get_cache::<usize>(name).unwrap();
                    // Later names may repeat earlier ones: the last write wins.
                    let last = names.iter().rposition(|n| n == name).unwrap();
                    prop_assert!(got == Some(i) || last > i, "{got:?}");
                }
                Err(e) => prop_assert!(
                    matches!(e.kind(), ErrorKind::Usage | ErrorKind::Config),
                    "{:?}: {}", e.kind(), e
                ),
            }
        }
        // A 1 MiB name too.
        let huge = "x".repeat(1 << 20);
        b.set_cache(&huge, &1, Ttl::Never).unwrap();
        prop_assert_eq!(b.get_cache::<i32>(&huge).unwrap(), Some(1));
        prop_assert!(b.delete(&huge).unwrap());
    }
}

/// Stored JSON nested 100 000 deep: serde_json's recursion limit answers a
/// clear error, not a stack overflow.
#[test]
fn stored_json_nested_100_000_deep_is_a_clear_error() {
    let depth = 100_000;
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let dir = tempfile::tempdir().unwrap();
    let cfg = rocks_config(dir.path());
    let envelope = serde_json::json!({"data": deep, "expires_at": -1}).to_string();
    raw_put(&cfg.rocksdb.path, &[(b"deep", envelope.as_bytes())]);
    let ks = Keystore::builder().config(cfg).build().unwrap();
    let b = ks.blocking();
    let err = b.get_cache::<serde_json::Value>("deep").unwrap_err();
    assert!(err.is_data_error(), "{err}");
    assert!(err.to_string().contains("deep"), "{err}");
    println!("100 000-deep stored JSON: {err}");
}
