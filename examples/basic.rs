//! The whole API on the embedded RocksDB backend, in a temporary directory.
//!
//! `cargo run --example basic`

use std::time::Duration;

use objdatakey::{BackendKind, Clock, Keystore, Overrides, Ttl};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Session {
    user: String,
    roles: Vec<String>,
}

#[tokio::main]
async fn main() -> objdatakey::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    // A manual clock lets the example show expiry without waiting.
    let clock = Clock::manual();
    let keystore = Keystore::builder()
        .overrides(
            Overrides::new()
                .backend(BackendKind::RocksDb)
                .path(dir.path().join("db")),
        )
        .clock(clock.clone())
        .build()?;
    println!("backend: {}", keystore.backend());
    println!("healthy: {}", keystore.has_keystore().await);

    let session = Session {
        user: "ada".into(),
        roles: vec!["admin".into()],
    };
    keystore
        .set_cache("session:ada", &session, Ttl::Seconds(60))
        .await?;
    keystore.set_cache("motd", "hello", Ttl::Never).await?;
    let back: Option<Session> = keystore.get_cache("session:ada").await?;
    println!("session: {back:?}");
    assert_eq!(back.as_ref(), Some(&session));

    clock.advance(Duration::from_secs(61));
    let expired: Option<Session> = keystore.get_cache("session:ada").await?;
    println!("after 61 s: {expired:?}");
    assert!(expired.is_none());
    println!("janitor removed: {}", keystore.purge_expired().await?);

    // The same calls from synchronous code, on a plain thread.
    let sync = keystore.blocking();
    let motd = std::thread::spawn(move || sync.get_cache::<String>("motd"))
        .join()
        .expect("thread")?;
    println!("motd: {motd:?}");

    let stats = keystore.stats().await;
    println!(
        "hits {} misses {} hit rate {:.2} get p50 {:?}",
        stats.hits,
        stats.misses,
        stats.hit_rate().unwrap_or(0.0),
        stats.get.latency.p50
    );
    keystore.shutdown().await;
    Ok(())
}
