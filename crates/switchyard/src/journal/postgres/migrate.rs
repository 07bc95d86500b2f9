//! `switchyard journal migrate`: a SQLite journal's whole history into a PostgreSQL one, for a
//! user who outgrows one machine. Chunk by chunk, each chunk one transaction; an event already
//! in the target is left as it is (with its history), so a migration stopped halfway is
//! finished by running it again. Pending events arrive owned by no instance: the first
//! instance to start claims them.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};

use super::{PostgresStore, db};
use crate::journal::{JournalError, SqliteStore};

/// Events per transaction.
const CHUNK: i64 = 1_000;

/// What a migration copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Migrated {
    /// Events copied (already there: skipped, not counted).
    pub events: u64,
    /// Of them, pending.
    pub pending: u64,
    /// Events the target already held.
    pub skipped: u64,
    /// Decisions copied.
    pub decisions: u64,
    /// Dead letters copied.
    pub dead_letters: u64,
    /// Trigger buckets copied.
    pub trigger_states: u64,
}

type EventCols = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// One chunk of the file: its events (rowid first), then their history.
struct Chunk {
    events: Vec<EventCols>,
    decisions: Vec<DecisionCols>,
    route_states: Vec<(String, String, String)>,
    dead_letters: Vec<DeadCols>,
    runs: Vec<RunCols>,
}

/// A followed run's row: id, event, route, name, deployment, state type and name, created,
/// changed, next check, ended, concurrency key.
type RunCols = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
);

type DecisionCols = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<i64>,
    i64,
);

type DeadCols = (
    String,
    String,
    String,
    bool,
    i64,
    i64,
    Option<i64>,
    Option<String>,
);

fn read_chunk(c: &Connection, after: i64) -> rusqlite::Result<Chunk> {
    let mut st = c.prepare(
        "SELECT rowid, id, source, name, occurred, received, payload, labels, status, accepted_at,
                finished_at, digest, skips
         FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    )?;
    let events: Vec<EventCols> = st
        .query_map(params![after, CHUNK], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(Chunk {
            events,
            decisions: Vec::new(),
            route_states: Vec::new(),
            dead_letters: Vec::new(),
            runs: Vec::new(),
        });
    };
    let (lo, hi) = (first.0, last.0);
    let within = "(SELECT id FROM events WHERE rowid BETWEEN ?1 AND ?2)";
    let decisions = c
        .prepare(&format!(
            "SELECT event_id, route, kind, detail, flow_run_id, flow_run_name, deployment, replayed, attempt, at
             FROM decisions WHERE event_id IN {within} ORDER BY id"
        ))?
        .query_map(params![lo, hi], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get::<_, Option<i64>>(7)?.map(|v| v != 0),
                r.get(8)?,
                r.get(9)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let route_states = c
        .prepare(&format!(
            "SELECT event_id, route, status FROM route_states WHERE event_id IN {within}"
        ))?
        .query_map(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let dead_letters = c
        .prepare(&format!(
            "SELECT event_id, route, reason, retryable, attempts, at, resolved_at, resolution
             FROM dead_letters WHERE event_id IN {within} ORDER BY id"
        ))?
        .query_map(params![lo, hi], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, i64>(3)? != 0,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let runs = c
        .prepare(&format!(
            "SELECT flow_run_id, event_id, route, flow_run_name, deployment, state_type, state_name,
                    created_at, changed_at, next_check_at, ended_at, concurrency_key
             FROM runs WHERE event_id IN {within}"
        ))?
        .query_map(params![lo, hi], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Chunk {
        events,
        decisions,
        route_states,
        dead_letters,
        runs,
    })
}

impl PostgresStore {
    /// Copies the SQLite journal `file` into this one (see the module docs). The file is
    /// opened (and migrated to the current version) first; no instance should be running on it.
    pub async fn import_sqlite(&self, file: &Path) -> Result<Migrated, JournalError> {
        if !file.exists() {
            return Err(JournalError::Open {
                path: file.display().to_string(),
                message: "no such file".into(),
            });
        }
        drop(SqliteStore::open(file)?);
        let path = file.to_path_buf();
        let open = move || {
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| JournalError::Db(e.to_string()))
        };
        let mut done = Migrated::default();
        let mut after = 0i64;
        loop {
            let open = open.clone();
            let chunk = tokio::task::spawn_blocking(move || {
                open().and_then(|c| read_chunk(&c, after).map_err(db))
            })
            .await
            .map_err(db)??;
            let Some(last) = chunk.events.last() else {
                break;
            };
            after = last.0;
            self.write_chunk(&chunk, &mut done).await?;
        }
        let states: Vec<(String, String, String)> = tokio::task::spawn_blocking(move || {
            let c = open()?;
            let mut st = c
                .prepare("SELECT route, key, state FROM trigger_states")
                .map_err(db)?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)
        })
        .await
        .map_err(db)??;
        let c = self.client().await?;
        for (route, key, state) in &states {
            done.trigger_states += c
                .execute(
                    "INSERT INTO switchyard.trigger_states (route, key, state) VALUES ($1, $2, $3)
                     ON CONFLICT (route, key) DO NOTHING",
                    &[route, key, state],
                )
                .await
                .map_err(db)?;
        }
        Ok(done)
    }

    async fn write_chunk(&self, chunk: &Chunk, done: &mut Migrated) -> Result<(), JournalError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let insert = tx
            .prepare(
                "INSERT INTO switchyard.events (id, source, name, occurred, received, payload, labels, status,
                     accepted_at, finished_at, digest, skips)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(db)?;
        let mut fresh = std::collections::HashSet::new();
        for e in &chunk.events {
            let n = tx
                .execute(
                    &insert,
                    &[
                        &e.1, &e.2, &e.3, &e.4, &e.5, &e.6, &e.7, &e.8, &e.9, &e.10, &e.11, &e.12,
                    ],
                )
                .await
                .map_err(db)?;
            if n == 1 {
                fresh.insert(e.1.as_str());
                done.events += 1;
                if e.8 == "pending" {
                    done.pending += 1;
                }
            } else {
                done.skipped += 1;
            }
        }
        let decision = tx
            .prepare(
                "INSERT INTO switchyard.decisions (event_id, route, kind, detail, flow_run_id, flow_run_name,
                     deployment, replayed, attempt, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await
            .map_err(db)?;
        for d in chunk
            .decisions
            .iter()
            .filter(|d| fresh.contains(d.0.as_str()))
        {
            tx.execute(
                &decision,
                &[&d.0, &d.1, &d.2, &d.3, &d.4, &d.5, &d.6, &d.7, &d.8, &d.9],
            )
            .await
            .map_err(db)?;
            done.decisions += 1;
        }
        for s in chunk
            .route_states
            .iter()
            .filter(|s| fresh.contains(s.0.as_str()))
        {
            tx.execute(
                "INSERT INTO switchyard.route_states (event_id, route, status) VALUES ($1, $2, $3)
                 ON CONFLICT (event_id, route) DO NOTHING",
                &[&s.0, &s.1, &s.2],
            )
            .await
            .map_err(db)?;
        }
        for d in chunk
            .dead_letters
            .iter()
            .filter(|d| fresh.contains(d.0.as_str()))
        {
            tx.execute(
                "INSERT INTO switchyard.dead_letters (event_id, route, reason, retryable, attempts, at, resolved_at, resolution)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&d.0, &d.1, &d.2, &d.3, &d.4, &d.5, &d.6, &d.7],
            )
            .await
            .map_err(db)?;
            done.dead_letters += 1;
        }
        // The runs still followed go on being followed from PostgreSQL.
        for r in chunk.runs.iter().filter(|r| fresh.contains(r.1.as_str())) {
            tx.execute(
                "INSERT INTO switchyard.runs (flow_run_id, event_id, route, flow_run_name, deployment, state_type,
                     state_name, created_at, changed_at, next_check_at, ended_at, concurrency_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (flow_run_id) DO NOTHING",
                &[
                    &r.0, &r.1, &r.2, &r.3, &r.4, &r.5, &r.6, &r.7, &r.8, &r.9, &r.10, &r.11,
                ],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}
