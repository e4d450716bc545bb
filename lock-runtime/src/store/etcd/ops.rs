//! Every operation as etcd requests: transactions, reads, and the leases of `leases`.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, GetResponse, KeyValue, LeaseTimeToLiveOptions,
    PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::conn::Conn;
use super::layout;
use super::leases::{
    Leases, OnLease, Place, give_back, grant, keep_alive, lease_for, renew_place, revoke,
    revoke_later, secs,
};
use crate::error::BoxError;
use crate::store::{Attempt, HeldAs, Kind, Release};

type Res<T> = Result<T, BoxError>;

/// How often a lease take retries when the members changed between its read and its write.
const SHARED_TRIES: usize = 8;

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

/// Every key that starts with `prefix`, keys only.
fn keys_under(prefix: &[u8]) -> Option<GetOptions> {
    Some(
        GetOptions::new()
            .with_range(layout::prefix_end(prefix))
            .with_keys_only(),
    )
}

async fn txn(conn: &Conn, what: &str, txn: Txn) -> Res<TxnResponse> {
    Ok(txn_sent(conn, what, txn).await?.0)
}

/// [`txn`], and whether it went more than once (see [`Conn::run_sent`]).
async fn txn_sent(conn: &Conn, what: &str, txn: Txn) -> Res<(TxnResponse, bool)> {
    conn.run_sent(what, |mut c| {
        let txn = txn.clone();
        async move { c.txn(txn).await }
    })
    .await
}

/// The longest a place's lease is made for its call's polls: a call that polls less often
/// may find its place lapsed (it queues again; the lapse wakes it).
const PLACE_MS_MAX: u64 = 60_000;

/// How long the lease of a call that will wait for `queue_ms` between tries lasts: the
/// ttl, or longer, so that its place lasts between its tries.
fn waiting_ms(ttl_ms: u64, queue_ms: u64) -> u64 {
    ttl_ms.max(queue_ms.min(PLACE_MS_MAX))
}

/// The lease a take goes on: its call's place's (the place goes, the hold takes its
/// lease), else a spare or a new one, of the call's ttl, or as long as a place must last
/// when the call will wait (`queue_ms`).
async fn take_lease(
    conn: &Conn,
    leases: &Leases,
    place: Option<Place>,
    ttl_ms: u64,
    queue_ms: u64,
) -> Res<OnLease> {
    match place {
        Some(place) => Ok(place.on),
        None => lease_for(conn, leases, waiting_ms(ttl_ms, queue_ms)).await,
    }
}

/// Takes every key for `token` in one transaction, or none, in its turn: a call with a
/// place takes when no place of its keys' queues is older than its own; one without, when
/// nobody waits. A call that will wait (`queue_ms > 0`) and is refused takes a place in
/// every key's queue, in the refusing transaction.
pub(super) async fn acquire(
    conn: &Arc<Conn>,
    leases: &Leases,
    keys: &[String],
    token: &str,
    ttl_ms: u64,
    queue_ms: u64,
) -> Res<Attempt> {
    let member = Kind::Lock.member(token);
    let place = renew_place(conn, leases, token).await?;
    let on = take_lease(conn, leases, place, ttl_ms, queue_ms).await?;
    // Recorded before the take goes: if its caller stops waiting while it is out, the
    // engine's release of the token revokes this lease, whenever the take lands.
    leases.set(token, on);
    let registers = place.is_none() && queue_ms > 0;
    let mut when = Vec::new();
    let mut then = Vec::new();
    let mut otherwise = Vec::new();
    for key in keys {
        let (mine, queue) = (layout::place(key, &member), layout::queue(key));
        when.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
        match place {
            // Nothing beside the key: no lease of another kind, nobody waiting.
            None => when.push(
                Compare::create_revision(layout::companions(key), CompareOp::Equal, 0)
                    .with_range(layout::all_end(key)),
            ),
            Some(place) => {
                let members = layout::members(key);
                when.push(
                    Compare::create_revision(members.clone(), CompareOp::Equal, 0)
                        .with_range(layout::prefix_end(&members)),
                );
                // Every place is ours or younger (ours is there, so the range is not
                // empty: an empty one would compare as revision 0 and fail).
                when.push(
                    Compare::create_revision(queue.clone(), CompareOp::Greater, place.rev - 1)
                        .with_range(layout::prefix_end(&queue)),
                );
                then.push(TxnOp::delete(mine.clone(), None));
            }
        }
        then.push(TxnOp::put(key.as_str(), token, with_lease(on.id)));
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
        if registers {
            otherwise.push(TxnOp::put(mine.clone(), token, with_lease(on.id)));
        }
        otherwise.push(TxnOp::get(mine, Some(GetOptions::new().with_keys_only())));
    }
    let resp = txn_sent(
        conn,
        "acquire",
        Txn::new().when(when).and_then(then).or_else(otherwise),
    )
    .await;
    let (resp, on) = match resp {
        Ok((resp, resent)) => (resp, on.sent(resent)),
        Err(e) => {
            // Whatever landed goes with the lease: the engine's release of this token
            // revokes it (a place's too).
            return Err(e);
        }
    };
    if resp.succeeded() {
        leases.forget_place(token);
        leases.set(token, on);
        return Ok(Attempt::Acquired {
            fence: fence(revision(&resp)),
        });
    }
    let got = gets(&resp);
    let holders: Vec<Option<&KeyValue>> = got.iter().step_by(3).map(|g| g.kvs().first()).collect();
    // A re-sent take that landed: every key is ours already.
    if holders
        .iter()
        .all(|kv| kv.is_some_and(|kv| kv.value() == token.as_bytes()))
    {
        leases.forget_place(token);
        let rev = holders
            .iter()
            .flatten()
            .map(|kv| kv.create_revision())
            .min()
            .unwrap_or(0);
        if let Some(kv) = holders.iter().flatten().next() {
            leases.set(
                token,
                OnLease {
                    id: kv.lease(),
                    ..on
                },
            );
            // A re-sent transaction carries the same lease: keep it then.
            if kv.lease() != on.id {
                revoke_later(conn, on.id);
            }
        }
        return Ok(Attempt::Acquired { fence: fence(rev) });
    }
    // Refused: the token holds nothing (a place keeps its lease).
    leases.forget(token);
    let places: Vec<Option<&KeyValue>> = got
        .iter()
        .skip(2)
        .step_by(3)
        .map(|g| g.kvs().first())
        .collect();
    if holders.iter().flatten().any(|kv| kv.lease() == on.id) {
        // An earlier send of this take put some key on it: revoked, with that key.
        leases.forget_place(token);
        revoke_later(conn, on.id);
    } else if registers || place.is_some() {
        let revs: Option<Vec<i64>> = places
            .iter()
            .map(|kv| kv.map(KeyValue::create_revision))
            .collect();
        match revs {
            // In every queue (from one transaction: one revision), queued now or before.
            Some(revs) => {
                if registers {
                    let rev = revs.into_iter().max().unwrap_or(0);
                    leases.set_place(token, on, rev);
                }
            }
            // A place gone (a force release, a lapse): the rest goes with the lease, and
            // the next try queues again.
            None => {
                leases.forget_place(token);
                revoke_later(conn, on.id);
            }
        }
    } else {
        // Nothing is on it: kept for a later take.
        give_back(conn, leases, on);
    }
    if holders.iter().any(Option::is_some) {
        return Ok(Attempt::Held { remaining: None });
    }
    let member = got.iter().skip(1).step_by(3).find_map(|g| g.kvs().first());
    Ok(match member.and_then(|kv| layout::owner(kv.key())) {
        Some((_, Some(member))) => Attempt::Conflict {
            held_as: HeldAs::from_tag(layout::tag_of(&member)),
        },
        // Free, but older waiters come first (or it was freed since): try again later.
        _ => Attempt::Held { remaining: None },
    })
}

/// What a shared take read: the lock key, the members, the queue (each place's member and
/// create revision), at one revision.
struct Seen {
    locked: bool,
    members: Vec<String>,
    queue: Vec<(String, i64)>,
    rev: i64,
}

async fn read_shared(conn: &Conn, key: &str) -> Res<Seen> {
    let (m, q) = (layout::members(key), layout::queue(key));
    let resp = txn(
        conn,
        "acquire",
        Txn::new().and_then(vec![
            TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
            TxnOp::get(m.clone(), keys_under(&m)),
            TxnOp::get(q.clone(), keys_under(&q)),
        ]),
    )
    .await?;
    let got = gets(&resp);
    let name = |kv: &KeyValue, skip: usize| -> String {
        String::from_utf8_lossy(kv.key().get(skip..).unwrap_or_default()).into()
    };
    let kvs = |i: usize| got.get(i).map(GetResponse::kvs).unwrap_or_default();
    Ok(Seen {
        locked: first(got.first()).is_some(),
        members: kvs(1).iter().map(|kv| name(kv, m.len())).collect(),
        queue: kvs(2)
            .iter()
            .map(|kv| (name(kv, q.len()), kv.create_revision()))
            .collect(),
        rev: revision(&resp),
    })
}

/// Whether a shared lease of `kind` can be taken now, given the members and the places
/// ahead of the taker's (every place, when it has none).
fn turn(kind: Kind, members: &[String], ahead: &[&str]) -> bool {
    match kind {
        Kind::Write => members.is_empty() && ahead.is_empty(),
        // Readers share; a writer holding, or waiting ahead, comes first.
        Kind::Read => !members.iter().any(|m| layout::tag_of(m) == "w") && !ahead.contains(&"w"),
        _ => members.len() + ahead.len() < kind.limit() as usize,
    }
}

/// Takes a semaphore's permit or a read/write lease on `key` in its turn: the permits go
/// to the oldest places first, a reader holds when no writer holds or waits ahead of it, a
/// writer when it is first. A call that will wait and is refused takes a place.
#[allow(clippy::too_many_arguments)]
pub(super) async fn acquire_shared(
    conn: &Arc<Conn>,
    leases: &Leases,
    key: &str,
    token: &str,
    kind: Kind,
    ttl_ms: u64,
    queue_ms: u64,
) -> Res<Attempt> {
    let member = kind.member(token);
    let (mk, pk) = (layout::member(key, &member), layout::place(key, &member));
    let mut place = renew_place(conn, leases, token).await?;
    let mut lease = place.map(|p| p.on);
    for _ in 0..SHARED_TRIES {
        let seen = read_shared(conn, key).await?;
        if seen.locked {
            let held_as = HeldAs::Kind(Kind::Lock);
            return finish(conn, leases, token, lease, Attempt::Conflict { held_as });
        }
        if seen.members.contains(&member) {
            leases.forget_place(token);
            return Ok(Attempt::Acquired { fence: None });
        }
        if let Some(other) = seen.members.first()
            && !kind.agrees_with(layout::tag_of(other))
        {
            let held_as = HeldAs::from_tag(layout::tag_of(other));
            return finish(conn, leases, token, lease, Attempt::Conflict { held_as });
        }
        let mine = seen.queue.iter().find(|(m, _)| *m == member).map(|q| q.1);
        if place.is_some() && mine.is_none() {
            // The place is gone (a lapse, a force release): queue again, on a new lease.
            if let Some(old) = leases.forget_place(token) {
                revoke_later(conn, old.on.id);
            }
            place = None;
            lease = None;
        }
        let ahead: Vec<&str> = seen
            .queue
            .iter()
            .filter(|(m, rev)| *m != member && mine.is_none_or(|mine| *rev < mine))
            .map(|(m, _)| layout::tag_of(m))
            .collect();
        if !turn(kind, &seen.members, &ahead) {
            if place.is_none() && queue_ms > 0 {
                let on = match lease {
                    Some(on) => on,
                    None => lease_for(conn, leases, waiting_ms(ttl_ms, queue_ms)).await?,
                };
                leases.set(token, on);
                let (resp, resent) = txn_sent(
                    conn,
                    "acquire",
                    Txn::new().and_then(vec![
                        TxnOp::put(pk.clone(), token, with_lease(on.id)),
                        TxnOp::get(pk.clone(), Some(GetOptions::new().with_keys_only())),
                    ]),
                )
                .await?;
                leases.forget(token);
                let on = on.sent(resent);
                let rev =
                    first(gets(&resp).first()).map_or(revision(&resp), |kv| kv.create_revision());
                leases.set_place(token, on, rev);
                return Ok(Attempt::Held { remaining: None });
            }
            return finish(
                conn,
                leases,
                token,
                lease,
                Attempt::Held { remaining: None },
            );
        }
        let on = match lease {
            Some(on) => on,
            None => lease_for(conn, leases, ttl_ms).await?,
        };
        leases.set(token, on);
        let m = layout::members(key);
        let when = vec![
            Compare::create_revision(key, CompareOp::Equal, 0),
            Compare::mod_revision(m.clone(), CompareOp::Less, seen.rev + 1)
                .with_range(layout::prefix_end(&m)),
        ];
        // Places only leave a queue or join its end, so the turn read stays the taker's
        // whatever the queue did since; the members are compared.
        let then = vec![
            TxnOp::put(mk.clone(), token, with_lease(on.id)),
            TxnOp::delete(pk.clone(), None),
        ];
        let (resp, resent) =
            txn_sent(conn, "acquire", Txn::new().when(when).and_then(then)).await?;
        let on = on.sent(resent);
        lease = Some(on);
        if resp.succeeded() {
            leases.forget_place(token);
            leases.set(token, on);
            return Ok(Attempt::Acquired {
                fence: fence(revision(&resp)),
            });
        }
    }
    finish(
        conn,
        leases,
        token,
        lease,
        Attempt::Held { remaining: None },
    )
}

/// A shared attempt's answer: a lease it got for nothing is revoked; a waiting call's
/// place (and its lease) stays.
fn finish(
    conn: &Arc<Conn>,
    leases: &Leases,
    token: &str,
    lease: Option<OnLease>,
    out: Attempt,
) -> Res<Attempt> {
    leases.forget(token);
    let waits = matches!(out, Attempt::Held { .. }) && leases.has_place(token);
    if let Some(on) = lease.filter(|_| !waits) {
        leases.forget_place(token);
        revoke_later(conn, on.id);
    }
    Ok(out)
}

/// Deletes `token`'s keys (compared with the token) and its places in their queues, and
/// gives back their lease (kept as a spare, or revoked in the background: the keys are
/// gone when this answers). A call that gave up waiting withdraws its places this way.
pub(super) async fn release(
    conn: &Arc<Conn>,
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
    for key in keys {
        let place = layout::place(key, &kind.member(token));
        then.push(TxnOp::delete(place.clone(), None));
        otherwise.push(TxnOp::delete(place, None));
    }
    let resp = txn(
        conn,
        "release",
        Txn::new().when(when).and_then(then).or_else(otherwise),
    )
    .await?;
    let cached = leases.forget(token);
    let place = leases.forget_place(token);
    let got = gets(&resp);
    let found: Vec<&KeyValue> = got.iter().filter_map(|g| g.kvs().first()).collect();
    if resp.succeeded() {
        let lease = found.first().map(|kv| kv.lease()).or(cached.map(|c| c.id));
        // The keys are gone already: the lease, now empty, is kept for a later take (the
        // one this store granted and knows) or revoked in the background.
        match (lease, cached) {
            (Some(lease), Some(on)) if lease == on.id => give_back(conn, leases, on),
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
    } else if let Some(on) = cached {
        revoke_later(conn, on.id);
    } else if let Some(place) = place {
        // A waiter that gave up: its places are deleted; the lease is revoked, not kept,
        // so that a send of its place still out cannot land on it later.
        revoke_later(conn, place.on.id);
    }
    Ok(if found.len() > ours.len() {
        Release::Foreign
    } else {
        Release::Gone
    })
}

/// The lease a hold is on, with this store's record of it, else the holder key's lease (a
/// hold restored from a hand-off); `None` when the hold is gone.
async fn lease_of(
    conn: &Conn,
    leases: &Leases,
    keys: &[String],
    token: &str,
    kind: Kind,
) -> Res<Option<(i64, Option<OnLease>)>> {
    if let Some(on) = leases.get(token) {
        return Ok(Some((on.id, Some(on))));
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
    let Some((lease, cached)) = lease_of(conn, leases, keys, token, kind).await? else {
        leases.forget(token);
        return Ok(false);
    };
    let held = hold_keys(keys, token, kind);
    let on = match cached {
        Some(on) => on,
        None => match time_to_live(conn, lease, &held).await? {
            Some((_, granted)) => OnLease {
                id: lease,
                granted,
                asked: granted,
                // Granted elsewhere (a hand-off): never a spare of this store's.
                reusable: false,
            },
            None => return Ok(false),
        },
    };
    if on.granted >= secs(ttl_ms) {
        let alive = keep_alive(conn, lease).await?;
        if alive {
            leases.set(token, on);
        } else {
            leases.forget(token);
        }
        return Ok(alive);
    }
    // A longer ttl: the keys move to a lease of that ttl (their create revision stays).
    let new = grant(conn, ttl_ms).await?;
    let when: Vec<Compare> = held
        .iter()
        .map(|k| Compare::value(k.clone(), CompareOp::Equal, token))
        .collect();
    let then: Vec<TxnOp> = held
        .iter()
        .map(|k| TxnOp::put(k.clone(), token, with_lease(new.id)))
        .collect();
    let resp = txn(conn, "extend", Txn::new().when(when).and_then(then)).await?;
    if resp.succeeded() {
        leases.set(token, new);
        revoke(conn, lease).await?;
        Ok(true)
    } else {
        leases.forget(token);
        revoke(conn, new.id).await?;
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

/// What a key has now, at one revision.
struct Everything {
    lock: Option<KeyValue>,
    /// The leases (keys and leases).
    members: Vec<KeyValue>,
    /// How many wait in its queue.
    queued: u64,
}

async fn everything(conn: &Conn, key: &str) -> Res<Everything> {
    let (m, q) = (layout::members(key), layout::queue(key));
    let resp = txn(
        conn,
        "read",
        Txn::new().and_then(vec![
            TxnOp::get(key, None),
            TxnOp::get(m.clone(), range(layout::prefix_end(&m))),
            TxnOp::get(
                q.clone(),
                Some(
                    GetOptions::new()
                        .with_range(layout::prefix_end(&q))
                        .with_count_only(),
                ),
            ),
        ]),
    )
    .await?;
    let mut got = gets(&resp).into_iter();
    let lock = got.next().and_then(|mut g| g.take_kvs().into_iter().next());
    let members = got.next().map(|mut g| g.take_kvs()).unwrap_or_default();
    let queued = got
        .next()
        .map_or(0, |g| u64::try_from(g.count()).unwrap_or(0));
    Ok(Everything {
        lock,
        members,
        queued,
    })
}

/// How many hold `key` now: its lock, or its leases.
pub(super) async fn holders(conn: &Conn, key: &str) -> Res<u64> {
    let seen = everything(conn, key).await?;
    Ok(if seen.lock.is_some() {
        1
    } else {
        seen.members.len() as u64
    })
}

/// Deletes every hold of `key` and revokes their leases; whether any was there. Its
/// queue stays: the waiters keep their turns.
pub(super) async fn force_release(conn: &Conn, key: &str) -> Res<bool> {
    let m = layout::members(key);
    let resp = txn(
        conn,
        "force release",
        Txn::new().and_then(vec![
            TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key())),
            TxnOp::delete(
                m.clone(),
                Some(
                    DeleteOptions::new()
                        .with_range(layout::prefix_end(&m))
                        .with_prev_key(),
                ),
            ),
        ]),
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
    /// How many wait in its queue, in every process.
    pub(super) queued: u64,
}

pub(super) async fn inspect(conn: &Conn, key: &str) -> Res<Inspected> {
    let Everything {
        lock,
        members,
        queued,
    } = everything(conn, key).await?;
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
        queued,
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
