//! The statements' texts: the schema's DDL and every statement, with the schema written in.

/// The schema's DDL, `{schema}` standing for the schema's quoted name.
pub(super) const SCHEMA_SQL: &str = include_str!("schema.sql");

/// The statements, with the schema written in.
pub(super) struct Statements {
    pub(super) acquire_one: String,
    /// `acquire_one` for a queued waiter: refused, it marks the lock `contended` (so that
    /// its release is announced) and says how long the holder has left.
    pub(super) acquire_waiting: String,
    /// After a queued waiter's refused multi-key try: mark the others' locks contended.
    pub(super) contend: String,
    pub(super) acquire_many: String,
    /// Group commit: the takes of several single-key tries at once (`unnest` of keys,
    /// tokens, ttls; one take a key), answering the key and fence of each taken.
    pub(super) acquire_batch: String,
    pub(super) release: String,
    /// Group commit: several single-key releases at once (`unnest` of keys and tokens),
    /// answering key, token and liveness of each deleted.
    pub(super) release_batch: String,
    /// After a release that deleted less than every key: are the others someone else's?
    pub(super) foreign: String,
    pub(super) extend: String,
    pub(super) remaining: String,
    pub(super) lease_acquire: String,
    pub(super) lease_release: String,
    pub(super) lease_extend: String,
    pub(super) lease_remaining: String,
    pub(super) holders: String,
    pub(super) force_release: String,
    pub(super) inspect: String,
    pub(super) scan: String,
}

impl Statements {
    pub(super) fn new(s: &str) -> Self {
        let live = "expires_at > clock_timestamp()";
        // Whether an acquire may take the row it conflicts with: expired, or ours already.
        let take = "(l.expires_at <= clock_timestamp() OR l.token = excluded.token)";
        let ms = "* interval '1 millisecond'";
        Self {
            acquire_one: format!(
                "INSERT INTO {s}.locks AS l (key, token, fence, expires_at) \
                 SELECT $1, $2, nextval('{s}.fence'), clock_timestamp() + $3::bigint {ms} \
                 WHERE NOT EXISTS (SELECT 1 FROM {s}.leases WHERE key = $1 AND {live}) \
                 ON CONFLICT (key) DO UPDATE SET token = excluded.token, \
                 fence = excluded.fence, expires_at = excluded.expires_at \
                 WHERE l.expires_at <= clock_timestamp() OR l.token = excluded.token \
                 RETURNING fence"
            ),
            acquire_waiting: format!(
                "WITH taken AS (INSERT INTO {s}.locks AS l (key, token, fence, expires_at) \
                 SELECT $1, $2, nextval('{s}.fence'), clock_timestamp() + $3::bigint {ms} \
                 WHERE NOT EXISTS (SELECT 1 FROM {s}.leases WHERE key = $1 AND {live}) \
                 ON CONFLICT (key) DO UPDATE SET \
                 token = CASE WHEN {take} THEN excluded.token ELSE l.token END, \
                 fence = CASE WHEN {take} THEN excluded.fence ELSE l.fence END, \
                 expires_at = CASE WHEN {take} THEN excluded.expires_at ELSE l.expires_at END, \
                 contended = NOT ({take}) \
                 RETURNING token = $2 AS ours, fence, greatest(0, \
                 (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint) AS left_ms) \
                 SELECT coalesce(t.ours, false), t.fence, t.left_ms, \
                 EXISTS (SELECT 1 FROM {s}.leases WHERE key = $1 AND {live}) \
                 FROM (SELECT 1) AS one LEFT JOIN taken AS t ON true"
            ),
            acquire_many: format!(
                "INSERT INTO {s}.locks AS l (key, token, fence, expires_at) \
                 SELECT k, $2, nextval('{s}.fence'), clock_timestamp() + $3::bigint {ms} \
                 FROM unnest($1::text[]) AS k \
                 WHERE NOT EXISTS (SELECT 1 FROM {s}.leases WHERE key = k AND {live}) \
                 ON CONFLICT (key) DO UPDATE SET token = excluded.token, \
                 fence = excluded.fence, expires_at = excluded.expires_at \
                 WHERE l.expires_at <= clock_timestamp() OR l.token = excluded.token \
                 RETURNING fence"
            ),
            acquire_batch: format!(
                "INSERT INTO {s}.locks AS l (key, token, fence, expires_at) \
                 SELECT u.key, u.token, nextval('{s}.fence'), \
                 clock_timestamp() + u.ttl {ms} \
                 FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(key, token, ttl) \
                 WHERE NOT EXISTS (SELECT 1 FROM {s}.leases AS e WHERE e.key = u.key \
                 AND e.expires_at > clock_timestamp()) \
                 ON CONFLICT (key) DO UPDATE SET token = excluded.token, \
                 fence = excluded.fence, expires_at = excluded.expires_at \
                 WHERE l.expires_at <= clock_timestamp() OR l.token = excluded.token \
                 RETURNING key, fence"
            ),
            release_batch: format!(
                "WITH d AS (DELETE FROM {s}.locks WHERE (key, token) IN \
                 (SELECT * FROM unnest($1::text[], $2::text[])) \
                 RETURNING key, token, {live} AS live, contended) \
                 SELECT key, token, live, \
                 CASE WHEN live AND contended THEN pg_notify($3, key)::text END FROM d"
            ),
            contend: format!(
                "UPDATE {s}.locks SET contended = true WHERE key = ANY($1::text[]) \
                 AND token <> $2 AND {live}"
            ),
            // `NOTIFY` serialises committing transactions on a global lock: a release is
            // announced only when a waiter marked the lock contended.
            release: format!(
                "WITH d AS (DELETE FROM {s}.locks WHERE key = ANY($1::text[]) AND token = $2 \
                 RETURNING key, {live} AS live, contended) \
                 SELECT live, CASE WHEN live AND contended THEN pg_notify($3, key)::text END \
                 FROM d"
            ),
            foreign: format!(
                "SELECT count(*) FROM {s}.locks WHERE key = ANY($1::text[]) AND token <> $2 \
                 AND {live}"
            ),
            extend: format!(
                "UPDATE {s}.locks SET expires_at = clock_timestamp() + $3::bigint {ms} \
                 WHERE key = ANY($1::text[]) AND token = $2 AND {live} \
                 AND (SELECT count(*) FROM {s}.locks WHERE key = ANY($1::text[]) \
                 AND token = $2 AND {live}) = cardinality($1::text[])"
            ),
            remaining: format!(
                "SELECT count(*), \
                 min((extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint) \
                 FROM {s}.locks WHERE key = ANY($1::text[]) AND token = $2 AND {live}"
            ),
            lease_acquire: format!("SELECT {s}.acquire_lease($1, $2, $3, $4, $5)"),
            lease_release: format!(
                "WITH d AS (DELETE FROM {s}.leases WHERE key = $1 AND lease = $2 \
                 RETURNING {live} AS live), \
                 w AS (DELETE FROM {s}.writers WHERE key = $1 AND lease = $2 AND $4 \
                 RETURNING 1) \
                 SELECT (SELECT count(*) FROM d WHERE live), (SELECT count(*) FROM w), \
                 pg_notify($3, $1)::text"
            ),
            lease_extend: format!(
                "UPDATE {s}.leases SET expires_at = clock_timestamp() + $3::bigint {ms} \
                 WHERE key = $1 AND lease = $2 AND {live}"
            ),
            lease_remaining: format!(
                "SELECT (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint \
                 FROM {s}.leases WHERE key = $1 AND lease = $2 AND {live}"
            ),
            holders: format!(
                "SELECT (SELECT count(*) FROM {s}.locks WHERE key = $1 AND {live}) \
                 + (SELECT count(*) FROM {s}.leases WHERE key = $1 AND {live})"
            ),
            force_release: format!(
                "WITH a AS (DELETE FROM {s}.locks WHERE key = $1 RETURNING {live} AS live), \
                 b AS (DELETE FROM {s}.leases WHERE key = $1 RETURNING {live} AS live) \
                 SELECT (SELECT count(*) FROM a WHERE live) \
                 + (SELECT count(*) FROM b WHERE live), pg_notify($2, $1)::text"
            ),
            inspect: format!(
                "SELECT token, fence, \
                 (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint, \
                 (SELECT count(*) FROM pg_stat_activity WHERE query = $2) \
                 FROM {s}.locks WHERE key = $1 AND {live} \
                 UNION ALL SELECT NULL, NULL, \
                 (extract(epoch FROM max(expires_at) - clock_timestamp()) * 1000)::bigint, \
                 (SELECT count(*) FROM pg_stat_activity WHERE query = $2) \
                 FROM {s}.leases WHERE key = $1 AND {live} HAVING count(*) > 0"
            ),
            scan: format!(
                "SELECT key FROM {s}.locks WHERE key LIKE $1 AND {live} \
                 UNION SELECT key FROM {s}.leases WHERE key LIKE $1 AND {live} ORDER BY 1"
            ),
        }
    }
}
