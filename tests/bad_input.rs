//! Bad input, tried at volume (proptest): config YAML with wrong types at
//! every key, stored RocksDB envelopes that are not ours, Redis values other
//! clients SET that are not JSON, odd key names, deeply nested stored JSON
//! and values nested 100 000 deep given to every write. Each case is a clear
//! error or a correct value: no panic, no hang, no stack overflow.

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
    &["keystore", "get_or_set_lock_ms"],
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
        let mut config = rocks_config(dir.path());
        // Names up to 300 000 bytes: above the default keystore.max_key_bytes.
        config.engine.max_key_bytes = 1 << 20;
        let ks = Keystore::builder().config(config).build().unwrap();
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

/// Arrays nested `.0` deep around `0`, serialized by recursion (no heap
/// value, so nothing deep to drop), and read back by counting levels.
#[derive(Debug, PartialEq)]
struct Deep(usize);

impl serde::Serialize for Deep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        if self.0 == 0 {
            return s.serialize_u8(0);
        }
        let mut seq = s.serialize_seq(Some(1))?;
        seq.serialize_element(&Deep(self.0 - 1))?;
        seq.end()
    }
}

impl<'de> serde::Deserialize<'de> for Deep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Levels;
        impl<'de> serde::de::Visitor<'de> for Levels {
            type Value = Deep;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("0 inside arrays nested one element each")
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Deep, E> {
                Ok(Deep(0))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Deep, A::Error> {
                let inner: Deep = a
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                Ok(Deep(inner.0 + 1))
            }
        }
        d.deserialize_any(Levels)
    }
}

/// The error of a write of a value nested too deep: Serialization, naming
/// the key and the limit.
fn refused_too_deep(what: &str, key: &str, result: objdatakey::Result<()>) {
    let e = result.expect_err(what);
    assert_eq!(e.kind(), ErrorKind::Serialization, "{what}: {e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("{key:?}")) && text.contains("127 levels"),
        "{what}: {text}"
    );
}

/// serde_json's serializer has no depth limit: a value nested 100 000 deep
/// overflowed the stack. Every write (set_cache, set_many, get_or_set's
/// loaded value; async and blocking) refuses it with an error naming the key
/// and the limit, and stores nothing; the deepest value serde_json reads
/// back (127 levels) still round-trips.
#[test]
fn values_nested_100_000_deep_are_refused_by_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::from_config(rocks_config(dir.path())).unwrap();
    let b = ks.blocking();
    let deep = 100_000;

    refused_too_deep(
        "blocking set_cache",
        "deep:b",
        b.set_cache("deep:b", &Deep(deep), Ttl::Never),
    );
    refused_too_deep(
        "blocking set_many",
        "deep:bm",
        b.set_many(&[("ok:bm", Deep(3)), ("deep:bm", Deep(deep))], Ttl::Never),
    );
    refused_too_deep(
        "blocking get_or_set",
        "deep:bg",
        b.get_or_set("deep:bg", Ttl::Never, move || Ok::<_, String>(Deep(deep)))
            .map(|_: Deep| ()),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        refused_too_deep(
            "set_cache",
            "deep:a",
            ks.set_cache("deep:a", &Deep(deep), Ttl::Never).await,
        );
        refused_too_deep(
            "set_many",
            "deep:am",
            ks.set_many(&[("ok:am", Deep(3)), ("deep:am", Deep(deep))], Ttl::Never)
                .await,
        );
        refused_too_deep(
            "get_or_set",
            "deep:ag",
            ks.get_or_set("deep:ag", Ttl::Never, move || async move {
                Ok::<_, String>(Deep(deep))
            })
            .await
            .map(|_: Deep| ()),
        );
    });
    // Nothing was stored, not even the batches' good entries.
    for key in [
        "deep:b", "deep:bm", "ok:bm", "deep:bg", "deep:a", "deep:am", "ok:am", "deep:ag",
    ] {
        assert_eq!(b.get_json(key).unwrap(), None, "{key}");
    }

    // The limit is serde_json's: 127 levels are stored and read back, 128 are not.
    b.set_cache("edge", &Deep(127), Ttl::Never).unwrap();
    assert_eq!(b.get_cache::<Deep>("edge").unwrap(), Some(Deep(127)));
    assert!(b.get_cache::<serde_json::Value>("edge").unwrap().is_some());
    refused_too_deep(
        "128 levels",
        "over",
        b.set_cache("over", &Deep(128), Ttl::Never),
    );

    // A serde_json::Value 100 000 deep: built in a loop, on a thread with a
    // stack big enough for its (recursive) drop, which is not ours.
    let writer = b.clone();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut v = serde_json::Value::Null;
            for _ in 0..deep {
                v = serde_json::Value::Array(vec![v]);
            }
            refused_too_deep(
                "a deep serde_json::Value",
                "deep:value",
                writer.set_cache("deep:value", &v, Ttl::Never),
            );
            drop(v);
        })
        .unwrap()
        .join()
        .unwrap();
    println!("values nested {deep} deep: 7 writes refused, 127 levels round-trip");
}

static REDIS_CASES: AtomicUsize = AtomicUsize::new(0);

/// What another client may have SET under a key: random bytes (mostly not
/// UTF-8), any text, an empty string, truncated JSON, real JSON, JSON nested
/// around serde_json's depth limit, and long runs of either.
fn redis_value() -> impl Strategy<Value = Vec<u8>> {
    let good = r#"{"a": [1, 2.5, "x\"y", null, {"b": true}], "c": "é"}"#;
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        ".{0,24}".prop_map(String::into_bytes),
        Just(Vec::new()),
        Just(b" ".to_vec()),
        (0..good.len()).prop_map(move |n| good.as_bytes()[..n].to_vec()),
        Just(good.as_bytes().to_vec()),
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        any::<f64>().prop_map(|f| format!("{f:?}").into_bytes()),
        ".{0,24}".prop_map(|s| serde_json::to_vec(&s).unwrap()),
        (100usize..160).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        (1usize..4).prop_map(|n| vec![b'x'; n * 100_000]),
        prop::collection::vec(any::<u8>(), 1..8).prop_map(|junk| {
            let mut v = b"\"text ".to_vec();
            v.extend(junk);
            v.push(b'"');
            v
        }),
    ]
}

/// What a correct reader makes of `bytes`: the JSON value, or `None` when
/// it is not UTF-8 JSON that serde_json reads (its depth limit included).
fn as_json(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_str(std::str::from_utf8(bytes).ok()?).ok()
}

/// `get_json`'s answer: the exact JSON text, when it is JSON at all (raw
/// text is not decoded, so serde_json's depth limit does not apply).
fn as_raw(bytes: &[u8]) -> Option<String> {
    serde_json::from_str::<Box<serde_json::value::RawValue>>(std::str::from_utf8(bytes).ok()?)
        .ok()
        .map(|r| r.get().to_owned())
}

/// An error for bad stored data: CorruptValue or Serialization, naming `key`.
fn data_error_for(what: &str, key: &str, e: &objdatakey::KeystoreError) {
    assert!(e.is_data_error(), "{what} of {key}: {:?}: {e}", e.kind());
    assert!(e.to_string().contains(&format!("{key:?}")), "{what}: {e}");
}

/// Values another client SET on Redis that are not JSON (not UTF-8, empty,
/// truncated, too deep, megabytes long) read through get_cache, get_json,
/// get_many and get_or_set: each a correct value, or an error naming the
/// key; get_or_set never runs its loader over a value that is there. Also a
/// key holding a list (WRONGTYPE for GET; MGET says nil) and JSON nested
/// 100 000 deep.
#[test]
fn redis_values_that_are_not_json_are_errors_naming_the_key() {
    let Some(fx) = common::Backend::Redis.start() else {
        return;
    };
    let b = fx.ks.blocking();
    let raw = std::cell::RefCell::new(fx.server().raw());
    let loads = std::sync::Arc::new(AtomicUsize::new(0));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        // No source file to persist failing cases next to: the seed is printed.
        failure_persistence: None,
        ..ProptestConfig::with_cases(48)
    });
    runner
        .run(&prop::collection::vec(redis_value(), 16), |values| {
            let keys: Vec<String> = (0..values.len()).map(|i| format!("ext:{i}")).collect();
            for (k, v) in keys.iter().zip(&values) {
                redis::cmd("SET")
                    .arg(k)
                    .arg(v)
                    .query::<()>(&mut *raw.borrow_mut())
                    .unwrap();
            }
            for (k, v) in keys.iter().zip(&values) {
                count("Redis values", &REDIS_CASES, 1);
                match (b.get_cache::<serde_json::Value>(k), as_json(v)) {
                    (Ok(got), want @ Some(_)) => prop_assert_eq!(got, want),
                    (Err(e), None) => data_error_for("get_cache", k, &e),
                    (got, want) => {
                        prop_assert!(false, "get_cache of {}: {:?}, wanted {:?}", k, got, want)
                    }
                }
                match (b.get_json(k), as_raw(v)) {
                    (Ok(got), want @ Some(_)) => prop_assert_eq!(got, want),
                    (Err(e), None) => data_error_for("get_json", k, &e),
                    (got, want) => {
                        prop_assert!(false, "get_json of {}: {:?}, wanted {:?}", k, got, want)
                    }
                }
                let counter = loads.clone();
                let loaded = b.get_or_set(k, Ttl::Seconds(60), move || {
                    counter.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, String>(serde_json::Value::Null)
                });
                match (loaded, as_json(v)) {
                    (Ok(got), Some(want)) => prop_assert_eq!(got, want),
                    (Err(e), None) => data_error_for("get_or_set", k, &e),
                    (got, want) => {
                        prop_assert!(false, "get_or_set of {}: {:?}, wanted {:?}", k, got, want)
                    }
                }
            }
            let bad: Vec<&String> = keys
                .iter()
                .zip(&values)
                .filter(|(_, v)| as_json(v).is_none())
                .map(|(k, _)| k)
                .collect();
            match b.get_many::<serde_json::Value, _>(&keys) {
                Ok(got) => {
                    prop_assert!(bad.is_empty(), "get_many answered despite {:?}", bad);
                    let want: Vec<_> = values.iter().map(|v| as_json(v)).collect();
                    prop_assert_eq!(got, want);
                }
                Err(e) => {
                    prop_assert!(e.is_data_error(), "{:?}: {}", e.kind(), e);
                    let text = e.to_string();
                    prop_assert!(
                        bad.iter().any(|k| text.contains(&format!("{k:?}"))),
                        "get_many's error names none of {:?}: {}",
                        bad,
                        text
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(
        loads.load(Ordering::Relaxed),
        0,
        "a loader ran over a stored value"
    );

    let mut raw = raw.into_inner();
    // A key holding a list, not a string.
    redis::cmd("RPUSH")
        .arg("ext:list")
        .arg("a")
        .query::<()>(&mut raw)
        .unwrap();
    let e = b.get_cache::<serde_json::Value>("ext:list").unwrap_err();
    assert!(
        e.to_string().contains("\"ext:list\"") && e.to_string().contains("WRONGTYPE"),
        "{e}"
    );
    // MGET answers nil for a key that does not hold a string (Redis's
    // documented behaviour): get_many says missing rather than failing.
    b.set_cache("ext:0", &1, Ttl::Never).unwrap();
    assert_eq!(
        b.get_many::<serde_json::Value, _>(&["ext:0", "ext:list"])
            .unwrap(),
        vec![Some(serde_json::json!(1)), None]
    );
    // JSON nested 100 000 deep: serde_json's depth limit, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    redis::cmd("SET")
        .arg("ext:deep")
        .arg(&deep)
        .query::<()>(&mut raw)
        .unwrap();
    data_error_for(
        "get_cache",
        "ext:deep",
        &b.get_cache::<serde_json::Value>("ext:deep").unwrap_err(),
    );
    data_error_for(
        "get_or_set",
        "ext:deep",
        &b.get_or_set("ext:deep", Ttl::Never, || {
            Ok::<_, String>(serde_json::Value::Null)
        })
        .unwrap_err(),
    );
    // Raw text is not decoded: it comes back as it is.
    assert_eq!(
        b.get_json("ext:deep").unwrap().as_deref(),
        Some(deep.as_str())
    );
    println!(
        "Redis values that are not JSON: {} cases",
        REDIS_CASES.load(Ordering::Relaxed)
    );
}
