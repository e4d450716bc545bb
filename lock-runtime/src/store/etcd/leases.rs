//! The etcd leases a store granted: which hold or waiting call is on which, the spares it
//! keeps for its next takes, and the grants, keep-alives and revokes themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::conn::Conn;
use crate::error::BoxError;

type Res<T> = Result<T, BoxError>;

/// How many empty leases of one asked ttl a store keeps for its next takes.
const SPARES_PER_TTL: usize = 64;

/// Whole seconds for a ttl, rounded up, at least 1 (etcd's unit).
pub(super) fn secs(ttl_ms: u64) -> i64 {
    i64::try_from(ttl_ms.div_ceil(1000).max(1)).unwrap_or(i64::MAX)
}

/// One lease: its id, the ttl etcd granted (a short ttl is raised to the server's minimum),
/// the whole seconds asked for, by which its spare is found again, and whether it may
/// serve another hold once empty: not when a take on it went more than once (an earlier
/// send may still land and put a key on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OnLease {
    pub(super) id: i64,
    pub(super) granted: i64,
    pub(super) asked: i64,
    pub(super) reusable: bool,
}

impl OnLease {
    /// This lease, never to serve another hold when `resent`.
    pub(super) fn sent(self, resent: bool) -> Self {
        Self {
            reusable: self.reusable && !resent,
            ..self
        }
    }
}

/// A waiting call's place in the queues of its keys: the lease its places are on (which
/// its hold goes on when its turn comes), the places' create revision (the order of the
/// queue), and when the lease was last renewed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Place {
    pub(super) on: OnLease,
    pub(super) rev: i64,
    renewed: Instant,
}

/// The lease each live hold of this store is on (by token), so that renewal is one
/// keep-alive; a hold restored elsewhere finds its lease in its key. The places of the
/// calls that wait (by token).
///
/// And the spares: leases this store granted that hold no key any more (their hold was
/// released, or their take found the key held), by the seconds asked. A take asking the
/// same renews a spare with one keep-alive (answered by the leader, not a write through
/// the log) instead of granting a new lease, and a release leaves its lease here instead
/// of revoking it: a cycle is two writes through the log, not four. A spare is never
/// shared: one hold at a time. One left unused lapses on its own within its ttl, keyless.
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<String, OnLease>>,
    places: Mutex<HashMap<String, Place>>,
    spares: Mutex<HashMap<i64, Vec<OnLease>>>,
}

impl Leases {
    pub(super) fn get(&self, token: &str) -> Option<OnLease> {
        self.held.lock().ok()?.get(token).copied()
    }
    pub(super) fn set(&self, token: &str, on: OnLease) {
        if let Ok(mut map) = self.held.lock() {
            map.insert(token.to_owned(), on);
        }
    }
    pub(super) fn forget(&self, token: &str) -> Option<OnLease> {
        self.held.lock().ok()?.remove(token)
    }
    /// Records a waiting call's place, at `rev`, on `on`, renewed now.
    pub(super) fn set_place(&self, token: &str, on: OnLease, rev: i64) {
        if let Ok(mut map) = self.places.lock() {
            let renewed = Instant::now();
            map.insert(token.to_owned(), Place { on, rev, renewed });
        }
    }
    pub(super) fn forget_place(&self, token: &str) -> Option<Place> {
        self.places.lock().ok()?.remove(token)
    }
    pub(super) fn has_place(&self, token: &str) -> bool {
        self.place(token).is_some()
    }
    fn place(&self, token: &str) -> Option<Place> {
        self.places.lock().ok()?.get(token).copied()
    }
    fn renewed(&self, token: &str) {
        if let Ok(mut map) = self.places.lock()
            && let Some(place) = map.get_mut(token)
        {
            place.renewed = Instant::now();
        }
    }
    fn take_spare(&self, asked: i64) -> Option<OnLease> {
        self.spares.lock().ok()?.get_mut(&asked)?.pop()
    }
    /// Keeps an empty lease for a later take; false when there are enough already.
    fn keep_spare(&self, on: OnLease) -> bool {
        let Ok(mut spares) = self.spares.lock() else {
            return false;
        };
        let list = spares.entry(on.asked).or_default();
        if list.len() >= SPARES_PER_TTL {
            return false;
        }
        list.push(on);
        true
    }
}

/// A lease of `ttl_ms` for a take: a spare renewed to its full ttl, or a new grant.
pub(super) async fn lease_for(conn: &Conn, leases: &Leases, ttl_ms: u64) -> Res<OnLease> {
    while let Some(on) = leases.take_spare(secs(ttl_ms)) {
        if keep_alive(conn, on.id).await? {
            return Ok(on);
        }
    }
    grant(conn, ttl_ms).await
}

/// The place `token` waits in, its lease renewed when a third of it has passed since the
/// last renewal; `None` when it has none, or its lease lapsed (its places with it).
pub(super) async fn renew_place(conn: &Conn, leases: &Leases, token: &str) -> Res<Option<Place>> {
    let Some(place) = leases.place(token) else {
        return Ok(None);
    };
    let third = Duration::from_secs(u64::try_from(place.on.granted).unwrap_or(0)) / 3;
    if place.renewed.elapsed() < third {
        return Ok(Some(place));
    }
    if keep_alive(conn, place.on.id).await? {
        leases.renewed(token);
        return Ok(Some(place));
    }
    leases.forget_place(token);
    Ok(None)
}

/// An empty lease (its keys deleted, or never put) kept as a spare, or revoked.
pub(super) fn give_back(conn: &Arc<Conn>, leases: &Leases, on: OnLease) {
    if !on.reusable || !leases.keep_spare(on) {
        revoke_later(conn, on.id);
    }
}

/// One keep-alive of `lease`: false when it has lapsed or was revoked.
pub(super) async fn keep_alive(conn: &Conn, lease: i64) -> Res<bool> {
    conn.run("lease keep-alive", |mut c| async move {
        match c.lease_keep_alive(lease).await {
            Ok(_) => Ok(true),
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
}

/// A new lease of `ttl_ms`, rounded up to whole seconds.
pub(super) async fn grant(conn: &Conn, ttl_ms: u64) -> Res<OnLease> {
    let asked = secs(ttl_ms);
    let resp = conn
        .run("lease grant", |mut c| async move {
            c.lease_grant(asked, None).await
        })
        .await?;
    Ok(OnLease {
        id: resp.id(),
        granted: resp.ttl(),
        asked,
        reusable: true,
    })
}

/// Revokes a lease; one that is gone already is fine.
pub(super) async fn revoke(conn: &Conn, lease: i64) -> Res<()> {
    if lease == 0 {
        return Ok(());
    }
    conn.run("lease revoke", |mut c| async move {
        match c.lease_revoke(lease).await {
            Ok(_) => Ok(()),
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Revokes a lease in the background (an unused grant): its keys, if any, are none.
pub(super) fn revoke_later(conn: &Arc<Conn>, lease: i64) {
    let conn = conn.clone();
    tokio::spawn(async move {
        let _ = revoke(&conn, lease).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_found_by_the_seconds_asked() {
        let leases = Leases::default();
        // A 300 ms ttl asks 1 s; the server raised it to its minimum, 2 s.
        let on = OnLease {
            id: 7,
            granted: 2,
            asked: secs(300),
            reusable: true,
        };
        assert!(leases.keep_spare(on));
        assert_eq!(leases.take_spare(secs(2_000)), None);
        assert_eq!(leases.take_spare(secs(999)), Some(on));
        assert_eq!(leases.take_spare(secs(999)), None);
    }
}
