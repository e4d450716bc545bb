-- The MySQL/MariaDB store's tables. `locked` creates them on first use when missing (and
-- the database too); to run this as a migration instead, replace {db} with the database's
-- name (default: the URL's database), and run each statement. InnoDB is required (row
-- locks and transactions). Times are the server's clock, in ms since the Unix epoch.

-- One row per key. A lock: its holder's token, fence and expiry; a row whose expires_at
-- has passed is free, and the next acquire takes it over. A key held by leases (a
-- semaphore or a read/write lock): token '' and the latest expiry of its live leases, so
-- that a lock never takes a key that has leases. Every change to a key's leases locks
-- this row first: it serialises the key.
CREATE TABLE IF NOT EXISTS {db}.locked_locks (
    k          VARBINARY(2048) NOT NULL,
    token      VARBINARY(255)  NOT NULL,
    fence      BIGINT UNSIGNED NULL,
    expires_at BIGINT          NOT NULL,
    PRIMARY KEY (k)
) ENGINE = InnoDB;

-- Semaphore permits and read/write leases: one row per lease, `tag:token` (tag `s3`: a
-- permit of a 3-permit semaphore; `r` a reader; `w` the writer).
CREATE TABLE IF NOT EXISTS {db}.locked_leases (
    k          VARBINARY(2048) NOT NULL,
    member     VARBINARY(300)  NOT NULL,
    expires_at BIGINT          NOT NULL,
    PRIMARY KEY (k, member)
) ENGINE = InnoDB;

-- Writers waiting for a read/write lock: while one waits, no new reader is let in.
CREATE TABLE IF NOT EXISTS {db}.locked_writers (
    k          VARBINARY(2048) NOT NULL,
    member     VARBINARY(300)  NOT NULL,
    expires_at BIGINT          NOT NULL,
    PRIMARY KEY (k, member)
) ENGINE = InnoDB;

-- The fencing counter: one row, only ever incremented.
CREATE TABLE IF NOT EXISTS {db}.locked_fence (
    id    TINYINT         NOT NULL,
    value BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;

INSERT IGNORE INTO {db}.locked_fence (id, value) VALUES (1, 0);
