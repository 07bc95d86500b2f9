//! The PostgreSQL journal's tables, in a schema of their own (`switchyard`), and the steps
//! that lead a database to the current version.

/// The version the steps below lead to.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Where the version is kept; made before any step runs.
pub(super) const META: &str = "
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE TABLE IF NOT EXISTS switchyard.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// The steps from an older database to [`SCHEMA_VERSION`]: the version each step leads to, and
/// its statements. Each runs in one transaction with the version it leads to.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
CREATE TABLE switchyard.instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Its lease, in seconds: it holds its events while heartbeat_at + lease is ahead.
    lease DOUBLE PRECISION NOT NULL
);
CREATE TABLE switchyard.events (
    id TEXT PRIMARY KEY,
    -- The order of acceptance, as SQLite's rowid: paging and retention go by it.
    seq BIGSERIAL NOT NULL UNIQUE,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    occurred TEXT NOT NULL,
    received TEXT NOT NULL,
    payload TEXT NOT NULL,
    labels TEXT NOT NULL,
    status TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    finished_at BIGINT,
    digest TEXT,
    skips TEXT,
    -- The instance that holds the event while it is pending (see switchyard.instances).
    owner TEXT
);
CREATE INDEX events_pending ON switchyard.events (accepted_at, seq) WHERE status = 'pending';
CREATE INDEX events_retired ON switchyard.events (finished_at, seq) WHERE status = 'done';
CREATE INDEX events_listed ON switchyard.events (accepted_at DESC, seq DESC);
CREATE TABLE switchyard.decisions (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES switchyard.events (id) ON DELETE CASCADE,
    route TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT,
    flow_run_id TEXT,
    flow_run_name TEXT,
    deployment TEXT,
    replayed BOOLEAN,
    attempt BIGINT,
    at BIGINT NOT NULL
);
CREATE INDEX decisions_event ON switchyard.decisions (event_id);
CREATE TABLE switchyard.route_states (
    event_id TEXT NOT NULL REFERENCES switchyard.events (id) ON DELETE CASCADE,
    route TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (event_id, route)
);
CREATE TABLE switchyard.dead_letters (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES switchyard.events (id) ON DELETE CASCADE,
    route TEXT NOT NULL,
    reason TEXT NOT NULL,
    retryable BOOLEAN NOT NULL,
    attempts BIGINT NOT NULL,
    at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolution TEXT
);
CREATE INDEX dead_letters_open ON switchyard.dead_letters (id) WHERE resolved_at IS NULL;
CREATE INDEX dead_letters_event ON switchyard.dead_letters (event_id);
CREATE TABLE switchyard.trigger_states (
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (route, key)
);
",
    ),
    // Version 2 follows the runs routes create to their end.
    (
        2,
        "
CREATE TABLE switchyard.runs (
    flow_run_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES switchyard.events (id) ON DELETE CASCADE,
    route TEXT NOT NULL,
    flow_run_name TEXT NOT NULL,
    deployment TEXT NOT NULL,
    state_type TEXT NOT NULL,
    state_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    changed_at BIGINT NOT NULL,
    next_check_at BIGINT NOT NULL,
    ended_at BIGINT,
    concurrency_key TEXT
);
CREATE INDEX runs_due ON switchyard.runs (next_check_at) WHERE ended_at IS NULL;
CREATE INDEX runs_event ON switchyard.runs (event_id);
CREATE INDEX runs_keyed ON switchyard.runs (route, concurrency_key) WHERE ended_at IS NULL AND concurrency_key IS NOT NULL;
",
    ),
];

/// The advisory lock migrations run under, so that instances starting together migrate once.
pub(super) const MIGRATION_LOCK: i64 = 0x5377_6974_6368_0001;

/// The advisory lock retention runs under: one instance at a time.
pub(super) const RETENTION_LOCK: i64 = 0x5377_6974_6368_0002;
