//! The SQLite journal: one file, WAL mode, a dedicated writer thread.
//!
//! Every operation is a job sent to the thread over a bounded channel. The thread takes all
//! jobs waiting (up to 1,024), runs them in one transaction (each that writes more than once in
//! a savepoint of its own), commits, and only then answers them: a caller never hears "stored"
//! before the commit (group commit keeps this cheap under load). WAL with
//! `synchronous=NORMAL` survives a killed process; only a power loss can take the last commits.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};
use switchyard_core::Event;
use tokio::sync::{mpsc, oneshot};

use super::faults::Faults;
use super::{
    Accepted, DeadLetter, Decision, EventDetail, EventFilter, EventStatus, EventSummary,
    FollowedRun, JournalError, PendingEvent, Retention, RunChanged, RunSeen, Settlement, Store,
    TriggerChange, with_skips,
};
use files::{identity, is_storage_error, prepare_file};
use rows::{
    DEAD_LETTER_COLUMNS, EVENT_COLUMNS, RUN_COLUMNS, dead_letter_from_row, event_from_row,
    record_settlement, run_from_row, settled_routes,
};
use schema::{INDEXES, MIGRATIONS, SCHEMA, SCHEMA_VERSION};
use writer::writer;

type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
/// A job runs against the connection, or is told why it cannot (`Err`), and answers with
/// whether it succeeded and how to reply once the commit outcome is known.
///
/// `savepoint`: whether the writer wraps it in a savepoint of its own, so a failure undoes
/// its writes without taking its batch neighbours with it. A job that writes with at most one
/// statement, or only reads, needs none (SQLite undoes a failed statement by itself), and a
/// savepoint costs a copy of every page the job changes.
pub(super) struct Job {
    savepoint: bool,
    work: Work,
}

/// What a job does: run against the connection (or hear why it cannot), and say whether it
/// succeeded and how to reply once the commit outcome is known.
type Work = Box<dyn FnOnce(Result<&Connection, &str>) -> (bool, Reply) + Send>;

/// The SQLite [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Job>,
    path: Arc<str>,
    file: std::path::PathBuf,
    identity: Option<(u64, u64)>,
    fault: Arc<Faults>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl SqliteStore {
    /// Opens (creating and migrating) the journal file.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let open_err = |message: String| JournalError::Open {
            path: path.display().to_string(),
            message,
        };
        prepare_file(path).map_err(|e| open_err(e.to_string()))?;
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        // SQLite quietly opens a file it cannot write read-only; a journal must take writes.
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            return Err(open_err(
                "the file is read-only; the journal must be writable".into(),
            ));
        }
        conn.execute_batch(
            // temp_store: the writer runs each job in a savepoint, and a savepoint's undo
            // pages (the statement journal) otherwise spill to a temporary file.
            // wal_autocheckpoint: a backstop only (128 MB of WAL); the checkpointer thread
            // copies the WAL into the file off the commit path (see `checkpoints`).
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 32768;",
        )
        .map_err(|e| open_err(e.to_string()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| open_err(e.to_string()))?;
        // Every statement the writer runs stays prepared (the default cache of 16 is smaller
        // than the set of statements, so they would be re-parsed in turn).
        conn.set_prepared_statement_cache_capacity(64);
        let version: Option<i64> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(|e| open_err(e.to_string()))?
            .and_then(|v| v.parse().ok());
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )
                .map_err(|e| open_err(e.to_string()))?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(open_err(format!(
                    "schema version {v} is newer than this switchyard understands ({SCHEMA_VERSION})"
                )));
            }
            Some(v) => {
                // Each step in its own transaction, so a file stopped halfway says where.
                for (to, step) in MIGRATIONS.iter().filter(|(to, _)| *to > v) {
                    conn.execute_batch(&format!(
                        "BEGIN; {step} UPDATE meta SET value = '{to}' WHERE key = 'schema_version'; COMMIT;"
                    ))
                    .map_err(|e| open_err(e.to_string()))?;
                }
            }
        }
        conn.execute_batch(INDEXES)
            .map_err(|e| open_err(e.to_string()))?;
        // A journal that cannot take a write is refused now, not on the first event.
        probe(&conn).map_err(|e| open_err(format!("cannot write to it: {e}")))?;
        let fault = Arc::new(Faults::default());
        let (tx, rx) = mpsc::channel::<Job>(1024);
        let writer_fault = Arc::clone(&fault);
        // The checkpointer runs while the writer does (it stops when this sender drops).
        let (alive, writer_alive) = std::sync::mpsc::channel::<()>();
        let finish_checkpoint = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked = Arc::clone(&finish_checkpoint);
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || {
                let _alive = alive;
                writer(conn, rx, &writer_fault, &asked);
            })
            .map_err(|e| open_err(e.to_string()))?;
        let file = path.to_path_buf();
        std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || checkpoints(&file, &writer_alive, &finish_checkpoint))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            tx,
            path: Arc::from(path.display().to_string()),
            file: path.to_path_buf(),
            identity: identity(path),
            fault,
        })
    }

    /// The file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `f` in the writer, in a savepoint of its own (see [`Job`]).
    async fn run<R, F>(&self, f: F) -> Result<R, JournalError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.submit(true, f).await
    }

    /// [`SqliteStore::run`] for a job that writes with at most one statement, or only reads:
    /// no savepoint.
    async fn run_single<R, F>(&self, f: F) -> Result<R, JournalError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.submit(false, f).await
    }

    async fn submit<R, F>(&self, savepoint: bool, f: F) -> Result<R, JournalError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (otx, orx) = oneshot::channel();
        let fault = Arc::clone(&self.fault);
        let work = Box::new(move |conn: Result<&Connection, &str>| {
            let result = match conn {
                Ok(conn) => f(conn).map_err(|e| {
                    if is_storage_error(&e) {
                        fault.set_transient(Some(e.to_string()));
                    }
                    e.to_string()
                }),
                Err(why) => Err(why.to_string()),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit_error| {
                let r = match (result, commit_error) {
                    (Ok(v), None) => Ok(v),
                    (Ok(_), Some(e)) => Err(JournalError::Db(format!("commit failed: {e}"))),
                    (Err(e), _) => Err(JournalError::Db(e)),
                };
                let _ = otx.send(r);
            });
            (ok, reply)
        });
        let job = Job { savepoint, work };
        self.tx.send(job).await.map_err(|_| JournalError::Closed)?;
        orx.await.map_err(|_| JournalError::Closed)?
    }

    /// Journals a received event: pending, or (`skipped`: every route skips it) finished
    /// with its skips. One statement (the insert), then reads only for an id already there.
    async fn insert(
        &self,
        e: &Event,
        skipped: Option<&[(String, String)]>,
    ) -> Result<Accepted, JournalError> {
        if let Some(why) = self.fault.get() {
            return Err(JournalError::Unavailable(why));
        }
        let payload = to_json(&e.payload)?;
        let labels = to_json(&e.labels)?;
        let skips = match skipped {
            Some(s) if !s.is_empty() => Some(to_json(&s)?),
            _ => None,
        };
        let digest = super::digest(&e.name, &payload);
        let (id, source, name) = (e.id.clone(), e.source.clone(), e.name.clone());
        let (occurred, received) = (e.occurred.to_rfc3339(), e.received.to_rfc3339());
        // The status is part of the statement, not a parameter: a partial index's condition
        // is then settled when the statement is prepared.
        let sql = match skipped {
            None => {
                "INSERT INTO events (id, source, name, occurred, received, payload, labels, status, accepted_at, digest, skips)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING"
            }
            Some(_) => {
                "INSERT INTO events (id, source, name, occurred, received, payload, labels, status, accepted_at, digest, finished_at, skips)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'done', ?8, ?9, ?8, ?10) ON CONFLICT (id) DO NOTHING"
            }
        };
        self.run_single(move |conn| {
            let inserted = conn.prepare_cached(sql)?.execute(params![
                id,
                source,
                name,
                occurred,
                received,
                payload,
                labels,
                now_ms(),
                digest,
                skips
            ])?;
            if inserted == 1 {
                return Ok(Accepted::New);
            }
            let (status, stored): (String, Option<String>) = conn
                .prepare_cached("SELECT status, digest FROM events WHERE id = ?1")?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if stored.is_some_and(|d| d != digest) {
                return Ok(Accepted::Conflict);
            }
            Ok(Accepted::Duplicate {
                status: EventStatus::parse(&status),
                settled: settled_routes(conn, &id)?,
            })
        })
        .await
    }
}

/// `v` as JSON text for the journal.
fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, JournalError> {
    serde_json::to_string(v).map_err(|x| JournalError::Db(x.to_string()))
}

/// Finished events deleted per retention job: small enough that a job takes about a
/// millisecond, so the accepts committed with it wait no longer than that.
const PRUNE_CHUNK: usize = 64;

/// The pause between two retention chunks: retention takes a bounded share of the writer
/// (at most ~20k deletions a second, well above any intake it has to keep up with).
const PRUNE_PAUSE: std::time::Duration = std::time::Duration::from_millis(3);

/// The newest finished event retention deletes, as `(finished_at, rowid)` (everything up to
/// it in that order goes), or `None` when nothing is past the retention. Read on a read-only
/// connection of its own.
fn prune_bound(file: &Path, retention: Retention) -> rusqlite::Result<Option<(i64, i64)>> {
    let conn = Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let age = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let by_age = (now_ms().saturating_sub(age), i64::MAX);
    // The newest event beyond the `max_events` newest.
    let by_count: Option<(i64, i64)> = conn
        .query_row(
            "SELECT finished_at, rowid FROM events WHERE status = 'done'
             ORDER BY finished_at DESC, rowid DESC LIMIT 1 OFFSET ?1",
            params![i64::try_from(retention.max_events).unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let bound = by_count.map_or(by_age, |c| c.max(by_age));
    let any: Option<i64> = conn
        .query_row(
            "SELECT rowid FROM events WHERE status = 'done' AND finished_at <= ?1
               AND (finished_at < ?1 OR rowid <= ?2) LIMIT 1",
            params![bound.0, bound.1],
            |r| r.get(0),
        )
        .optional()?;
    Ok(any.map(|_| bound))
}

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// How soon the checkpointer looks again after it found the WAL long.
const CHECKPOINT_SOON: std::time::Duration = std::time::Duration::from_millis(10);

/// WAL frames (pages) past which the checkpointer asks the writer to finish a checkpoint
/// (16 MB of 4 KiB pages).
const WAL_RESTART_FRAMES: i64 = 4096;

/// Passive WAL checkpoints on a connection of their own, until the writer stops: the copy
/// into the database file and its fsync happen here, not inside a commit the writer's callers
/// wait on (SQLite's automatic checkpoint runs in the committing connection).
///
/// A passive checkpoint waits for no one, but it finishes (every frame copied, so that the
/// next transaction starts the WAL over instead of growing it) only if nothing was committed
/// while it ran, which a busy writer never allows: the WAL would grow without end, and every
/// page read searches all of its index. So when the WAL is long and a checkpoint here could
/// not finish, the writer is asked to finish it between two transactions
/// (`finish_checkpoint`): by then the bulk is copied and synced here, and what is left is the
/// few frames committed meanwhile. The writer's own automatic checkpoint (at 32,768 pages) is
/// only a backstop.
fn checkpoints(
    file: &Path,
    writer_alive: &std::sync::mpsc::Receiver<()>,
    finish_checkpoint: &std::sync::atomic::AtomicBool,
) {
    let Ok(conn) = Connection::open(file) else {
        return;
    };
    // A long WAL is checkpointed again soon, not after the usual pause.
    let mut pause = CHECKPOINT_EVERY;
    loop {
        match writer_alive.recv_timeout(pause) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                pause = CHECKPOINT_EVERY;
                // (frames in the WAL, frames copied into the file); the WAL counts its frames
                // from its last start over, so a long one has not started over.
                let passive = || {
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    })
                };
                if passive().is_ok_and(|(frames, _)| frames >= WAL_RESTART_FRAMES) {
                    pause = CHECKPOINT_SOON;
                    // Once more for what was committed during the first (a long copy), so
                    // that what the writer is left to copy is as short as it can be; and not
                    // while a reader on an older snapshot holds the copy back (the writer
                    // could not finish either, and would copy the backlog the moment the
                    // reader let go).
                    if passive().is_ok_and(|(frames, copied)| copied == frames) {
                        finish_checkpoint.store(true, std::sync::atomic::Ordering::Release);
                    }
                }
            }
            _ => return,
        }
    }
}

/// A small write that proves the journal takes writes.
fn probe(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('probed_at', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![now_ms().to_string()])
    .map(|_| ())
}

impl Store for SqliteStore {
    fn fault(&self) -> Option<String> {
        self.fault.get()
    }

    fn describe(&self) -> String {
        self.path.to_string()
    }

    fn check(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let now = identity(&self.file);
            if self.identity.is_some() && now != self.identity {
                self.fault.set_permanent(format!(
                    "the journal file {} was removed or replaced while running; what is written now would be lost",
                    self.path
                ));
            } else {
                match self.run_single(probe).await {
                    Ok(()) => self.fault.set_transient(None),
                    Err(e) => self.fault.set_transient(Some(e.to_string())),
                }
            }
            self.fault.get()
        })
    }

    fn accept<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<Accepted, JournalError>> {
        Box::pin(self.insert(event, None))
    }

    fn accept_skipped<'a>(
        &'a self,
        event: &'a Event,
        skipped: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Accepted, JournalError>> {
        Box::pin(self.insert(event, Some(skipped)))
    }

    fn absorb<'a>(&'a self, change: &'a TriggerChange) -> BoxFuture<'a, Result<(), JournalError>> {
        let c = change.clone();
        Box::pin(async move {
            let mut firings = Vec::with_capacity(c.firings.len());
            for e in &c.firings {
                let payload = serde_json::to_string(&e.payload)
                    .map_err(|x| JournalError::Db(x.to_string()))?;
                let labels = serde_json::to_string(&e.labels)
                    .map_err(|x| JournalError::Db(x.to_string()))?;
                firings.push((e.clone(), payload, labels));
            }
            self.run(move |conn| {
                let at = now_ms();
                // Firings first: an id already journaled (a replayed event) is not a second one.
                for (e, payload, labels) in &firings {
                    conn.prepare_cached(
                        "INSERT INTO events (id, source, name, occurred, received, payload, labels, status, accepted_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8) ON CONFLICT (id) DO NOTHING",
                    )?
                    .execute(params![e.id, e.source, e.name, e.occurred.to_rfc3339(), e.received.to_rfc3339(), payload, labels, at])?;
                }
                for (key, state) in &c.states {
                    match state {
                        Some(v) => conn.prepare_cached(
                            "INSERT INTO trigger_states (route, key, state) VALUES (?1, ?2, ?3)
                             ON CONFLICT (route, key) DO UPDATE SET state = excluded.state",
                        )?
                        .execute(params![c.route, key, v.to_string()])?,
                        None => conn.prepare_cached("DELETE FROM trigger_states WHERE route = ?1 AND key = ?2")?
                            .execute(params![c.route, key])?,
                    };
                }
                if let Some((event_id, reason)) = &c.settles {
                    conn.prepare_cached(
                        "INSERT INTO decisions (event_id, route, kind, detail, at) VALUES (?1, ?2, 'absorbed', ?3, ?4)",
                    )?
                    .execute(params![event_id, c.route, reason, at])?;
                    conn.prepare_cached(
                        "INSERT INTO route_states (event_id, route, status) VALUES (?1, ?2, 'absorbed')
                         ON CONFLICT (event_id, route) DO UPDATE SET status = excluded.status",
                    )?
                    .execute(params![event_id, c.route])?;
                }
                Ok(())
            })
            .await
        })
    }

    fn trigger_states<'a>(
        &'a self,
        route: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, serde_json::Value)>, JournalError>> {
        let route = route.to_string();
        Box::pin(self.run_single(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, state FROM trigger_states WHERE route = ?1 ORDER BY key",
            )?;
            let rows = stmt
                .query_map(params![route], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|v| (k, v)))
                .collect())
        }))
    }

    fn attempt_failed<'a>(
        &'a self,
        event_id: &'a str,
        route: &'a str,
        attempt: u32,
        error: &'a str,
        retryable: bool,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        let (event_id, route) = (event_id.to_string(), route.to_string());
        let detail = super::attempt_detail(error, retryable);
        Box::pin(self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO decisions (event_id, route, kind, detail, attempt, at) VALUES (?1, ?2, 'attempt_failed', ?3, ?4, ?5)",
            )?
            .execute(params![event_id, route, detail, attempt, now_ms()])?;
            Ok(())
        }))
    }

    fn settle<'a>(
        &'a self,
        event_id: &'a str,
        route: &'a str,
        settlement: &'a Settlement,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        let (event_id, route, s) = (event_id.to_string(), route.to_string(), settlement.clone());
        Box::pin(self.run(move |conn| record_settlement(conn, &event_id, &route, &s, now_ms())))
    }

    fn finish_skipped<'a>(
        &'a self,
        event_id: &'a str,
        skipped: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<EventStatus, JournalError>> {
        let event_id = event_id.to_string();
        Box::pin(async move {
            // The skips go into the event's own row with its end: one statement, so no
            // savepoint, and no route_states rows (a pending event that failed to end just
            // skips again). No scalar subquery or JSON function on a bound value here: either
            // makes SQLite prepare the statement again for every event.
            let skips = if skipped.is_empty() {
                None
            } else {
                Some(to_json(&skipped)?)
            };
            self.run_single(move |conn| {
                let status: String = conn
                    .prepare_cached(
                        "UPDATE events SET finished_at = ?2, status = CASE WHEN EXISTS (
                             SELECT 1 FROM dead_letters WHERE event_id = ?1 AND resolved_at IS NULL)
                           THEN 'dead' ELSE 'done' END,
                           skips = ?3
                         WHERE id = ?1 RETURNING status",
                    )?
                    .query_row(params![event_id, now_ms(), skips], |r| r.get(0))?;
                Ok(EventStatus::parse(&status))
            })
            .await
        })
    }

    fn pending_before(
        &self,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<PendingEvent>, JournalError>> {
        let before = before.map_or(i64::MAX, |t| t.timestamp_millis());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(self.run_single(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE status = 'pending' AND accepted_at < ?1
                 ORDER BY accepted_at, rowid LIMIT ?2"
            ))?;
            let events: Vec<Event> = stmt
                .query_map(params![before, limit], event_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            events
                .into_iter()
                .map(|e| {
                    let settled = settled_routes(conn, &e.id)?;
                    Ok(PendingEvent { event: e, settled })
                })
                .collect()
        }))
    }

    fn list_events<'a>(
        &'a self,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<EventSummary>, JournalError>> {
        let filter = filter.clone();
        Box::pin(self.run_single(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, source, name, status, accepted_at, rowid FROM events e
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR source = ?2)
                   AND (?4 IS NULL OR name = ?4)
                   AND (?5 IS NULL OR EXISTS (SELECT 1 FROM decisions d WHERE d.event_id = e.id AND d.route = ?5)
                        OR EXISTS (SELECT 1 FROM json_each(e.skips) WHERE json_extract(value, '$[0]') = ?5))
                   AND (?6 IS NULL OR instr(payload, ?6) > 0 OR instr(labels, ?6) > 0)
                   AND (?7 IS NULL OR accepted_at >= ?7) AND (?8 IS NULL OR accepted_at < ?8)
                   AND (?9 IS NULL OR accepted_at < ?9 OR (accepted_at = ?9 AND rowid < ?10))
                 ORDER BY accepted_at DESC, rowid DESC LIMIT ?3",
            )?;
            let (after_at, after_row) = filter.after.unzip();
            let rows = stmt.query_map(
                params![
                    filter.status.map(EventStatus::as_str),
                    filter.source,
                    i64::try_from(filter.limit.max(1)).unwrap_or(i64::MAX),
                    filter.name,
                    filter.route,
                    filter.text,
                    filter.since.map(|t| t.timestamp_millis()),
                    filter.until.map(|t| t.timestamp_millis()),
                    after_at,
                    after_row,
                ],
                |r| {
                    Ok(EventSummary {
                        id: r.get(0)?,
                        source: r.get(1)?,
                        name: r.get(2)?,
                        status: EventStatus::parse(&r.get::<_, String>(3)?),
                        accepted_at: from_ms(r.get(4)?),
                        runs: Vec::new(),
                        position: (r.get(4)?, r.get(5)?),
                    })
                },
            )?;
            let mut out: Vec<EventSummary> = rows.collect::<rusqlite::Result<_>>()?;
            let mut runs = conn.prepare_cached(
                // A redelivered event records its (same) run again: each run once, in order.
                "SELECT flow_run_id FROM decisions WHERE event_id = ?1 AND kind = 'run_created'
                 GROUP BY flow_run_id ORDER BY MIN(id)",
            )?;
            for e in &mut out {
                e.runs = runs.query_map(params![e.id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            }
            Ok(out)
        }))
    }

    fn event<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<EventDetail>, JournalError>> {
        let id = id.to_string();
        Box::pin(self.run_single(move |conn| {
            let row = conn
                .query_row(&format!("SELECT {EVENT_COLUMNS}, skips, finished_at FROM events WHERE id = ?1"), params![id], |r| {
                    Ok((
                        event_from_row(r)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<i64>>(10)?,
                    ))
                })
                .optional()?;
            let Some((event, status, accepted, skips, finished)) = row else { return Ok(None) };
            let mut stmt = conn.prepare(
                "SELECT route, kind, detail, flow_run_id, flow_run_name, deployment, replayed, attempt, at
                 FROM decisions WHERE event_id = ?1 ORDER BY id",
            )?;
            let decisions = stmt
                .query_map(params![id], |r| {
                    Ok(Decision {
                        route: r.get(0)?,
                        kind: r.get(1)?,
                        detail: r.get(2)?,
                        flow_run_id: r.get(3)?,
                        flow_run_name: r.get(4)?,
                        deployment: r.get(5)?,
                        replayed: r.get(6)?,
                        attempt: r.get::<_, Option<i64>>(7)?.map(|a| a as u32),
                        at: from_ms(r.get(8)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let decisions = with_skips(decisions, skips.as_deref(), finished.map(from_ms));
            let followed = conn
                .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE event_id = ?1 ORDER BY created_at, flow_run_id"))?
                .query_map(params![id], run_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(EventDetail { event, status: EventStatus::parse(&status), accepted_at: from_ms(accepted), decisions, followed }))
        }))
    }

    fn dead_letters(
        &self,
        include_resolved: bool,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, JournalError>> {
        Box::pin(self.run_single(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE (?1 OR resolved_at IS NULL) ORDER BY id DESC LIMIT ?2"
            ))?;
            stmt.query_map(params![include_resolved, i64::try_from(limit.max(1)).unwrap_or(i64::MAX)], dead_letter_from_row)?.collect()
        }))
    }

    fn dead_letter(&self, id: i64) -> BoxFuture<'_, Result<Option<DeadLetter>, JournalError>> {
        Box::pin(self.run_single(move |conn| {
            conn.query_row(
                &format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?1"),
                params![id],
                dead_letter_from_row,
            )
            .optional()
        }))
    }

    fn resolve_dead_letter<'a>(
        &'a self,
        id: i64,
        resolution: &'a str,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        let resolution = resolution.to_string();
        Box::pin(self.run(move |conn| {
            conn.execute(
                "UPDATE dead_letters SET resolved_at = ?2, resolution = ?3 WHERE id = ?1 AND resolved_at IS NULL",
                params![id, now_ms(), resolution],
            )?;
            conn.execute(
                "UPDATE events SET status = 'done'
                 WHERE status = 'dead' AND id = (SELECT event_id FROM dead_letters WHERE id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = events.id AND d.resolved_at IS NULL)",
                params![id],
            )?;
            Ok(())
        }))
    }

    fn prune(&self, retention: Retention) -> BoxFuture<'_, Result<u64, JournalError>> {
        Box::pin(async move {
            // Where to cut is read on a connection of its own, off the writer (a WAL reader
            // blocks no writer): walking a million index entries must not stall accepts.
            let file = self.file.clone();
            let bound = tokio::task::spawn_blocking(move || prune_bound(&file, retention))
                .await
                .map_err(|e| JournalError::Db(format!("retention stopped: {e}")))?
                .map_err(|e| JournalError::Db(e.to_string()))?;
            let Some((finished, rowid)) = bound else {
                return Ok(0);
            };
            // Then small deletes, each a job of its own, so other writes go between them.
            let mut deleted = 0u64;
            loop {
                let n = self
                    .run_single(move |conn| {
                        conn.prepare_cached(
                            "DELETE FROM events WHERE rowid IN (
                                 SELECT rowid FROM events WHERE status = 'done' AND finished_at <= ?1
                                   AND (finished_at < ?1 OR rowid <= ?2)
                                 ORDER BY finished_at, rowid LIMIT ?3)",
                        )?
                        .execute(params![finished, rowid, PRUNE_CHUNK as i64])
                    })
                    .await?;
                deleted += n as u64;
                if n < PRUNE_CHUNK {
                    return Ok(deleted);
                }
                tokio::time::sleep(PRUNE_PAUSE).await;
            }
        })
    }

    fn runs_due(
        &self,
        limit: usize,
        hold: std::time::Duration,
    ) -> BoxFuture<'_, Result<Vec<FollowedRun>, JournalError>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let hold = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        Box::pin(self.run_single(move |conn| {
            let now = now_ms();
            let mut runs = conn
                .prepare_cached(&format!(
                    "UPDATE runs SET next_check_at = ?1 WHERE flow_run_id IN (
                        SELECT flow_run_id FROM runs WHERE ended_at IS NULL AND next_check_at <= ?2
                        ORDER BY next_check_at LIMIT ?3)
                     RETURNING {RUN_COLUMNS}"
                ))?
                .query_map(params![now.saturating_add(hold), now, limit], run_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            runs.sort_by_key(|r| r.changed_at);
            Ok(runs)
        }))
    }

    fn runs_seen(
        &self,
        seen: Vec<RunSeen>,
    ) -> BoxFuture<'_, Result<Vec<RunChanged>, JournalError>> {
        Box::pin(self.run(move |conn| {
            let now = now_ms();
            let mut changed = Vec::new();
            for s in seen {
                let next = s.next_check.timestamp_millis();
                let run = conn
                    .prepare_cached(&format!(
                        "UPDATE runs SET state_type = ?2, state_name = ?3, changed_at = ?4, next_check_at = ?5,
                             ended_at = CASE WHEN ?6 THEN ?4 END
                         WHERE flow_run_id = ?1 AND ended_at IS NULL AND (state_type IS NOT ?2 OR state_name IS NOT ?3)
                         RETURNING {RUN_COLUMNS}"
                    ))?
                    .query_row(params![s.flow_run_id, s.state.0, s.state.1, now, next, s.ended], run_from_row)
                    .optional()?;
                match run {
                    Some(run) => {
                        conn.prepare_cached(
                            "INSERT INTO decisions (event_id, route, kind, detail, flow_run_id, flow_run_name, deployment, at)
                             VALUES (?1, ?2, 'run_state', ?3, ?4, ?5, ?6, ?7)",
                        )?
                        .execute(params![run.event_id, run.route, run.state_name, run.flow_run_id, run.flow_run_name, run.deployment, now])?;
                        changed.push(RunChanged { run, ended: s.ended });
                    }
                    None => {
                        conn.prepare_cached(
                            "UPDATE runs SET next_check_at = ?2, ended_at = CASE WHEN ?3 THEN ?4 END
                             WHERE flow_run_id = ?1 AND ended_at IS NULL",
                        )?
                        .execute(params![s.flow_run_id, next, s.ended, now])?;
                    }
                }
            }
            Ok(changed)
        }))
    }

    fn unfinished_runs<'a>(
        &'a self,
        route: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FollowedRun>, JournalError>> {
        let (route, key) = (route.to_string(), key.to_string());
        Box::pin(self.run_single(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE route = ?1 AND concurrency_key = ?2 AND ended_at IS NULL ORDER BY created_at"
            ))?
            .query_map(params![route, key], run_from_row)?
            .collect()
        }))
    }

    fn followed_run<'a>(
        &'a self,
        flow_run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<FollowedRun>, JournalError>> {
        let id = flow_run_id.to_string();
        Box::pin(self.run_single(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE flow_run_id = ?1"
            ))?
            .query_row(params![id], run_from_row)
            .optional()
        }))
    }

    fn counts(&self) -> BoxFuture<'_, Result<(u64, u64), JournalError>> {
        Box::pin(self.run_single(move |conn| {
            let count = |sql: &str| {
                conn.prepare_cached(sql)?
                    .query_row([], |r| r.get::<_, i64>(0))
                    .map(|n| u64::try_from(n).unwrap_or(0))
            };
            Ok((
                count("SELECT COUNT(*) FROM events WHERE status = 'pending'")?,
                count("SELECT COUNT(*) FROM dead_letters WHERE resolved_at IS NULL")?,
            ))
        }))
    }
}

mod files;
mod rows;
mod schema;
mod writer;

#[cfg(test)]
mod tests;
