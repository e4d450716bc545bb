-- The SQLite store's schema, created on first use when missing (the store runs it itself;
-- it is here for those who create the file themselves).
-- Times are the host's wall clock, in milliseconds since the Unix epoch.
CREATE TABLE IF NOT EXISTS locks (
    key TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    fence INTEGER,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
-- A semaphore's permits and a read/write lock's leases: `member` is `<tag>:<token>`
-- (`s<permits>`, `r` or `w`).
CREATE TABLE IF NOT EXISTS leases (
    key TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, member)
) WITHOUT ROWID;
-- Writers waiting for a read/write lock: while one is live, no new reader gets in.
CREATE TABLE IF NOT EXISTS writers (
    key TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, member)
) WITHOUT ROWID;
-- The fencing counter: one row, only ever incremented.
CREATE TABLE IF NOT EXISTS fence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO fence (id, value) VALUES (1, 0);
