-- The PostgreSQL store's schema. `locked` creates it on first use when missing; to run it
-- as a migration instead, replace {schema} with the schema's name (default "locked").
CREATE SCHEMA IF NOT EXISTS {schema};

-- One row per held lock. A row whose expires_at has passed is free: the next acquire
-- takes it over (ON CONFLICT ... DO UPDATE ... WHERE expires_at <= clock_timestamp()).
-- `contended`: a waiter was refused since the holder took it, so its release is announced
-- (NOTIFY serialises commits; releases no one waits for skip it).
CREATE TABLE IF NOT EXISTS {schema}.locks (
    key        text        PRIMARY KEY,
    token      text        NOT NULL,
    fence      bigint      NOT NULL,
    expires_at timestamptz NOT NULL,
    contended  boolean     NOT NULL DEFAULT false
);

-- Fencing tokens: every acquisition takes the next value, so they rise strictly per store.
CREATE SEQUENCE IF NOT EXISTS {schema}.fence;

-- Semaphore permits and read/write leases: one row per lease, `tag:token` (tag `s3`: a
-- permit of a 3-permit semaphore; `r` a reader; `w` the writer).
CREATE TABLE IF NOT EXISTS {schema}.leases (
    key        text        NOT NULL,
    lease      text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (key, lease)
);

-- Writers waiting for a read/write lock: while one waits, no new reader is let in.
CREATE TABLE IF NOT EXISTS {schema}.writers (
    key        text        NOT NULL,
    lease      text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (key, lease)
);

-- Takes a lease of key k, atomically (a transaction-scoped advisory lock serialises the
-- leases of one key; it ends with the statement, so it cannot leak). Answers 'acquired',
-- 'held:<ms until the soonest lease lapses>', or 'conflict:<tag>' when the key is held as
-- another kind ('lock' for a lock).
CREATE OR REPLACE FUNCTION {schema}.acquire_lease(
    k text, m text, ttl_ms bigint, lim integer, intent_ms bigint
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    at    timestamptz := clock_timestamp();
    tag   text := split_part(m, ':', 1);
    rw    boolean := split_part(m, ':', 1) IN ('r', 'w');
    other text;
    n     bigint;
    free  boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('locked lease ' || k, 0));
    IF EXISTS (SELECT 1 FROM {schema}.locks WHERE key = k AND expires_at > at) THEN
        RETURN 'conflict:lock';
    END IF;
    DELETE FROM {schema}.leases WHERE key = k AND expires_at <= at;
    DELETE FROM {schema}.writers WHERE key = k AND expires_at <= at;
    IF EXISTS (SELECT 1 FROM {schema}.leases WHERE key = k AND lease = m) THEN
        -- A re-sent acquire that landed.
        UPDATE {schema}.leases SET expires_at = at + ttl_ms * interval '1 millisecond'
            WHERE key = k AND lease = m;
        RETURN 'acquired';
    END IF;
    SELECT count(*) INTO n FROM {schema}.leases WHERE key = k;
    SELECT split_part(lease, ':', 1) INTO other FROM {schema}.leases WHERE key = k
        ORDER BY lease LIKE 'w:%' DESC LIMIT 1;
    IF other IS NOT NULL AND NOT ((rw AND other IN ('r', 'w')) OR other = tag) THEN
        RETURN 'conflict:' || other;
    END IF;
    IF tag = 'w' THEN
        free := n = 0;
    ELSIF tag = 'r' THEN
        free := other IS DISTINCT FROM 'w'
            AND NOT EXISTS (SELECT 1 FROM {schema}.writers WHERE key = k);
    ELSE
        free := n < lim;
    END IF;
    IF free THEN
        INSERT INTO {schema}.leases VALUES (k, m, at + ttl_ms * interval '1 millisecond');
        DELETE FROM {schema}.writers WHERE key = k AND lease = m;
        RETURN 'acquired';
    END IF;
    IF intent_ms > 0 THEN
        INSERT INTO {schema}.writers VALUES (k, m, at + intent_ms * interval '1 millisecond')
            ON CONFLICT (key, lease) DO UPDATE SET expires_at = excluded.expires_at;
    END IF;
    RETURN 'held:' || coalesce((SELECT greatest(0, (extract(epoch FROM min(expires_at) - at)
        * 1000)::bigint) FROM {schema}.leases WHERE key = k), 0);
END
$$;
