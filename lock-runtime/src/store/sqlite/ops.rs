//! Every operation as statements in one transaction: the same lease model as the memory
//! store's, on rows (`locks`, `leases`, `writers`), with times in the host's ms.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::{Attempt, HeldAs, Kind, Release};

/// One row of a statement prepared once per connection (the cache in `file.rs`).
fn query<T>(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    tx.prepare_cached(sql)?.query_row(params, row)
}

/// A statement prepared once per connection, run for the rows it changed.
fn exec(tx: &Transaction<'_>, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// A lease's member name's tag: `s3` of `s3:<token>`.
fn tag_of(member: &str) -> &str {
    member.split(':').next().unwrap_or(member)
}

fn left(expires_at: i64, now: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(expires_at - now).unwrap_or(0))
}

fn expiry(now: i64, ttl_ms: u64) -> i64 {
    now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
}

/// The tag of a live lease on `key`, if any.
fn shared_tag(tx: &Transaction<'_>, key: &str, now: i64) -> rusqlite::Result<Option<String>> {
    query(
        tx,
        "SELECT member FROM leases WHERE key = ?1 AND expires_at > ?2 LIMIT 1",
        params![key, now],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .map(|m| m.map(|m| tag_of(&m).to_owned()))
}

/// Takes every key for `token`, or none.
pub(super) fn acquire(
    tx: &Transaction<'_>,
    now: i64,
    keys: &[String],
    token: &str,
    ttl_ms: u64,
    fencing: bool,
) -> rusqlite::Result<Attempt> {
    if let ([key], false) = (keys, fencing) {
        // The common case in one statement: taken if free of leases and of live locks
        // of other tokens; what holds it is asked only when it was not taken.
        let taken = exec(
            tx,
            "INSERT INTO locks (key, token, fence, expires_at) \
             SELECT ?1, ?2, NULL, ?3 WHERE NOT EXISTS \
             (SELECT 1 FROM leases WHERE key = ?1 AND expires_at > ?4) \
             ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = NULL, \
             expires_at = excluded.expires_at \
             WHERE locks.expires_at <= ?4 OR locks.token = excluded.token",
            params![key, token, expiry(now, ttl_ms), now],
        )?;
        if taken == 1 {
            return Ok(Attempt::Acquired { fence: None });
        }
    }
    for key in keys {
        if let Some(tag) = shared_tag(tx, key, now)? {
            return Ok(Attempt::Conflict {
                held_as: HeldAs::from_tag(&tag),
            });
        }
    }
    let mut held: Option<i64> = None;
    for key in keys {
        let other: Option<i64> = query(
            tx,
            "SELECT expires_at FROM locks WHERE key = ?1 AND expires_at > ?2 \
                 AND token <> ?3",
            params![key, now, token],
            |r| r.get(0),
        )
        .optional()?;
        if let Some(at) = other {
            held = Some(held.map_or(at, |h| h.max(at)));
        }
    }
    if let Some(at) = held {
        return Ok(Attempt::Held {
            remaining: Some(left(at, now)),
        });
    }
    let fence = if fencing {
        let value: i64 = query(
            tx,
            "UPDATE fence SET value = value + 1 WHERE id = 1 RETURNING value",
            [],
            |r| r.get(0),
        )?;
        u64::try_from(value).ok()
    } else {
        None
    };
    let expires_at = expiry(now, ttl_ms);
    for key in keys {
        exec(
            tx,
            "INSERT INTO locks (key, token, fence, expires_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = excluded.fence, \
             expires_at = excluded.expires_at",
            params![
                key,
                token,
                fence.and_then(|f| i64::try_from(f).ok()),
                expires_at
            ],
        )?;
    }
    Ok(Attempt::Acquired { fence })
}

/// Deletes `token`'s rows of `keys`: released, gone (expired or never), or someone else's.
pub(super) fn release(
    tx: &Transaction<'_>,
    now: i64,
    keys: &[String],
    token: &str,
) -> rusqlite::Result<Release> {
    let mut outcome = Release::Released;
    for key in keys {
        // Ours, in one statement; whose it is otherwise is asked only then.
        let ours: Option<i64> = query(
            tx,
            "DELETE FROM locks WHERE key = ?1 AND token = ?2 RETURNING expires_at",
            params![key, token],
            |r| r.get(0),
        )
        .optional()?;
        let live_other = || -> rusqlite::Result<bool> {
            let at: Option<i64> = query(
                tx,
                "SELECT expires_at FROM locks WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
            Ok(at.is_some_and(|at| at > now))
        };
        match ours {
            Some(at) if at <= now && outcome == Release::Released => outcome = Release::Gone,
            Some(_) => {}
            None if live_other()? => outcome = Release::Foreign,
            None if outcome == Release::Released => outcome = Release::Gone,
            None => {}
        }
    }
    Ok(outcome)
}

/// The least time left on `token`'s keys, if it holds every one.
pub(super) fn remaining(
    tx: &Transaction<'_>,
    now: i64,
    keys: &[String],
    token: &str,
) -> rusqlite::Result<Option<std::time::Duration>> {
    let mut least: Option<i64> = None;
    for key in keys {
        let at: Option<i64> = query(
            tx,
            "SELECT expires_at FROM locks WHERE key = ?1 AND token = ?2 AND expires_at > ?3",
            params![key, token, now],
            |r| r.get(0),
        )
        .optional()?;
        match at {
            Some(at) => least = Some(least.map_or(at, |l| l.min(at))),
            None => return Ok(None),
        }
    }
    Ok(least.map(|at| left(at, now)))
}

/// Sets every key's expiry to `ttl_ms` from now, if `token` holds them all.
pub(super) fn extend(
    tx: &Transaction<'_>,
    now: i64,
    keys: &[String],
    token: &str,
    ttl_ms: u64,
) -> rusqlite::Result<bool> {
    if remaining(tx, now, keys, token)?.is_none() {
        return Ok(false);
    }
    for key in keys {
        exec(
            tx,
            "UPDATE locks SET expires_at = ?3 WHERE key = ?1 AND token = ?2",
            params![key, token, expiry(now, ttl_ms)],
        )?;
    }
    Ok(true)
}

/// Takes a semaphore's permit or a read/write lease on `key`, as the memory store does.
pub(super) fn acquire_shared(
    tx: &Transaction<'_>,
    now: i64,
    key: &str,
    token: &str,
    kind: Kind,
    ttl_ms: u64,
    intent_ms: u64,
) -> rusqlite::Result<Attempt> {
    let lock: Option<i64> = query(
        tx,
        "SELECT 1 FROM locks WHERE key = ?1 AND expires_at > ?2",
        params![key, now],
        |r| r.get(0),
    )
    .optional()?;
    if lock.is_some() {
        return Ok(Attempt::Conflict {
            held_as: HeldAs::Kind(Kind::Lock),
        });
    }
    exec(
        tx,
        "DELETE FROM leases WHERE key = ?1 AND expires_at <= ?2",
        params![key, now],
    )?;
    exec(
        tx,
        "DELETE FROM writers WHERE key = ?1 AND expires_at <= ?2",
        params![key, now],
    )?;
    let member = kind.member(token);
    let expires_at = expiry(now, ttl_ms);
    let renewed = exec(
        tx,
        "UPDATE leases SET expires_at = ?3 WHERE key = ?1 AND member = ?2",
        params![key, member, expires_at],
    )?;
    if renewed > 0 {
        return Ok(Attempt::Acquired { fence: None });
    }
    let members: Vec<(String, i64)> = {
        let mut q = tx.prepare_cached("SELECT member, expires_at FROM leases WHERE key = ?1")?;
        q.query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    if let Some((other, _)) = members.first()
        && !kind.agrees_with(tag_of(other))
    {
        return Ok(Attempt::Conflict {
            held_as: HeldAs::from_tag(tag_of(other)),
        });
    }
    let writers: i64 = query(
        tx,
        "SELECT count(*) FROM writers WHERE key = ?1",
        params![key],
        |r| r.get(0),
    )?;
    let free = match kind {
        Kind::Write => members.is_empty(),
        Kind::Read => writers == 0 && !members.iter().any(|(m, _)| tag_of(m) == "w"),
        _ => members.len() < kind.limit() as usize,
    };
    if free {
        exec(
            tx,
            "DELETE FROM writers WHERE key = ?1 AND member = ?2",
            params![key, member],
        )?;
        exec(
            tx,
            "INSERT INTO leases (key, member, expires_at) VALUES (?1, ?2, ?3)",
            params![key, member, expires_at],
        )?;
        return Ok(Attempt::Acquired { fence: None });
    }
    if intent_ms > 0 {
        exec(
            tx,
            "INSERT INTO writers (key, member, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key, member) DO UPDATE SET expires_at = excluded.expires_at",
            params![key, member, expiry(now, intent_ms)],
        )?;
    }
    Ok(Attempt::Held {
        remaining: members.iter().map(|(_, at)| left(*at, now)).min(),
    })
}

/// Gives back a lease (and withdraws a waiting writer's intent).
pub(super) fn release_shared(
    tx: &Transaction<'_>,
    now: i64,
    key: &str,
    member: &str,
) -> rusqlite::Result<Release> {
    exec(
        tx,
        "DELETE FROM writers WHERE key = ?1 AND member = ?2",
        params![key, member],
    )?;
    let live = exec(
        tx,
        "DELETE FROM leases WHERE key = ?1 AND member = ?2 AND expires_at > ?3",
        params![key, member, now],
    )?;
    exec(
        tx,
        "DELETE FROM leases WHERE key = ?1 AND member = ?2",
        params![key, member],
    )?;
    Ok(if live > 0 {
        Release::Released
    } else {
        Release::Gone
    })
}

/// A live lease's expiry, if there is one.
pub(super) fn lease_expiry(
    tx: &Transaction<'_>,
    now: i64,
    key: &str,
    member: &str,
) -> rusqlite::Result<Option<i64>> {
    query(
        tx,
        "SELECT expires_at FROM leases WHERE key = ?1 AND member = ?2 AND expires_at > ?3",
        params![key, member, now],
        |r| r.get(0),
    )
    .optional()
}

pub(super) fn extend_shared(
    tx: &Transaction<'_>,
    now: i64,
    key: &str,
    member: &str,
    ttl_ms: u64,
) -> rusqlite::Result<bool> {
    let n = exec(
        tx,
        "UPDATE leases SET expires_at = ?4 WHERE key = ?1 AND member = ?2 AND expires_at > ?3",
        params![key, member, now, expiry(now, ttl_ms)],
    )?;
    Ok(n > 0)
}

pub(super) fn remaining_shared(
    tx: &Transaction<'_>,
    now: i64,
    key: &str,
    member: &str,
) -> rusqlite::Result<Option<std::time::Duration>> {
    Ok(lease_expiry(tx, now, key, member)?.map(|at| left(at, now)))
}

/// How many hold `key` now: its lock, or its live leases.
pub(super) fn holders(tx: &Transaction<'_>, now: i64, key: &str) -> rusqlite::Result<u64> {
    let n: i64 = query(
        tx,
        "SELECT (SELECT count(*) FROM locks WHERE key = ?1 AND expires_at > ?2) \
         + (SELECT count(*) FROM leases WHERE key = ?1 AND expires_at > ?2)",
        params![key, now],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Deletes every hold of `key`; whether any was live.
pub(super) fn force_release(tx: &Transaction<'_>, now: i64, key: &str) -> rusqlite::Result<bool> {
    let held = holders(tx, now, key)? > 0;
    exec(tx, "DELETE FROM locks WHERE key = ?1", params![key])?;
    exec(tx, "DELETE FROM leases WHERE key = ?1", params![key])?;
    Ok(held)
}

/// What holds `key`: the lock's token, fence and expiry, else its leases' last expiry.
pub(super) struct Seen {
    pub(super) token: Option<String>,
    pub(super) fence: Option<u64>,
    pub(super) left: Option<std::time::Duration>,
}

pub(super) fn inspect(tx: &Transaction<'_>, now: i64, key: &str) -> rusqlite::Result<Seen> {
    let lock: Option<(String, Option<i64>, i64)> = query(
        tx,
        "SELECT token, fence, expires_at FROM locks WHERE key = ?1 AND expires_at > ?2",
        params![key, now],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?;
    if let Some((token, fence, at)) = lock {
        return Ok(Seen {
            token: Some(token),
            fence: fence.and_then(|f| u64::try_from(f).ok()),
            left: Some(left(at, now)),
        });
    }
    let last: Option<i64> = query(
        tx,
        "SELECT max(expires_at) FROM leases WHERE key = ?1 AND expires_at > ?2",
        params![key, now],
        |r| r.get(0),
    )?;
    Ok(Seen {
        token: None,
        fence: None,
        left: last.map(|at| left(at, now)),
    })
}

/// Every key held now.
pub(super) fn live_keys(tx: &Transaction<'_>, now: i64) -> rusqlite::Result<Vec<String>> {
    let mut q = tx.prepare_cached(
        "SELECT key FROM locks WHERE expires_at > ?1 \
         UNION SELECT key FROM leases WHERE expires_at > ?1 ORDER BY 1",
    )?;
    q.query_map(params![now], |r| r.get(0))?.collect()
}
