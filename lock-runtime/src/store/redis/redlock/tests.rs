//! Redlock's unit tests: opening (the URLs checked), validity, and the quorums.

use std::time::Duration;

use super::RedlockStore;
use crate::store::redis::tls::TlsRoots;
use crate::store::{Kind, Store};

fn urls(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn open_refuses_empty_malformed_duplicate_and_even() {
    let err = |l: &[&str]| {
        RedlockStore::open(&urls(l), &TlsRoots::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(err(&[]).contains("empty"));
    assert!(err(&["redis://a:1", "http://u:secret@b", "redis://c:1"]).contains("not a Redis URL"));
    assert!(!err(&["redis://a:1", "http://u:secret@b", "redis://c:1"]).contains("secret"));
    assert!(err(&["redis://a:1", "redis://a:1", "redis://c:1"]).contains("twice"));
    assert!(err(&["redis://a:1", "redis://b:1"]).contains("odd"));
    assert!(
        RedlockStore::open(
            &urls(&["redis://a:1", "redis://b:1", "redis://c:1"]),
            &TlsRoots::default()
        )
        .is_ok()
    );
}

#[test]
fn validity_takes_off_the_drift_allowance() {
    let store = RedlockStore::open(&urls(&["redis://a:1"]), &TlsRoots::default()).unwrap();
    assert_eq!(
        store.validity(Duration::from_secs(10)),
        Duration::from_millis(9_898)
    );
    assert_eq!(store.quorum(), 1);
}

#[test]
fn semaphore_quorum_keeps_p_plus_one_holders_from_forming() {
    let of = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("redis://h{i}:1")).collect();
        RedlockStore::open(&list, &TlsRoots::default()).unwrap()
    };
    let permits = |permits| Kind::Permit { permits };
    for n in [1, 3, 5, 7] {
        let store = of(n);
        assert_eq!(store.quorum_for(Kind::Lock), n / 2 + 1);
        assert_eq!(store.quorum_for(permits(1)), n / 2 + 1);
        assert_eq!(store.quorum_for(Kind::Read), n / 2 + 1);
        for p in 1..=10u32 {
            let q = store.quorum_for(permits(p));
            // P + 1 holders, each granted by q masters that admit P each: impossible
            // when (P + 1) * q exceeds N * P.
            assert!((p as usize + 1) * q > n * p as usize, "n={n} p={p} q={q}");
            assert!(q <= n);
        }
    }
    assert_eq!(of(3).quorum_for(permits(2)), 3);
    assert_eq!(of(5).quorum_for(permits(2)), 4);
    assert_eq!(of(5).quorum_for(permits(3)), 4);
}
