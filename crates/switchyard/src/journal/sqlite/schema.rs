//! The journal's tables, and the version a file records.

pub(super) const SCHEMA_VERSION: i64 = 4;

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
    digest TEXT,
    -- The routes that skipped the event, a JSON array of [route, reason], written with its
    -- end (version 3; older files keep their skips as decision rows).
    skips TEXT
);
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
-- The flow runs routes created, followed to their end (version 4).
CREATE TABLE IF NOT EXISTS runs (
    flow_run_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    route TEXT NOT NULL,
    flow_run_name TEXT NOT NULL,
    deployment TEXT NOT NULL,
    state_type TEXT NOT NULL,
    state_name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    next_check_at INTEGER NOT NULL,
    ended_at INTEGER,
    -- The route's concurrency key for the event (`concurrency.key`), if it has one.
    concurrency_key TEXT
);
CREATE INDEX IF NOT EXISTS runs_due ON runs (next_check_at) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS runs_event ON runs (event_id);
CREATE INDEX IF NOT EXISTS runs_keyed ON runs (route, concurrency_key) WHERE ended_at IS NULL AND concurrency_key IS NOT NULL;
";

/// The steps from an older file to [`SCHEMA_VERSION`]: the version each step leads to, and
/// its statements (each ends with `;`).
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    // Version 2 keeps each event's digest, to tell a redelivery from a reused id.
    (2, "ALTER TABLE events ADD COLUMN digest TEXT;"),
    // Version 3 records skips in the event's own row (and has partial indexes, see INDEXES).
    (3, "ALTER TABLE events ADD COLUMN skips TEXT;"),
    // Version 4 follows runs to their end: the `runs` table, which SCHEMA creates (runs
    // created before it are not followed).
    (4, ""),
];

/// The indexes on `events`, created after the migrations (they name columns an older file
/// gains there). Both are partial: an event is in `events_pending` while it is pending (the
/// sweep, recovery and the pending count walk it) and in `events_retired` once it is done
/// (retention walks it oldest first), so accepting and finishing an event touch one entry
/// each, where the full `(status, ...)` indexes of version 2 moved two entries per finish.
pub(super) const INDEXES: &str = "
DROP INDEX IF EXISTS events_status;
DROP INDEX IF EXISTS events_done;
DROP INDEX IF EXISTS events_finished;
CREATE INDEX IF NOT EXISTS events_pending ON events (accepted_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS events_retired ON events (finished_at) WHERE status = 'done';
";
