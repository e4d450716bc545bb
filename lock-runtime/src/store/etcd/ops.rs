//! Every operation as etcd requests: lease grants, transactions, keep-alives, revokes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, GetResponse, KeyValue, LeaseTimeToLiveOptions,
    PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::conn::Conn;
use super::layout;
use crate::error::BoxError;
use crate::store::{Attempt, HeldAs, Kind, Release};

type Res<T> = Result<T, BoxError>;

/// How often a lease take retries when the members changed between its read and its write.
const SHARED_TRIES: usize = 8;

/// Whole seconds for a ttl, rounded up, at least 1 (etcd's unit).
pub(super) fn secs(ttl_ms: u64) -> i64 {
    i64::try_from(ttl_ms.div_ceil(1000).max(1)).unwrap_or(i64::MAX)
}

/// How many empty leases of one granted ttl a store keeps for its next takes.
const SPARES_PER_TTL: usize = 64;

/// The lease each live hold of this store is on (by token), and its granted ttl, so that
/// renewal is one keep-alive. A hold restored elsewhere finds its lease in its key.
///
/// And the spares: leases this store granted that hold no key any more (their hold was
/// released, or their take found the key held), by granted ttl. A take of the same ttl
/// renews a spare with one keep-alive (answered by the leader, not a write through the
/// log) instead of granting a new lease, and a release leaves its lease here instead of
/// revoking it: a cycle is two writes through the log, not four. A spare is never shared:
/// one hold at a time. One left unused lapses on its own within its ttl, keyless.
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<String, (i64, i64)>>,
    spares: Mutex<HashMap<i64, Vec<i64>>>,
}

impl Leases {
    fn get(&self, token: &str) -> Option<(i64, i64)> {
        self.held.lock().ok()?.get(token).copied()
    }
    fn set(&self, token: &str, lease: i64, granted: i64) {
        if let Ok(mut map) = self.held.lock() {
            map.insert(token.to_owned(), (lease, granted));
        }
    }
    fn forget(&self, token: &str) {
        if let Ok(mut map) = self.held.lock() {
            map.remove(token);
        }
    }
    fn take_spare(&self, granted: i64) -> Option<i64> {
        self.spares.lock().ok()?.get_mut(&granted)?.pop()
    }
    /// Keeps an empty lease for a later take; false when there are enough already.
    fn keep_spare(&self, lease: i64, granted: i64) -> bool {
        let Ok(mut spares) = self.spares.lock() else {
            return false;
        };
        let list = spares.entry(granted).or_default();
        if list.len() >= SPARES_PER_TTL {
            return false;
        }
        list.push(lease);
        true
    }
}

/// A lease of `ttl_ms` for a take: a spare renewed to its full ttl, or a new grant.
async fn lease_for(conn: &Conn, leases: &Leases, ttl_ms: u64) -> Res<(i64, i64)> {
    let granted = secs(ttl_ms);
    while let Some(lease) = leases.take_spare(granted) {
        if keep_alive(conn, lease).await? {
            return Ok((lease, granted));
        }
    }
    grant(conn, ttl_ms).await
}

/// An empty lease (its keys deleted, or never put) kept as a spare, or revoked.
fn give_back(conn: &std::sync::Arc<Conn>, leases: &Leases, lease: i64, granted: i64) {
    if !leases.keep_spare(lease, granted) {
        revoke_later(conn, lease);
    }
}

/// One keep-alive of `lease`: false when it has lapsed or was revoked.
async fn keep_alive(conn: &Conn, lease: i64) -> Res<bool> {
    conn.run("lease keep-alive", |mut c| async move {
        match c.lease_keep_alive(lease).await {
            Ok(_) => Ok(true),
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
}

/// The etcd keys of a hold: the lock's keys, or the one lease member's.
fn hold_keys(keys: &[String], token: &str, kind: Kind) -> Vec<Vec<u8>> {
    match kind {
        Kind::Lock => keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        _ => keys
            .iter()
            .map(|k| layout::member(k, &kind.member(token)))
            .collect(),
    }
}

fn gets(resp: &TxnResponse) -> Vec<GetResponse> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        })
        .collect()
}

fn first(get: Option<&GetResponse>) -> Option<&KeyValue> {
    get.and_then(|g| g.kvs().first())
}

fn revision(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

fn fence(rev: i64) -> Option<u64> {
    u64::try_from(rev).ok()
}

fn with_lease(lease: i64) -> Option<PutOptions> {
    Some(PutOptions::new().with_lease(lease))
}

fn range(end: Vec<u8>) -> Option<GetOptions> {
    Some(GetOptions::new().with_range(end))
}

pub(super) async fn grant(conn: &Conn, ttl_ms: u64) -> Res<(i64, i64)> {
    let ttl = secs(ttl_ms);
    let resp = conn
        .run("lease grant", |mut c| async move {
            c.lease_grant(ttl, None).await
        })
        .await?;
    Ok((resp.id(), resp.ttl()))
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
fn revoke_later(conn: &std::sync::Arc<Conn>, lease: i64) {
    let conn = conn.clone();
    tokio::spawn(async move {
        let _ = revoke(&conn, lease).await;
    });
}

async fn txn(conn: &Conn, what: &str, txn: Txn) -> Res<TxnResponse> {
    conn.run(what, |mut c| {
        let txn = txn.clone();
        async move { c.txn(txn).await }
    })
    .await
}

/// Takes every key for `token` in one transaction, or none.
pub(super) async fn acquire(
    conn: &std::sync::Arc<Conn>,
    leases: &Leases,
    keys: &[String],
    token: &str,
    ttl_ms: u64,
) -> Res<Attempt> {
    let (lease, granted) = lease_for(conn, leases, ttl_ms).await?;
    let mut when = Vec::new();
    let mut then = Vec::new();
    let mut otherwise = Vec::new();
    for key in keys {
        when.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
        when.push(
            Compare::create_revision(layout::companions(key), CompareOp::Equal, 0)
                .with_range(layout::all_end(key)),
        );
        then.push(TxnOp::put(key.as_str(), token, with_lease(lease)));
        otherwise.push(TxnOp::get(key.as_str(), None));
        otherwise.push(TxnOp::get(
            layout::members(key),
            Some(
                GetOptions::new()
                    .with_range(layout::prefix_end(&layout::members(key)))
                    .with_limit(1)
                    .with_keys_only(),
            ),
        ));
    }
    let resp = txn(
        conn,
        "acquire",
        Txn::new().when(when).and_then(then).or_else(otherwise),
    )
    .await;
    let resp = match resp {
        Ok(resp) => resp,
        Err(e) => {
            revoke_later(conn, lease);
            return Err(e);
        }
    };
    if resp.succeeded() {
        leases.set(token, lease, granted);
        return Ok(Attempt::Acquired {
            fence: fence(revision(&resp)),
        });
    }
    let got = gets(&resp);
    let holders: Vec<Option<&KeyValue>> = got.iter().step_by(2).map(|g| g.kvs().first()).collect();
    // A re-sent take that landed: every key is ours already.
    if holders
        .iter()
        .all(|kv| kv.is_some_and(|kv| kv.value() == token.as_bytes()))
    {
        let rev = holders
            .iter()
            .flatten()
            .map(|kv| kv.create_revision())
            .min()
            .unwrap_or(0);
        if let Some(kv) = holders.iter().flatten().next() {
            leases.set(token, kv.lease(), granted);
            // A re-sent transaction carries the same lease: keep it then.
            if kv.lease() != lease {
                revoke_later(conn, lease);
            }
        }
        return Ok(Attempt::Acquired { fence: fence(rev) });
    }
    if holders.iter().flatten().any(|kv| kv.lease() == lease) {
        // An earlier send of this take put some key on it: revoked, with that key.
        revoke_later(conn, lease);
    } else {
        // Nothing is on it: kept for a later take.
        give_back(conn, leases, lease, granted);
    }
    if holders.iter().any(Option::is_some) {
        return Ok(Attempt::Held { remaining: None });
    }
    let member = got.iter().skip(1).step_by(2).find_map(|g| g.kvs().first());
    Ok(match member.and_then(|kv| layout::owner(kv.key())) {
        Some((_, Some(member))) => Attempt::Conflict {
            held_as: HeldAs::from_tag(layout::tag_of(&member)),
        },
        // Freed since (or a waiting writer's intent alone): try again later.
        _ => Attempt::Held { remaining: None },
    })
}

/// What a shared take read: the lock key, the members, the intents, at one revision.
struct Seen {
    locked: bool,
    members: Vec<String>,
    intents: Vec<String>,
    rev: i64,
}

async fn read_shared(conn: &Conn, key: &str) -> Res<Seen> {
    let (m, w) = (layout::members(key), layout::intents(key));
    let resp = txn(
        conn,
        "acquire",
        Txn::new().and_then(vec![
            TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
            TxnOp::get(
                m.clone(),
                Some(
                    GetOptions::new()
                        .with_range(layout::prefix_end(&m))
                        .with_keys_only(),
                ),
            ),
            TxnOp::get(
                w.clone(),
                Some(
                    GetOptions::new()
                        .with_range(layout::prefix_end(&w))
                        .with_keys_only(),
                ),
            ),
        ]),
    )
    .await?;
    let got = gets(&resp);
    let names = |g: Option<&GetResponse>, skip: usize| -> Vec<String> {
        g.map(|g| {
            g.kvs()
                .iter()
                .map(|kv| String::from_utf8_lossy(kv.key().get(skip..).unwrap_or_default()).into())
                .collect()
        })
        .unwrap_or_default()
    };
    Ok(Seen {
        locked: first(got.first()).is_some(),
        members: names(got.get(1), m.len()),
        intents: names(got.get(2), w.len()),
        rev: revision(&resp),
    })
}

/// Takes a semaphore's permit or a read/write lease on `key`, as the memory store does.
#[allow(clippy::too_many_arguments)]
pub(super) async fn acquire_shared(
    conn: &std::sync::Arc<Conn>,
    leases: &Leases,
    key: &str,
    token: &str,
    kind: Kind,
    ttl_ms: u64,
    intent_ms: u64,
) -> Res<Attempt> {
    let member = kind.member(token);
    let mk = layout::member(key, &member);
    let mut lease = None;
    for _ in 0..SHARED_TRIES {
        let seen = read_shared(conn, key).await?;
        if seen.locked {
            return finish(
                conn,
                lease,
                Attempt::Conflict {
                    held_as: HeldAs::Kind(Kind::Lock),
                },
            );
        }
        if seen.members.contains(&member) {
            return finish(conn, lease, Attempt::Acquired { fence: None });
        }
        if let Some(other) = seen.members.first()
            && !kind.agrees_with(layout::tag_of(other))
        {
            return finish(
                conn,
                lease,
                Attempt::Conflict {
                    held_as: HeldAs::from_tag(layout::tag_of(other)),
                },
            );
        }
        let writers = seen.intents.iter().filter(|i| **i != member).count();
        let free = match kind {
            Kind::Write => seen.members.is_empty(),
            Kind::Read => writers == 0 && !seen.members.iter().any(|m| layout::tag_of(m) == "w"),
            _ => seen.members.len() < kind.limit() as usize,
        };
        if !free {
            if kind == Kind::Write && intent_ms > 0 {
                let (intent_lease, _) = grant(conn, intent_ms).await?;
                let put = TxnOp::put(
                    layout::intent(key, &member),
                    token,
                    with_lease(intent_lease),
                );
                txn(conn, "acquire", Txn::new().and_then(vec![put])).await?;
            }
            return finish(conn, lease, Attempt::Held { remaining: None });
        }
        let (id, granted) = match lease {
            Some(l) => l,
            None => grant(conn, ttl_ms).await?,
        };
        lease = Some((id, granted));
        let (m, w) = (layout::members(key), layout::intents(key));
        let mut when = vec![
            Compare::create_revision(key, CompareOp::Equal, 0),
            Compare::mod_revision(m.clone(), CompareOp::Less, seen.rev + 1)
                .with_range(layout::prefix_end(&m)),
        ];
        if kind == Kind::Read {
            when.push(
                Compare::mod_revision(w.clone(), CompareOp::Less, seen.rev + 1)
                    .with_range(layout::prefix_end(&w)),
            );
        }
        let mut then = vec![TxnOp::put(mk.clone(), token, with_lease(id))];
        if kind == Kind::Write {
            then.push(TxnOp::delete(layout::intent(key, &member), None));
        }
        let resp = txn(conn, "acquire", Txn::new().when(when).and_then(then)).await?;
        if resp.succeeded() {
            leases.set(token, id, granted);
            return Ok(Attempt::Acquired {
                fence: fence(revision(&resp)),
            });
        }
    }
    finish(conn, lease, Attempt::Held { remaining: None })
}

/// An attempt's answer, its unused lease revoked.
fn finish(conn: &std::sync::Arc<Conn>, lease: Option<(i64, i64)>, out: Attempt) -> Res<Attempt> {
    if let Some((id, _)) = lease {
        revoke_later(conn, id);
    }
    Ok(out)
}

/// Deletes `token`'s keys (compared with the token) and revokes their lease (in the
/// background: the keys are gone when this answers, the revoke only frees the lease early).
pub(super) async fn release(
    conn: &std::sync::Arc<Conn>,
    leases: &Leases,
    keys: &[String],
    token: &str,
    kind: Kind,
) -> Res<Release> {
    let held = hold_keys(keys, token, kind);
    let when: Vec<Compare> = held
        .iter()
        .map(|k| Compare::value(k.clone(), CompareOp::Equal, token))
        .collect();
    let mut then: Vec<TxnOp> = held.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
    then.extend(held.iter().map(|k| TxnOp::delete(k.clone(), None)));
    let mut otherwise: Vec<TxnOp> = held.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
    if kind == Kind::Write {
        for key in keys {
            let intent = layout::intent(key, &kind.member(token));
            then.push(TxnOp::delete(intent.clone(), None));
            otherwise.push(TxnOp::delete(intent, None));
        }
    }
    let resp = txn(
        conn,
        "release",
        Txn::new().when(when).and_then(then).or_else(otherwise),
    )
    .await?;
    let cached = leases.get(token);
    leases.forget(token);
    let got = gets(&resp);
    let found: Vec<&KeyValue> = got.iter().filter_map(|g| g.kvs().first()).collect();
    if resp.succeeded() {
        let lease = found.first().map(|kv| kv.lease()).or(cached.map(|c| c.0));
        // The keys are gone already: the lease, now empty, is kept for a later take (the
        // one this store granted and knows) or revoked in the background.
        match (lease, cached) {
            (Some(lease), Some((known, granted))) if lease == known => {
                give_back(conn, leases, lease, granted)
            }
            (Some(lease), _) => revoke_later(conn, lease),
            (None, _) => {}
        }
        return Ok(Release::Released);
    }
    // Ours, partly gone (a key force-released): the rest of ours goes too.
    let ours: Vec<&KeyValue> = found
        .iter()
        .copied()
        .filter(|kv| kv.value() == token.as_bytes())
        .collect();
    if let Some(kv) = ours.first() {
        revoke_later(conn, kv.lease());
    } else if let Some((lease, _)) = cached {
        revoke_later(conn, lease);
    }
    Ok(if found.len() > ours.len() {
        Release::Foreign
    } else {
        Release::Gone
    })
}

/// The lease a hold is on: this store's record, else the holder key's lease (a hold
/// restored from a hand-off); `None` when the hold is gone.
async fn lease_of(
    conn: &Conn,
    leases: &Leases,
    keys: &[String],
    token: &str,
    kind: Kind,
) -> Res<Option<(i64, Option<i64>)>> {
    if let Some((lease, granted)) = leases.get(token) {
        return Ok(Some((lease, Some(granted))));
    }
    let Some(first) = hold_keys(keys, token, kind).into_iter().next() else {
        return Ok(None);
    };
    let resp = conn
        .run("read", |mut c| {
            let first = first.clone();
            async move { c.get(first, None).await }
        })
        .await?;
    Ok(resp
        .kvs()
        .first()
        .filter(|kv| kv.value() == token.as_bytes() && kv.lease() != 0)
        .map(|kv| (kv.lease(), None)))
}

/// The lease's time left and granted ttl, and whether every key of the hold is on it.
async fn time_to_live(conn: &Conn, lease: i64, held: &[Vec<u8>]) -> Res<Option<(i64, i64)>> {
    let resp = conn
        .run("lease time-to-live", |mut c| async move {
            c.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
                .await
        })
        .await?;
    if resp.ttl() < 0 || !held.iter().all(|k| resp.keys().contains(k)) {
        return Ok(None);
    }
    Ok(Some((resp.ttl(), resp.granted_ttl())))
}

/// Renews the hold for `ttl_ms` if it is still held: a keep-alive of its lease, or, for a
/// ttl longer than the lease's, its keys moved to a new lease.
pub(super) async fn extend(
    conn: &Conn,
    leases: &Leases,
    keys: &[String],
    token: &str,
    kind: Kind,
    ttl_ms: u64,
) -> Res<bool> {
    let Some((lease, granted)) = lease_of(conn, leases, keys, token, kind).await? else {
        leases.forget(token);
        return Ok(false);
    };
    let held = hold_keys(keys, token, kind);
    let granted = match granted {
        Some(g) => g,
        None => match time_to_live(conn, lease, &held).await? {
            Some((_, g)) => g,
            None => return Ok(false),
        },
    };
    if granted >= secs(ttl_ms) {
        let alive = keep_alive(conn, lease).await?;
        if alive {
            leases.set(token, lease, granted);
        } else {
            leases.forget(token);
        }
        return Ok(alive);
    }
    // A longer ttl: the keys move to a lease of that ttl (their create revision stays).
    let (new, new_granted) = grant(conn, ttl_ms).await?;
    let when: Vec<Compare> = held
        .iter()
        .map(|k| Compare::value(k.clone(), CompareOp::Equal, token))
        .collect();
    let then: Vec<TxnOp> = held
        .iter()
        .map(|k| TxnOp::put(k.clone(), token, with_lease(new)))
        .collect();
    let resp = txn(conn, "extend", Txn::new().when(when).and_then(then)).await?;
    if resp.succeeded() {
        leases.set(token, new, new_granted);
        revoke(conn, lease).await?;
        Ok(true)
    } else {
        leases.forget(token);
        revoke(conn, new).await?;
        Ok(false)
    }
}

/// The time left on the hold's lease if every key of it is still on it.
pub(super) async fn remaining(
    conn: &Conn,
    leases: &Leases,
    keys: &[String],
    token: &str,
    kind: Kind,
) -> Res<Option<Duration>> {
    let Some((lease, _)) = lease_of(conn, leases, keys, token, kind).await? else {
        return Ok(None);
    };
    let held = hold_keys(keys, token, kind);
    let Some((ttl, granted)) = time_to_live(conn, lease, &held).await? else {
        return Ok(None);
    };
    if ttl > 0 {
        return Ok(Some(Duration::from_secs(u64::try_from(ttl).unwrap_or(0))));
    }
    // etcd answers whole seconds, truncated: under 1 s left reads as 0, which would have
    // a restored hold given up at once. Renewed instead (the caller holds the token):
    // the granted ttl is then left.
    let alive = keep_alive(conn, lease).await?;
    Ok(alive.then(|| Duration::from_secs(u64::try_from(granted).unwrap_or(0))))
}

/// The key's lock and members (keys and leases), at one revision.
async fn everything(conn: &Conn, key: &str) -> Res<(Option<KeyValue>, Vec<KeyValue>)> {
    let m = layout::members(key);
    let resp = txn(
        conn,
        "read",
        Txn::new().and_then(vec![
            TxnOp::get(key, None),
            TxnOp::get(m.clone(), range(layout::prefix_end(&m))),
        ]),
    )
    .await?;
    let mut got = gets(&resp).into_iter();
    let lock = got.next().and_then(|mut g| g.take_kvs().into_iter().next());
    let members = got.next().map(|mut g| g.take_kvs()).unwrap_or_default();
    Ok((lock, members))
}

/// How many hold `key` now: its lock, or its leases.
pub(super) async fn holders(conn: &Conn, key: &str) -> Res<u64> {
    let (lock, members) = everything(conn, key).await?;
    Ok(if lock.is_some() {
        1
    } else {
        members.len() as u64
    })
}

/// Deletes every hold of `key` and revokes their leases; whether any was there.
pub(super) async fn force_release(conn: &Conn, key: &str) -> Res<bool> {
    let resp = txn(
        conn,
        "force release",
        Txn::new().and_then(vec![TxnOp::delete(
            key,
            Some(
                DeleteOptions::new()
                    .with_range(layout::all_end(key))
                    .with_prev_key(),
            ),
        )]),
    )
    .await?;
    let mut any = false;
    for r in resp.op_responses() {
        if let TxnOpResponse::Delete(d) = r {
            for kv in d.prev_kvs() {
                if layout::owner(kv.key()).is_some() {
                    any = true;
                }
                revoke(conn, kv.lease()).await?;
            }
        }
    }
    Ok(any)
}

/// What holds `key`: the lock's token, fence and time left, else its leases'.
pub(super) struct Inspected {
    pub(super) token: Option<String>,
    pub(super) fence: Option<u64>,
    pub(super) held: bool,
    pub(super) left: Option<Duration>,
}

pub(super) async fn inspect(conn: &Conn, key: &str) -> Res<Inspected> {
    let (lock, members) = everything(conn, key).await?;
    let on = lock.as_ref().or(members.first());
    let left = match on {
        Some(kv) if kv.lease() != 0 => time_to_live(conn, kv.lease(), &[])
            .await?
            .map(|(ttl, _)| Duration::from_secs(u64::try_from(ttl).unwrap_or(0))),
        _ => None,
    };
    Ok(Inspected {
        token: lock
            .as_ref()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
        fence: lock.as_ref().and_then(|kv| fence(kv.create_revision())),
        held: on.is_some(),
        left,
    })
}

/// The lock keys held now that match a glob.
pub(super) async fn scan(conn: &Conn, pattern: &str) -> Res<Vec<String>> {
    let glob = glob::Pattern::new(pattern)?;
    let literal: String = pattern
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '\\'))
        .collect();
    let start = literal.into_bytes();
    let options = if start.is_empty() {
        GetOptions::new().with_all_keys().with_keys_only()
    } else {
        GetOptions::new()
            .with_range(layout::prefix_end(&start))
            .with_keys_only()
    };
    let from = if start.is_empty() { vec![0] } else { start };
    let resp = conn
        .run("scan", |mut c| {
            let (from, options) = (from.clone(), options.clone());
            async move { c.get(from, Some(options)).await }
        })
        .await?;
    let mut keys: Vec<String> = resp
        .kvs()
        .iter()
        .filter_map(|kv| layout::owner(kv.key()).map(|(key, _)| key))
        .filter(|k| glob.matches(k))
        .collect();
    keys.dedup();
    Ok(keys)
}
