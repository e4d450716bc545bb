//! Every operation as statements on one connection: one statement where one suffices,
//! else one transaction that locks the keys' rows (in key order) first. The same lease
//! model as the memory store's, on rows (`locked_locks`, `locked_leases`,
//! `locked_writers`), with times in the server's ms.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Transaction, TxOpts, Value};

use super::sql::{Statements, like};
use crate::store::{Attempt, HeldAs, Kind, Release};

type Res<T> = Result<T, mysql_async::Error>;

/// A connection or a transaction on one: what a statement runs on, and what the server
/// said of the last one.
pub(super) trait Db: Queryable + Send {
    fn affected(&self) -> u64;
    fn last_id(&self) -> Option<u64>;
}

impl Db for Conn {
    fn affected(&self) -> u64 {
        self.affected_rows()
    }
    fn last_id(&self) -> Option<u64> {
        self.last_insert_id()
    }
}

impl Db for Transaction<'_> {
    fn affected(&self) -> u64 {
        self.affected_rows()
    }
    fn last_id(&self) -> Option<u64> {
        self.last_insert_id()
    }
}

fn params(values: Vec<Value>) -> Params {
    Params::Positional(values)
}

/// `first`, then every key, then `last`.
fn around(first: &[Value], keys: &[String], last: &[Value]) -> Params {
    let mut v: Vec<Value> = first.to_vec();
    v.extend(keys.iter().map(|k| Value::from(k.as_str())));
    v.extend_from_slice(last);
    params(v)
}

fn ms(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn left(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A lease's member name's tag: `s3` of `s3:<token>`.
fn tag_of(member: &str) -> &str {
    member.split(':').next().unwrap_or(member)
}

/// What a take found when it could not have the key.
enum Taken {
    Yes,
    No(Attempt),
}

/// Takes `key` for `token` (one statement), or says who holds it.
async fn take(
    db: &mut impl Db,
    sql: &Statements,
    key: &str,
    token: &str,
    ttl_ms: u64,
) -> Res<Taken> {
    db.exec_drop(&sql.take, (key, token, ms(ttl_ms))).await?;
    if db.affected() > 0 {
        return Ok(Taken::Yes);
    }
    let row: Option<(String, i64)> = db.exec_first(&sql.probe, (key,)).await?;
    Ok(match row {
        // Ours already, with the same expiry (a re-sent take in the same ms).
        Some((holder, left_ms)) if holder == token && left_ms > 0 => Taken::Yes,
        Some((holder, left_ms)) if holder.is_empty() && left_ms > 0 => {
            let member: Option<String> = db.exec_first(&sql.lease_tag, (key,)).await?;
            Taken::No(Attempt::Conflict {
                held_as: member.map_or(HeldAs::Leases, |m| HeldAs::from_tag(tag_of(&m))),
            })
        }
        Some((_, left_ms)) => Taken::No(Attempt::Held {
            remaining: Some(left(left_ms)),
        }),
        None => Taken::No(Attempt::Held { remaining: None }),
    })
}

/// Takes every key for `token`, or none; the fence when asked for.
pub(super) async fn acquire(
    conn: &mut Conn,
    sql: &Statements,
    keys: &[String],
    token: &str,
    ttl_ms: u64,
    fencing: bool,
) -> Res<Attempt> {
    if let ([key], false) = (keys, fencing) {
        return Ok(match take(conn, sql, key, token, ttl_ms).await? {
            Taken::Yes => Attempt::Acquired { fence: None },
            Taken::No(refused) => refused,
        });
    }
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    for key in keys {
        if let Taken::No(refused) = take(&mut tx, sql, key, token, ttl_ms).await? {
            tx.rollback().await?;
            return Ok(refused);
        }
    }
    let fence = if fencing {
        tx.exec_drop(&sql.fence_next, ()).await?;
        let fence = tx.last_id().unwrap_or(0);
        let set = Statements::keys(&sql.set_fence, keys.len());
        tx.exec_drop(
            set,
            around(&[Value::from(fence)], keys, &[Value::from(token)]),
        )
        .await?;
        Some(fence)
    } else {
        None
    };
    tx.commit().await?;
    Ok(Attempt::Acquired { fence })
}

/// Deletes `token`'s rows of `keys`: released, gone (expired or never), or someone else's.
pub(super) async fn release(
    conn: &mut Conn,
    sql: &Statements,
    keys: &[String],
    token: &str,
) -> Res<Release> {
    let n = keys.len();
    let tok = [Value::from(token)];
    conn.exec_drop(Statements::keys(&sql.release, n), around(&[], keys, &tok))
        .await?;
    if conn.affected() == n as u64 {
        return Ok(Release::Released);
    }
    // Ours but expired: deleted too; then whether someone else holds any.
    conn.exec_drop(
        Statements::keys(&sql.release_any, n),
        around(&[], keys, &tok),
    )
    .await?;
    let others: Option<i64> = conn
        .exec_first(Statements::keys(&sql.foreign, n), around(&[], keys, &tok))
        .await?;
    Ok(if others.unwrap_or(0) > 0 {
        Release::Foreign
    } else {
        Release::Gone
    })
}

/// The least time left on `token`'s keys, if it holds every one.
pub(super) async fn remaining(
    db: &mut impl Db,
    sql: &Statements,
    keys: &[String],
    token: &str,
) -> Res<Option<Duration>> {
    let row: Option<(i64, Option<i64>)> = db
        .exec_first(
            Statements::keys(&sql.remaining, keys.len()),
            around(&[], keys, &[Value::from(token)]),
        )
        .await?;
    Ok(match row {
        Some((count, Some(least))) if count == keys.len() as i64 => Some(left(least)),
        _ => None,
    })
}

/// Sets every key's expiry to `ttl_ms` from now, if `token` holds them all.
pub(super) async fn extend(
    conn: &mut Conn,
    sql: &Statements,
    keys: &[String],
    token: &str,
    ttl_ms: u64,
) -> Res<bool> {
    let n = keys.len();
    let (ttl, tok) = ([Value::from(ms(ttl_ms))], [Value::from(token)]);
    if n == 1 {
        conn.exec_drop(Statements::keys(&sql.extend, 1), around(&ttl, keys, &tok))
            .await?;
        // Nothing changed: gone, or the same expiry as before (same ms).
        return Ok(conn.affected() == 1 || remaining(conn, sql, keys, token).await?.is_some());
    }
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let held: Vec<String> = tx
        .exec(
            Statements::keys(&sql.remaining_locked, n),
            around(&[], keys, &tok),
        )
        .await?;
    if held.len() != n {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.exec_drop(Statements::keys(&sql.extend, n), around(&ttl, keys, &tok))
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// The key's row (created empty if missing), locked, and the server's now.
async fn lock_row(
    tx: &mut Transaction<'_>,
    sql: &Statements,
    key: &str,
) -> Res<(String, i64, i64)> {
    let row: Option<(String, i64, i64)> = tx.exec_first(&sql.row, (key,)).await?;
    if let Some(row) = row {
        return Ok(row);
    }
    tx.exec_drop(&sql.row_lock, (key,)).await?;
    let row: Option<(String, i64, i64)> = tx.exec_first(&sql.row, (key,)).await?;
    Ok(row.unwrap_or_default())
}

/// The key's row if it exists, locked, and the server's now.
async fn row_if_any(tx: &mut Transaction<'_>, sql: &Statements, key: &str) -> Res<(bool, i64)> {
    let row: Option<(String, i64, i64)> = tx.exec_first(&sql.row, (key,)).await?;
    Ok(match row {
        Some((_, _, now)) => (true, now),
        None => {
            let now: Option<i64> = tx.exec_first(&sql.now, ()).await?;
            (false, now.unwrap_or(0))
        }
    })
}

/// The key's leases (member, expiry), and how many writers wait (live intents).
async fn leases(
    tx: &mut Transaction<'_>,
    sql: &Statements,
    key: &str,
    now: i64,
) -> Res<(Vec<(String, i64)>, i64)> {
    let mut rows: Vec<(String, i64)> = tx.exec(&sql.leases_of, (key, key, now)).await?;
    let writers = match rows.pop() {
        Some((m, n)) if m.is_empty() => n,
        Some(other) => {
            rows.push(other);
            0
        }
        None => 0,
    };
    Ok((rows, writers))
}

/// Takes a semaphore's permit or a read/write lease on `key`, as the memory store does.
pub(super) async fn acquire_shared(
    conn: &mut Conn,
    sql: &Statements,
    key: &str,
    token: &str,
    kind: Kind,
    ttl_ms: u64,
    intent_ms: u64,
) -> Res<Attempt> {
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let (holder, at, now) = lock_row(&mut tx, sql, key).await?;
    if !holder.is_empty() && at > now {
        tx.rollback().await?;
        return Ok(Attempt::Conflict {
            held_as: HeldAs::Kind(Kind::Lock),
        });
    }
    let (mut members, writers) = leases(&mut tx, sql, key, now).await?;
    if members.iter().any(|(_, at)| *at <= now) {
        tx.exec_drop(&sql.leases_lapsed, (key, now)).await?;
        tx.exec_drop(&sql.writers_lapsed, (key, now)).await?;
        members.retain(|(_, at)| *at > now);
    }
    let member = kind.member(token);
    let expires_at = now.saturating_add(ms(ttl_ms));
    let renewal = members.iter().any(|(m, _)| *m == member);
    if !renewal
        && let Some((other, _)) = members.first()
        && !kind.agrees_with(tag_of(other))
    {
        tx.rollback().await?;
        return Ok(Attempt::Conflict {
            held_as: HeldAs::from_tag(tag_of(other)),
        });
    }
    let free = renewal
        || match kind {
            Kind::Write => members.is_empty(),
            Kind::Read => writers == 0 && !members.iter().any(|(m, _)| tag_of(m) == "w"),
            _ => members.len() < kind.limit() as usize,
        };
    if free {
        if kind == Kind::Write {
            tx.exec_drop(&sql.writer_withdraw, (key, member.as_str()))
                .await?;
        }
        // Inserted, or renewed: a re-sent acquire that landed.
        tx.exec_drop(&sql.lease_insert, (key, member.as_str(), expires_at))
            .await?;
        tx.exec_drop(&sql.row_grow, (expires_at, key)).await?;
        tx.commit().await?;
        return Ok(Attempt::Acquired { fence: None });
    }
    if intent_ms > 0 {
        tx.exec_drop(
            &sql.writer_intent,
            (key, member.as_str(), now.saturating_add(ms(intent_ms))),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Attempt::Held {
        remaining: members.iter().map(|(_, at)| left(at - now)).min(),
    })
}

/// Gives back a lease (and withdraws a waiting writer's intent).
pub(super) async fn release_shared(
    conn: &mut Conn,
    sql: &Statements,
    key: &str,
    member: &str,
) -> Res<Release> {
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let (row, now) = row_if_any(&mut tx, sql, key).await?;
    if tag_of(member) == "w" {
        tx.exec_drop(&sql.writer_withdraw, (key, member)).await?;
    }
    let (members, _) = leases(&mut tx, sql, key, now).await?;
    let live = members.iter().any(|(m, at)| m == member && *at > now);
    if members.iter().any(|(m, at)| m == member || *at <= now) {
        tx.exec_drop(&sql.lease_end, (key, member, now)).await?;
    }
    if row {
        let last = members
            .iter()
            .filter(|(m, at)| m != member && *at > now)
            .map(|(_, at)| *at)
            .max()
            .unwrap_or(0);
        tx.exec_drop(&sql.row_set, (last, key)).await?;
    }
    tx.commit().await?;
    Ok(if live {
        Release::Released
    } else {
        Release::Gone
    })
}

pub(super) async fn extend_shared(
    conn: &mut Conn,
    sql: &Statements,
    key: &str,
    member: &str,
    ttl_ms: u64,
) -> Res<bool> {
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let (_, now) = row_if_any(&mut tx, sql, key).await?;
    let expires_at = now.saturating_add(ms(ttl_ms));
    tx.exec_drop(&sql.lease_extend, (expires_at, key, member, now))
        .await?;
    let mut ok = tx.affected() > 0;
    if !ok {
        // Nothing changed: gone, or the same expiry as before (same ms).
        let live: Option<i64> = tx.exec_first(&sql.lease_live, (key, member, now)).await?;
        ok = live.unwrap_or(0) > 0;
    }
    if ok {
        tx.exec_drop(&sql.row_grow, (expires_at, key)).await?;
    }
    tx.commit().await?;
    Ok(ok)
}

pub(super) async fn remaining_shared(
    conn: &mut Conn,
    sql: &Statements,
    key: &str,
    member: &str,
) -> Res<Option<Duration>> {
    let at: Option<i64> = conn.exec_first(&sql.lease_remaining, (key, member)).await?;
    Ok(at.map(left))
}

/// How many hold `key` now: its lock, or its live leases.
pub(super) async fn holders(conn: &mut Conn, sql: &Statements, key: &str) -> Res<u64> {
    let n: Option<i64> = conn.exec_first(&sql.holders, (key, key)).await?;
    Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
}

/// Deletes every hold of `key`; whether any was live.
pub(super) async fn force_release(conn: &mut Conn, sql: &Statements, key: &str) -> Res<bool> {
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    row_if_any(&mut tx, sql, key).await?;
    let n: Option<i64> = tx.exec_first(&sql.holders, (key, key)).await?;
    tx.exec_drop(&sql.force_locks, (key,)).await?;
    tx.exec_drop(&sql.force_leases, (key,)).await?;
    tx.commit().await?;
    Ok(n.unwrap_or(0) > 0)
}

/// What holds `key`: the lock's token, fence and time left, else its leases' last expiry.
pub(super) struct Seen {
    pub(super) token: Option<String>,
    pub(super) fence: Option<u64>,
    pub(super) left: Option<Duration>,
}

pub(super) async fn inspect(conn: &mut Conn, sql: &Statements, key: &str) -> Res<Seen> {
    let row: Option<(String, Option<u64>, i64)> = conn.exec_first(&sql.inspect, (key,)).await?;
    Ok(match row {
        Some((token, fence, at)) => Seen {
            token: (!token.is_empty()).then_some(token),
            fence,
            left: Some(left(at)),
        },
        None => Seen {
            token: None,
            fence: None,
            left: None,
        },
    })
}

/// The keys held now that match a glob.
pub(super) async fn scan(conn: &mut Conn, sql: &Statements, pattern: &str) -> Res<Vec<String>> {
    conn.exec(&sql.scan, (like(pattern),)).await
}
