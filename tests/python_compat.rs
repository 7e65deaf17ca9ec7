//! The real Python binding (rocksdict from PyPI) against the engine's RocksDB
//! database: Python reads what the engine wrote, the engine reads what Python
//! wrote, Python's loop over the whole default keyspace decodes every value as
//! the envelope, and expired Python entries (no index entry) leave the disk.
//!
//! The test builds its own virtualenv once (`python3 -m venv` + `pip install
//! rocksdict==ROCKSDICT`) in `$OBJDATAKEY_PYENV`, else
//! `/var/tmp/objdatakey-pyenv-rocksdict-<version>`, and reuses it afterwards.
//! Under `CI=true` a missing python3, venv or pip fails the test; elsewhere
//! the test is skipped with the reason printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use objdatakey::{Clock, Ttl};
use serde_json::{Value, json};

/// The rocksdict release these tests pin (RocksDB 9.8.4 inside).
const ROCKSDICT: &str = "0.3.29";

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/rocksdict_compat.py"
);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The virtualenv's python, with rocksdict installed; `None` (test skipped)
/// outside CI when that cannot be set up.
fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(setup_venv) {
        Ok(p) => Some(p.clone()),
        Err(why) if in_ci() => panic!("{why}; CI=true, so the Python compatibility test must run"),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

fn has_rocksdict(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m, rocksdict, sys; \
             sys.exit(m.version('rocksdict') != sys.argv[1])",
            ROCKSDICT,
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn setup_venv() -> Result<PathBuf, String> {
    let dir = std::env::var_os("OBJDATAKEY_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(format!("/var/tmp/objdatakey-pyenv-rocksdict-{ROCKSDICT}"))
        });
    let python = dir.join("bin").join("python");
    if has_rocksdict(&python) {
        return Ok(python);
    }
    let python3 = std::env::var("OBJDATAKEY_PYTHON").unwrap_or_else(|_| "python3".into());
    // Built beside its place and renamed into it, so a run that is stopped
    // half way, or a concurrent one, never leaves a half-made venv in use.
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    run(
        Command::new(&python3).arg("-m").arg("venv").arg(&tmp),
        &format!("{python3} -m venv {}", tmp.display()),
    )?;
    run(
        Command::new(tmp.join("bin").join("python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("rocksdict=={ROCKSDICT}"),
        ]),
        &format!("pip install rocksdict=={ROCKSDICT} (PyPI must be reachable)"),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !has_rocksdict(&python) {
            return Err(format!("cannot move the venv to {}: {e}", dir.display()));
        }
    }
    if has_rocksdict(&python) {
        Ok(python)
    } else {
        Err(format!(
            "rocksdict {ROCKSDICT} does not import in the venv at {}",
            dir.display()
        ))
    }
}

/// Runs the helper script; answers its stdout, or its stderr as the error.
fn script(python: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(python)
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run the Python helper");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("UTF-8 output"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Python iterates the whole default keyspace, decoding each value as the
/// envelope; answers the column families and the entries by name.
fn python_dump(
    python: &Path,
    db: &Path,
    access: &str,
) -> (Vec<String>, serde_json::Map<String, Value>) {
    let out = script(python, &["dump", db.to_str().unwrap(), access])
        .unwrap_or_else(|e| panic!("Python ({access}) could not read {}: {e}", db.display()));
    let mut v: Value = serde_json::from_str(&out).expect("the helper prints JSON");
    let cfs = serde_json::from_value(v["column_families"].take()).unwrap();
    let Value::Object(entries) = v["entries"].take() else {
        panic!("no entries in {out}");
    };
    (cfs, entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_the_engine_share_one_database() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let clock = Clock::manual();
    let now = clock.now_unix().as_secs_f64();

    // 1. The engine writes; Python reads every value, with its expiry.
    let (ks, _) = Backend::RocksDb.setup().clock(&clock).open_in(dir.path());
    let ada = json!({"name": "Ada", "roles": ["admin"], "quote": "say \"hi\"\n"});
    ks.set_cache("user:ada", &ada, Ttl::Seconds(600))
        .await
        .unwrap();
    ks.set_cache("motd", &"hello", Ttl::Never).await.unwrap();
    ks.set_cache("unicode:é✓", &vec![1.5, -2.0], Ttl::Never)
        .await
        .unwrap();
    ks.shutdown().await;
    for access in ["ro", "secondary", "rw"] {
        let (cfs, entries) = python_dump(&py, &db, access);
        assert_eq!(
            cfs,
            ["default"],
            "no column family Python must be told about"
        );
        assert_eq!(
            entries.len(),
            3,
            "only values in the default keyspace: {entries:?}"
        );
        assert_eq!(entries["user:ada"]["data"], ada);
        let exp = entries["user:ada"]["expires_at"].as_f64().unwrap();
        assert!(exp >= now + 600.0 && exp <= now + 601.0, "{exp} vs {now}");
        assert_eq!(entries["motd"], json!({"data": "hello", "expires_at": -1}));
        assert_eq!(entries["unicode:é✓"]["data"], json!([1.5, -2.0]));
    }

    // 2. Python writes envelopes (no index entries); the engine reopens the
    //    database and reads them.
    script(&py, &["write", db.to_str().unwrap(), &now.to_string()])
        .unwrap_or_else(|e| panic!("Python could not write: {e}"));
    let (ks, _) = Backend::RocksDb.setup().clock(&clock).open_in(dir.path());
    assert_eq!(
        ks.get_cache::<Value>("py:year").await.unwrap(),
        Some(json!({"who": "python", "n": [1, 2.5, null]}))
    );
    assert_eq!(
        ks.get_cache::<String>("py:never").await.unwrap().as_deref(),
        Some("forever")
    );
    assert_eq!(ks.get_cache::<i32>("py:minute").await.unwrap(), Some(60));
    assert_eq!(ks.get_cache::<String>("py:gone").await.unwrap(), None);
    assert_eq!(ks.get_cache::<Value>("user:ada").await.unwrap(), Some(ada));
    // The engine writes over a Python entry.
    ks.set_cache("py:never", &"rewritten", Ttl::Never)
        .await
        .unwrap();

    // 3. A day later: the sweep removes the engine's expired entry through
    //    the index and compacts, so the expired Python entries go too.
    clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(
        ks.purge_expired().await.unwrap(),
        3,
        "user:ada (index), py:minute and py:gone (compaction filter)"
    );
    ks.shutdown().await;
    let (_, entries) = python_dump(&py, &db, "ro");
    let mut names: Vec<&str> = entries.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["motd", "py:never", "py:year", "unicode:é✓"]);
    assert_eq!(entries["py:never"]["data"], "rewritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_a_running_engines_database_read_only() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let clock = Clock::manual();
    let (ks, _) = Backend::RocksDb.setup().clock(&clock).open_in(dir.path());
    ks.set_cache("live", &1, Ttl::Seconds(60)).await.unwrap();
    // The engine holds the lock: read-only and secondary opens do not take it.
    for access in ["ro", "secondary"] {
        let (_, entries) = python_dump(&py, &db, access);
        assert_eq!(entries["live"]["data"], 1, "{access}");
    }
    let err = script(&py, &["dump", db.to_str().unwrap(), "rw"]).unwrap_err();
    assert!(err.contains("LOCK"), "a read-write open is refused: {err}");
    ks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_written_with_format_version_7_is_rewritten_for_python() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // What the previous version left: RocksDB 11's default SST format 7.
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_format_version(7);
        opts.set_block_based_table_factory(&table);
        let raw = rocksdb::DB::open(&opts, &db).unwrap();
        raw.put(b"old", br#"{"data":"\"kept\"","expires_at":-1}"#)
            .unwrap();
        raw.flush().unwrap();
    }
    let err = script(&py, &["dump", db.to_str().unwrap(), "ro"]).unwrap_err();
    assert!(
        err.contains("format_version: 7"),
        "the bug this fixes: {err}"
    );

    let clock = Clock::manual();
    let (ks, _) = Backend::RocksDb.setup().clock(&clock).open_in(dir.path());
    assert_eq!(
        ks.get_cache::<String>("old").await.unwrap().as_deref(),
        Some("kept")
    );
    ks.shutdown().await;
    let (_, entries) = python_dump(&py, &db, "ro");
    assert_eq!(entries["old"]["data"], "kept");
}
