//! The journal's tables, and the version a file records.

pub(super) const SCHEMA_VERSION: i64 = 2;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    occurred TEXT NOT NULL,
    received TEXT NOT NULL,
    payload TEXT NOT NULL,
    labels TEXT NOT NULL,
    status TEXT NOT NULL,
    accepted_at INTEGER NOT NULL,
    finished_at INTEGER,
    digest TEXT
);
CREATE INDEX IF NOT EXISTS events_status ON events (status, accepted_at);
-- Retention walks finished events oldest first (the index that once had finished_at alone
-- made it sort the table).
CREATE INDEX IF NOT EXISTS events_done ON events (status, finished_at);
DROP INDEX IF EXISTS events_finished;
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    route TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT,
    flow_run_id TEXT,
    flow_run_name TEXT,
    deployment TEXT,
    replayed INTEGER,
    attempt INTEGER,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_event ON decisions (event_id);
CREATE TABLE IF NOT EXISTS route_states (
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    route TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (event_id, route)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    route TEXT NOT NULL,
    reason TEXT NOT NULL,
    retryable INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    at INTEGER NOT NULL,
    resolved_at INTEGER,
    resolution TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_open ON dead_letters (resolved_at, id);
CREATE INDEX IF NOT EXISTS dead_letters_event ON dead_letters (event_id);
CREATE TABLE IF NOT EXISTS trigger_states (
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (route, key)
);
";
