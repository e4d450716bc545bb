//! The statements' texts, with the database's tables written in. `{keys}` in a statement
//! stands for a list of `?`, one per key ([`Statements::keys`]).

/// The schema's DDL, `{db}` standing for the database's quoted name.
pub(super) const SCHEMA_SQL: &str = include_str!("schema.sql");

/// The server's clock in ms since the Unix epoch, the same in every session whatever its
/// time zone (fixed for the length of one statement).
pub(super) const NOW: &str =
    "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)";

/// The statements, with the tables written in.
pub(super) struct Statements {
    /// The lock and fence tables' names, for a batch's texts ([`Statements::batch_takes`]).
    locks: String,
    fence: String,
    /// What a take does to a row of its key that exists (`ON DUPLICATE KEY UPDATE ...`).
    take_update: String,
    /// `SELECT now`, in a transaction's first statement.
    pub(super) now: String,
    /// Takes one key for a token (params: key, token, ttl_ms): 1 row inserted, 2 taken
    /// over, 0 held by someone (or already ours with the same expiry).
    pub(super) take: String,
    /// After a take that changed nothing: whose the key is (params: key).
    pub(super) probe: String,
    /// A live lease's tag of a key held by leases (params: key).
    pub(super) lease_tag: String,
    pub(super) fence_next: String,
    /// Sets the fence of the keys taken (params: fence, keys..., token).
    pub(super) set_fence: String,
    /// Deletes a token's live rows (params: keys..., token).
    pub(super) release: String,
    /// Deletes a token's rows, live or not (params: keys..., token).
    pub(super) release_any: String,
    /// Live rows of the keys that are not the token's (params: keys..., token).
    pub(super) foreign: String,
    /// (params: ttl_ms, keys..., token)
    pub(super) extend: String,
    /// How many of the keys the token holds, and the least time left (params: keys...,
    /// token); `FOR UPDATE` in `remaining_locked`.
    pub(super) remaining: String,
    pub(super) remaining_locked: String,
    /// Makes sure a key's row exists, and locks it (params: key).
    pub(super) row_lock: String,
    /// The key's row, locked (params: key): token, expires_at, now.
    pub(super) row: String,
    /// Delete the key's lapsed leases, writers (params: key, now).
    pub(super) leases_lapsed: String,
    pub(super) writers_lapsed: String,
    /// The key's leases (member, expires_at), then `('', live writers)` (params: key,
    /// key, now).
    pub(super) leases_of: String,
    /// Deletes a lease, and the key's lapsed ones (params: key, member, now).
    pub(super) lease_end: String,
    /// Sets the key's row to its leases' latest expiry (params: expiry, key).
    pub(super) row_set: String,
    pub(super) writer_withdraw: String,
    pub(super) lease_insert: String,
    pub(super) writer_intent: String,
    /// The key's row after a lease was added (params: expiry, key).
    pub(super) row_grow: String,
    pub(super) lease_extend: String,
    pub(super) lease_live: String,
    pub(super) lease_remaining: String,
    pub(super) holders: String,
    pub(super) force_locks: String,
    pub(super) force_leases: String,
    pub(super) inspect: String,
    pub(super) scan: String,
}

impl Statements {
    pub(super) fn new(db: &str) -> Self {
        let locks = format!("{db}.locked_locks");
        let leases = format!("{db}.locked_leases");
        let writers = format!("{db}.locked_writers");
        let fence = format!("{db}.locked_fence");
        // Whether a take may have the row: expired, or the caller's already.
        let free = format!("(expires_at <= {NOW} OR token = VALUES(token))");
        let take_update = format!(
            "ON DUPLICATE KEY UPDATE fence = IF({free}, NULL, fence), \
             token = IF({free}, VALUES(token), token), \
             expires_at = IF(token = VALUES(token), VALUES(expires_at), expires_at)"
        );
        Self {
            now: format!("SELECT {NOW}"),
            take: format!(
                "INSERT INTO {locks} (k, token, fence, expires_at) VALUES (?, ?, NULL, {NOW} + ?) \
                 {take_update}"
            ),
            probe: format!("SELECT token, expires_at - {NOW} FROM {locks} WHERE k = ?"),
            lease_tag: format!(
                "SELECT member FROM {leases} WHERE k = ? AND expires_at > {NOW} LIMIT 1"
            ),
            fence_next: format!(
                "UPDATE {fence} SET value = LAST_INSERT_ID(value + 1) WHERE id = 1"
            ),
            set_fence: format!("UPDATE {locks} SET fence = ? WHERE k IN ({{keys}}) AND token = ?"),
            release: format!(
                "DELETE FROM {locks} WHERE k IN ({{keys}}) AND token = ? AND expires_at > {NOW}"
            ),
            release_any: format!("DELETE FROM {locks} WHERE k IN ({{keys}}) AND token = ?"),
            foreign: format!(
                "SELECT COUNT(*) FROM {locks} WHERE k IN ({{keys}}) AND token <> ? \
                 AND expires_at > {NOW}"
            ),
            extend: format!(
                "UPDATE {locks} SET expires_at = {NOW} + ? WHERE k IN ({{keys}}) AND token = ? \
                 AND expires_at > {NOW}"
            ),
            remaining: format!(
                "SELECT COUNT(*), MIN(expires_at) - {NOW} FROM {locks} WHERE k IN ({{keys}}) \
                 AND token = ? AND expires_at > {NOW}"
            ),
            remaining_locked: format!(
                "SELECT k FROM {locks} WHERE k IN ({{keys}}) AND token = ? \
                 AND expires_at > {NOW} FOR UPDATE"
            ),
            row_lock: format!(
                "INSERT INTO {locks} (k, token, fence, expires_at) VALUES (?, '', NULL, 0) \
                 ON DUPLICATE KEY UPDATE k = k"
            ),
            row: format!("SELECT token, expires_at, {NOW} FROM {locks} WHERE k = ? FOR UPDATE"),
            leases_lapsed: format!("DELETE FROM {leases} WHERE k = ? AND expires_at <= ?"),
            writers_lapsed: format!("DELETE FROM {writers} WHERE k = ? AND expires_at <= ?"),
            leases_of: format!(
                "SELECT member, expires_at FROM {leases} WHERE k = ? UNION ALL \
                 SELECT '', COUNT(*) FROM {writers} WHERE k = ? AND expires_at > ?"
            ),
            lease_end: format!(
                "DELETE FROM {leases} WHERE k = ? AND (member = ? OR expires_at <= ?)"
            ),
            row_set: format!("UPDATE {locks} SET expires_at = ? WHERE k = ? AND token = ''"),
            writer_withdraw: format!("DELETE FROM {writers} WHERE k = ? AND member = ?"),
            lease_insert: format!(
                "INSERT INTO {leases} (k, member, expires_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)"
            ),
            writer_intent: format!(
                "INSERT INTO {writers} (k, member, expires_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)"
            ),
            row_grow: format!(
                "UPDATE {locks} SET fence = NULL, \
                 expires_at = GREATEST(IF(token = '', expires_at, 0), ?), token = '' WHERE k = ?"
            ),
            lease_extend: format!(
                "UPDATE {leases} SET expires_at = ? WHERE k = ? AND member = ? AND expires_at > ?"
            ),
            lease_live: format!(
                "SELECT COUNT(*) FROM {leases} WHERE k = ? AND member = ? AND expires_at > ?"
            ),
            lease_remaining: format!(
                "SELECT expires_at - {NOW} FROM {leases} WHERE k = ? AND member = ? \
                 AND expires_at > {NOW}"
            ),
            holders: format!(
                "SELECT (SELECT COUNT(*) FROM {locks} WHERE k = ? AND token <> '' \
                 AND expires_at > {NOW}) + (SELECT COUNT(*) FROM {leases} WHERE k = ? \
                 AND expires_at > {NOW})"
            ),
            force_locks: format!("DELETE FROM {locks} WHERE k = ?"),
            force_leases: format!("DELETE FROM {leases} WHERE k = ?"),
            inspect: format!(
                "SELECT token, fence, expires_at - {NOW} FROM {locks} WHERE k = ? \
                 AND expires_at > {NOW}"
            ),
            scan: format!(
                "SELECT k FROM {locks} WHERE k LIKE ? ESCAPE '!' AND expires_at > {NOW} ORDER BY k"
            ),
            locks,
            fence,
            take_update,
        }
    }

    /// A batch's releases (group commit, `batch`), in key order: in a transaction of their
    /// own, their rows locked and read (tagged `r`: key, token, live), then deleted where
    /// they are the token's. Empty when there are none.
    pub(super) fn batch_gives(&self, gives: &[BatchGive<'_>]) -> Vec<String> {
        let locks = &self.locks;
        if gives.is_empty() {
            return Vec::new();
        }
        let keys = list(gives.iter().map(|g| hex(g.key)));
        let pairs = list(
            gives
                .iter()
                .map(|g| format!("({}, {})", hex(g.key), hex(g.token))),
        );
        vec![
            "START TRANSACTION".to_owned(),
            format!(
                "SELECT 'r', k, token, expires_at > {NOW} FROM {locks} WHERE k IN ({keys}) \
                 FOR UPDATE"
            ),
            format!("DELETE FROM {locks} WHERE k IN ({keys}) AND (k, token) IN ({pairs})"),
            "COMMIT".to_owned(),
        ]
    }

    /// A batch's takes, in key order, a key at most once: one multi-row `INSERT` (the
    /// single take's guard), then their rows read (tagged `t`: key, token, ms left). With
    /// fenced takes, in a transaction left open for [`Statements::batch_fence`]. Empty
    /// when there are none.
    pub(super) fn batch_takes(&self, takes: &[BatchTake<'_>]) -> Vec<String> {
        let locks = &self.locks;
        if takes.is_empty() {
            return Vec::new();
        }
        let mut sql = Vec::new();
        if takes.iter().any(|t| t.fencing) {
            sql.push("START TRANSACTION".to_owned());
        }
        let keys = list(takes.iter().map(|t| hex(t.key)));
        let rows = list(takes.iter().map(|t| {
            let ttl = i64::try_from(t.ttl_ms).unwrap_or(i64::MAX);
            format!("({}, {}, NULL, {NOW} + {ttl})", hex(t.key), hex(t.token))
        }));
        sql.push(format!(
            "INSERT INTO {locks} (k, token, fence, expires_at) VALUES {rows} {}",
            self.take_update
        ));
        sql.push(format!(
            "SELECT 't', k, token, expires_at - {NOW} FROM {locks} WHERE k IN ({keys})"
        ));
        sql
    }

    /// Ends a batch's transaction that had fenced takes: the fences of the keys `won` (in
    /// key order) from one rise of the counter, the last one read back (tagged `f`).
    pub(super) fn batch_fence(&self, won: &[&str]) -> Vec<String> {
        let (locks, fence) = (&self.locks, &self.fence);
        if won.is_empty() {
            return vec!["COMMIT".to_owned()];
        }
        let n = won.len();
        let keys = list(won.iter().map(|k| hex(k)));
        let cases: String = won
            .iter()
            .enumerate()
            .map(|(i, k)| format!(" WHEN {} THEN LAST_INSERT_ID() - {}", hex(k), n - 1 - i))
            .collect();
        vec![
            format!("UPDATE {fence} SET value = LAST_INSERT_ID(value + {n}) WHERE id = 1"),
            format!("UPDATE {locks} SET fence = CASE k{cases} END WHERE k IN ({keys})"),
            "SELECT 'f', LAST_INSERT_ID()".to_owned(),
            "COMMIT".to_owned(),
        ]
    }

    /// `sql` with its `{keys}` list for `n` keys.
    pub(super) fn keys(sql: &str, n: usize) -> String {
        let list = vec!["?"; n.max(1)].join(", ");
        sql.replace("{keys}", &list)
    }
}

/// A take in a batch ([`Statements::batch_takes`]).
pub(super) struct BatchTake<'a> {
    pub(super) key: &'a str,
    pub(super) token: &'a str,
    pub(super) ttl_ms: u64,
    pub(super) fencing: bool,
}

/// A release in a batch ([`Statements::batch_gives`]).
pub(super) struct BatchGive<'a> {
    pub(super) key: &'a str,
    pub(super) token: &'a str,
}

/// A string's bytes as a hexadecimal literal (`X'6b31'`): a batch goes as text (several
/// statements in one round trip), its keys and tokens written this way, which nothing in
/// them can break out of.
fn hex(s: &str) -> String {
    let mut out = String::with_capacity(3 + 2 * s.len());
    out.push_str("X'");
    for b in s.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('\'');
    out
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// A glob (`*`, `?`) as a `LIKE` pattern with `!` as its escape.
pub(super) fn like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '!' => {
                out.push('!');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_becomes_like_and_keys_become_a_list() {
        assert_eq!(like("lock:order:*"), "lock:order:%");
        assert_eq!(like("a?b_c%!"), "a_b!_c!%!!");
        assert_eq!(Statements::keys("k IN ({keys})", 3), "k IN (?, ?, ?)");
    }

    #[test]
    fn batch_writes_values_as_hex_and_opens_a_transaction_only_when_needed() {
        assert_eq!(hex("k'1"), "X'6b2731'");
        assert_eq!(hex(""), "X''");
        let sql = Statements::new("`db`");
        let take = |fencing| BatchTake {
            key: "a",
            token: "t",
            ttl_ms: 500,
            fencing,
        };
        let plain = sql.batch_takes(&[take(false)]).join("; ");
        assert!(!plain.contains("START TRANSACTION") && !plain.contains("COMMIT"));
        assert!(plain.contains("(X'61', X'74', NULL, "), "{plain}");
        let give = BatchGive {
            key: "b",
            token: "t",
        };
        let gives = sql.batch_gives(&[give]).join("; ");
        assert!(gives.starts_with("START TRANSACTION;") && gives.ends_with("COMMIT"));
        assert!(gives.contains("(k, token) IN ((X'62', X'74'))"), "{gives}");
        assert!(sql.batch_gives(&[]).is_empty() && sql.batch_takes(&[]).is_empty());
        let fenced = sql.batch_takes(&[take(true)]).join("; ");
        assert!(fenced.starts_with("START TRANSACTION;") && !fenced.ends_with("COMMIT"));
        assert_eq!(sql.batch_fence(&[]), ["COMMIT"]);
        let fences = sql.batch_fence(&["a", "b"]).join("; ");
        assert!(fences.contains("LAST_INSERT_ID(value + 2)"), "{fences}");
        assert!(
            fences.contains(
                "WHEN X'61' THEN LAST_INSERT_ID() - 1 WHEN X'62' THEN LAST_INSERT_ID() - 0"
            ),
            "{fences}"
        );
    }
}
