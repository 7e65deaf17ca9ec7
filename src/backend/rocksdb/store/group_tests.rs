//! Tests of the group commit against a real RocksDB directory: what each
//! member of a group is told, and what lands (see [`group`](super::super::group)).

use super::*;
use crate::backend::rocksdb::group::{Entry, Member};
use crate::backend::rocksdb::stripes::Wait;
use crate::config::Config;
use crate::ttl::Ttl;

fn open(dir: &Path) -> RocksStore {
    let mut cfg = Config::default().rocksdb;
    cfg.path = dir.to_path_buf();
    RocksStore::open(&cfg, Clock::system()).expect("open").0
}

/// SETs of `keys` joined while another write is under way: each is a
/// member of one group.
fn joined(store: &RocksStore, keys: &[&str], ttl: Option<u64>) -> Vec<Member> {
    let Entry::Alone(under_way) = store.group.enter(|| unreachable!("nothing under way")) else {
        panic!("nothing was under way");
    };
    let members = keys
        .iter()
        .map(|k| {
            let json = format!("{k:?}");
            match store.set_or_join(&Arc::from(*k), &json, ttl) {
                Some(SetStarted::Joined(m)) => m,
                _ => panic!("a write was under way: {k} should have joined"),
            }
        })
        .collect();
    drop(under_way);
    members
}

/// Each member's answer, every member resuming as its caller would.
fn answers(store: &RocksStore, members: Vec<Member>) -> Vec<Option<Result<()>>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(futures_util::future::join_all(
        members
            .into_iter()
            .map(|m| m.answer(|| store.write_group())),
    ))
}

fn writes_and_keys(store: &RocksStore) -> (u64, u64) {
    store.writes_and_keys().unwrap()
}

#[test]
fn a_group_is_one_batch_and_every_member_is_answered_with_its_own_value_and_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (writes, keys) = writes_and_keys(&store);
    let members = joined(&store, &["a", "b", "c"], Some(3600));
    // A group waits: the next SET joins it, with its own TTL.
    let Some(SetStarted::Joined(d)) = store.set_or_join(&Arc::from("d"), "\"d\"", None) else {
        panic!("a group was waiting: d should have joined")
    };
    let answered = answers(&store, members.into_iter().chain([d]).collect());
    assert!(
        answered.iter().all(|a| matches!(a, Some(Ok(())))),
        "{answered:?}"
    );
    for k in ["a", "b", "c", "d"] {
        assert_eq!(
            store.get(k).unwrap().as_deref(),
            Some(format!("{k:?}").as_str())
        );
    }
    assert!(matches!(
        store.ttl("a").unwrap(),
        Some(Ttl::Seconds(3599..=3600))
    ));
    assert_eq!(store.ttl("d").unwrap(), Some(Ttl::Never));
    // The first member to resume wrote all four: one write call.
    assert_eq!(writes_and_keys(&store), (writes + 1, keys + 4));
    // Their index entries are queued like any SET's: a sweep once they
    // expire finds them (nothing has expired yet).
    assert_eq!(store.sweep(1000).unwrap().removed, 0);
}

#[test]
fn a_group_refused_as_a_write_stall_goes_to_the_pool_having_written_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.inject_write_stall(true).unwrap();
    let members = joined(&store, &["a", "b"], None);
    let answered = answers(&store, members);
    assert!(answered.iter().all(Option::is_none), "{answered:?}");
    store.inject_write_stall(false).unwrap();
    assert_eq!(store.get("a").unwrap(), None);
    assert_eq!(store.get("b").unwrap(), None);
}

#[test]
fn a_member_whose_stripe_a_sweep_holds_goes_to_the_pool_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let b = (0..1000)
        .map(|i| format!("b{i}"))
        .find(|k| {
            // Another stripe than "a"'s.
            let held = store.stripes.exclusive([&b"a"[..]].into_iter(), Wait::No);
            let free = store.stripes.shared_one(k.as_bytes(), Wait::No).is_some();
            drop(held);
            free
        })
        .expect("keys spread over stripes");
    let members = joined(&store, &["a", &b], None);
    let sweeping = store.stripes.exclusive([&b"a"[..]].into_iter(), Wait::No);
    let answered = answers(&store, members);
    drop(sweeping);
    assert!(answered[0].is_none(), "a waits in the pool: {answered:?}");
    assert!(matches!(answered[1], Some(Ok(()))), "{answered:?}");
    assert_eq!(store.get("a").unwrap(), None);
    assert!(store.get(&b).unwrap().is_some());
}

#[test]
fn a_member_whose_caller_left_before_the_write_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut members = joined(&store, &["kept", "left"], None);
    drop(members.pop());
    let answered = answers(&store, members);
    assert!(matches!(answered[..], [Some(Ok(()))]), "{answered:?}");
    assert!(store.get("kept").unwrap().is_some());
    assert_eq!(store.get("left").unwrap(), None);
}

#[test]
fn a_set_with_nothing_under_way_is_written_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (writes, _) = writes_and_keys(&store);
    assert!(matches!(
        store.set_or_join(&Arc::from("k"), "1", None),
        Some(SetStarted::Written(Ok(())))
    ));
    assert_eq!(store.get("k").unwrap().as_deref(), Some("1"));
    assert_eq!(writes_and_keys(&store).0, writes + 1);
}
