//! The journal's tables, and the version a file records.

pub(super) const SCHEMA_VERSION: i64 = 3;

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
";

/// The steps from an older file to [`SCHEMA_VERSION`]: the version each step leads to, and
/// its statements (each ends with `;`).
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    // Version 2 keeps each event's digest, to tell a redelivery from a reused id.
    (2, "ALTER TABLE events ADD COLUMN digest TEXT;"),
    // Version 3 records skips in the event's own row (and has partial indexes, see INDEXES).
    (3, "ALTER TABLE events ADD COLUMN skips TEXT;"),
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
