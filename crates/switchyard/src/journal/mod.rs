//! The journal: what Switchyard knows durably about every event it accepted — the event as
//! received, each route's decision, every failed attempt, the flow run it led to, and dead
//! letters with their reason.
//!
//! Sources acknowledge only what the journal holds, and a restart finishes every event still
//! `pending` in it. The [`Store`] trait is the seam: SQLite ([`SqliteStore`], one file, no
//! setup) today; PostgreSQL for several instances can follow behind the same trait.

#[cfg(test)]
pub(crate) mod contract;
mod faults;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use switchyard_core::Event;

pub use crate::outcome::Settlement;

#[cfg(feature = "postgres")]
pub use postgres::{Migrated, PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;

/// Where the journal is: a SQLite file, or a PostgreSQL database several instances share.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file.
    File(std::path::PathBuf),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(PostgresOptions),
}

impl Location {
    /// Where a run's journal is: `cli` (`--journal`: a path, or a `postgres://` URL) first,
    /// then `SWITCHYARD_JOURNAL_URL`, then the configured `url`, then the configured `path`.
    /// `instance` and `lease` are the configured `journal.instance` and `journal.lease`.
    pub fn resolve(
        path: &std::path::Path,
        url: Option<&str>,
        instance: Option<&str>,
        lease: Duration,
        cli: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let from_env = std::env::var("SWITCHYARD_JOURNAL_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let url = match cli {
            Some(p) => match p.to_str().filter(|s| is_url(s)) {
                Some(u) => Some(u.to_string()),
                None => return Ok(Self::File(p.to_path_buf())),
            },
            None => from_env.or_else(|| url.map(str::to_string)),
        };
        let Some(url) = url else {
            return Ok(Self::File(path.to_path_buf()));
        };
        if !is_url(&url) {
            return Err("expected a postgres:// or postgresql:// URL".into());
        }
        #[cfg(feature = "postgres")]
        {
            Ok(Self::Postgres(PostgresOptions {
                url,
                instance: instance.map(str::to_string),
                lease,
                register: true,
            }))
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (instance, lease);
            Err("this build has no PostgreSQL journal (cargo feature `postgres`)".into())
        }
    }

    /// Opens it. `register`: whether this process is an instance that takes events (a
    /// command that only reads or replays is not).
    pub async fn open(&self, register: bool) -> Result<std::sync::Arc<dyn Store>, JournalError> {
        #[cfg(not(feature = "postgres"))]
        let _ = register;
        match self {
            Self::File(p) => Ok(std::sync::Arc::new(SqliteStore::open(p)?)),
            #[cfg(feature = "postgres")]
            Self::Postgres(o) => {
                let o = PostgresOptions {
                    register,
                    ..o.clone()
                };
                Ok(std::sync::Arc::new(PostgresStore::open(&o).await?))
            }
        }
    }
}

/// Whether `s` is meant as a PostgreSQL journal's URL (rather than a file).
fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A journal operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// The database could not be opened or migrated.
    #[error("cannot open the journal at {path}: {message}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A read or write failed.
    #[error("journal error: {0}")]
    Db(String),
    /// The journal was closed.
    #[error("the journal is closed")]
    Closed,
    /// The journal cannot take new events now (its file was removed or replaced, or a write
    /// failed for lack of space); see [`Store::fault`].
    #[error("the journal cannot take new events: {0}")]
    Unavailable(String),
}

/// Where an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Accepted; not every route has settled yet.
    Pending,
    /// Every route settled (skipped or ran).
    Done,
    /// Every route settled and at least one dead-lettered.
    Dead,
}

impl EventStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "done" => Self::Done,
            "dead" => Self::Dead,
            _ => Self::Pending,
        }
    }
}

/// The result of [`Store::accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// First time this id was seen.
    New,
    /// The id is already journaled (a redelivery); `settled` lists routes already done.
    Duplicate {
        /// Its status.
        status: EventStatus,
        /// Routes with a final decision.
        settled: Vec<String>,
    },
    /// The id is already journaled with a different name or payload: a sender reused an id
    /// (an `Idempotency-Key`) for another message. Nothing was written.
    Conflict,
    /// The id is already journaled, pending, and held by another live instance sharing the
    /// journal (a sender's retry that reached another instance): that instance finishes it, or
    /// the one that claims it when its lease runs out. Nothing was written.
    Elsewhere,
}

/// An instance sharing the journal (see [`Store::instances`]).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Instance {
    /// Its name (`journal.instance`, or the host name and a random suffix).
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: i64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last renewed its lease.
    pub heartbeat_at: DateTime<Utc>,
    /// Whether its lease holds (renewed within the lease): a lapsed instance's pending events
    /// are claimed by the others.
    pub alive: bool,
    /// Pending events it owns.
    pub pending: u64,
    /// Whether this is the instance asking.
    pub this: bool,
}

/// What makes two deliveries under one id the same message: a digest of the event's name and
/// payload (hex, 128 bits of SHA-256).
pub fn digest(name: &str, payload_json: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(payload_json.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(32);
    for b in &h.finalize()[..16] {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

/// One line of an event's history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Decision {
    /// The route.
    pub route: String,
    /// `skipped`, `run_created`, `would_run` (a shadow route; `detail` is the JSON of its
    /// `parameters` and `idempotency_key`), `attempt_failed`, `dead_lettered`, `replayed`,
    /// `run_state` (a run it created changed state: `detail` is the state's name).
    pub kind: String,
    /// Reason or error.
    pub detail: Option<String>,
    /// The run, for `run_created`.
    pub flow_run_id: Option<String>,
    /// Its name.
    pub flow_run_name: Option<String>,
    /// The deployment, for `run_created`.
    pub deployment: Option<String>,
    /// Whether Prefect returned an existing run.
    pub replayed: Option<bool>,
    /// Attempt number, for failures.
    pub attempt: Option<u32>,
    /// When.
    pub at: DateTime<Utc>,
}

/// An event in listings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventSummary {
    /// Event id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// Event name.
    pub name: String,
    /// Status.
    pub status: EventStatus,
    /// When it was accepted.
    pub accepted_at: DateTime<Utc>,
    /// Flow runs it led to, each once, oldest first.
    pub runs: Vec<String>,
    /// Where it is in the list, for paging ([`EventFilter::after`]).
    #[serde(skip)]
    pub position: (i64, i64),
}

/// An event with its whole history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    /// The event.
    pub event: Event,
    /// Status.
    pub status: EventStatus,
    /// When it was accepted.
    pub accepted_at: DateTime<Utc>,
    /// Decisions, oldest first.
    pub decisions: Vec<Decision>,
    /// The flow runs it led to, followed to their end: where each stood when last looked
    /// at, oldest first.
    pub followed: Vec<FollowedRun>,
}

/// A flow run Switchyard created, followed to its end (see [`Store::runs_due`]).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FollowedRun {
    /// The run.
    pub flow_run_id: String,
    /// Its name.
    pub flow_run_name: String,
    /// The deployment as the route named it.
    pub deployment: String,
    /// The event that led to it.
    pub event_id: String,
    /// The route that created it.
    pub route: String,
    /// Its state's type as last seen (`SCHEDULED`, `RUNNING`, `COMPLETED`, ...; a run created
    /// and not looked at yet is `SCHEDULED`; `NOT_FOUND` when Prefect no longer has it).
    pub state_type: String,
    /// Its state's name as last seen (`Scheduled`, `Late`, `Running`, `Completed`, ...).
    pub state_name: String,
    /// When Switchyard recorded it.
    pub created_at: DateTime<Utc>,
    /// When its state last changed, as Switchyard saw it.
    pub changed_at: DateTime<Utc>,
    /// When Switchyard stopped following it: it ended (a terminal state) or it was followed
    /// for longer than `prefect.follow.max_age` (then its state is not terminal).
    pub ended_at: Option<DateTime<Utc>>,
}

/// What one look at a followed run found (see [`Store::runs_seen`]).
#[derive(Debug, Clone)]
pub struct RunSeen {
    /// The run.
    pub flow_run_id: String,
    /// Its state's type and name now.
    pub state: (String, String),
    /// Whether to stop following it: its state is terminal, or it is past following.
    pub ended: bool,
    /// When to look at it again (when it did not end).
    pub next_check: DateTime<Utc>,
}

/// A followed run whose state changed (see [`Store::runs_seen`]): the one instance whose
/// write recorded the change is told, so it is counted once however many looked.
#[derive(Debug, Clone)]
pub struct RunChanged {
    /// The run as it is now.
    pub run: FollowedRun,
    /// Whether it ended with this change.
    pub ended: bool,
}

/// A dead letter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Its number.
    pub id: i64,
    /// The event.
    pub event_id: String,
    /// The route that gave up.
    pub route: String,
    /// Why.
    pub reason: String,
    /// Whether the cause was transient.
    pub retryable: bool,
    /// Attempts made.
    pub attempts: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// How it was resolved (`replayed: <run>`, `purged`), if it was.
    pub resolution: Option<String>,
}

/// An accepted event that is not finished (see [`Store::pending`]).
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// The event.
    pub event: Event,
    /// Routes with a final decision already.
    pub settled: Vec<String>,
}

/// A time bound of an [`EventFilter`] as given (RFC 3339); `Err` says which (`name`) and why.
pub fn time_bound(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    v.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.to_utc())
            .map_err(|e| format!("{name}: expected an RFC 3339 time: {e}"))
    })
    .transpose()
}

/// Filter for [`Store::list_events`].
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this status.
    pub status: Option<EventStatus>,
    /// Only this source.
    pub source: Option<String>,
    /// Most rows (newest first).
    pub limit: usize,
    /// Only events of this name.
    pub name: Option<String>,
    /// Only events this route decided on.
    pub route: Option<String>,
    /// Only events whose payload or labels contain this text.
    pub text: Option<String>,
    /// Only events accepted at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only events accepted before this.
    pub until: Option<DateTime<Utc>>,
    /// Only events after this position in the list (the `position` of the last one seen).
    pub after: Option<(i64, i64)>,
}

/// How long finished events are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Finished events older than this are deleted.
    pub max_age: Duration,
    /// At most this many finished events are kept (oldest go first).
    pub max_events: u64,
}

/// One step of a stateful route (trigger or batch), recorded in one transaction: the
/// firings it produced (journaled as pending events), its new bucket states, and the route's
/// decision for the event that caused it (none for a timer).
#[derive(Debug, Clone, Default)]
pub struct TriggerChange {
    /// The route.
    pub route: String,
    /// Events the trigger fired, to journal as pending (idempotent by id).
    pub firings: Vec<Event>,
    /// Bucket states to store (`Some`) or delete (`None`), by bucket key.
    pub states: Vec<(String, Option<serde_json::Value>)>,
    /// The event that caused this and the route's decision for it (`absorbed`, with a reason).
    pub settles: Option<(String, String)>,
}

/// One step of a stateful route on buckets as the journal holds them (see
/// [`Store::trigger_step`]): given the stored states of the keys asked for (absent keys have
/// none), the change to record with them, if any.
pub type TriggerStep<'a> =
    Box<dyn FnOnce(Vec<(String, serde_json::Value)>) -> Option<TriggerChange> + Send + 'a>;

/// Durable storage of events, decisions and dead letters.
pub trait Store: Send + Sync + 'static {
    /// Whether other instances share this journal's trigger state: a stateful route then
    /// reads and writes each bucket through [`Store::trigger_step`], under the journal's lock,
    /// rather than trusting what it holds in memory.
    fn shares_trigger_state(&self) -> bool {
        false
    }
    /// Runs `step` on a route's buckets `keys` as the journal holds them now, and records the
    /// change it returns, under a lock that no other instance can take on those buckets until
    /// the change is committed: a count spread over instances is counted once, and a deadline
    /// two instances reach together is acted on by one (the other finds it done).
    fn trigger_step<'a>(
        &'a self,
        route: &'a str,
        keys: Vec<String>,
        step: TriggerStep<'a>,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        // One process alone: what it reads is what it wrote; no lock to take.
        Box::pin(async move {
            let stored = self
                .trigger_states(route)
                .await?
                .into_iter()
                .filter(|(k, _)| keys.contains(k))
                .collect();
            match step(stored) {
                Some(change) => self.absorb(&change).await,
                None => Ok(()),
            }
        })
    }
    /// Records a trigger step atomically (see [`TriggerChange`]).
    fn absorb<'a>(&'a self, change: &'a TriggerChange) -> BoxFuture<'a, Result<(), JournalError>>;
    /// A route's stored bucket states, by key.
    fn trigger_states<'a>(
        &'a self,
        route: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, serde_json::Value)>, JournalError>>;
    /// Records a received event. Idempotent by event id.
    fn accept<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<Accepted, JournalError>>;
    /// Records a received event that every route skips (`skipped`, `(route, reason)`) as it
    /// ends: finished, with its skips, in one write. Idempotent by event id: for an id
    /// already journaled nothing is written and the answer is what [`Store::accept`] says.
    fn accept_skipped<'a>(
        &'a self,
        event: &'a Event,
        skipped: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Accepted, JournalError>> {
        Box::pin(async move {
            let accepted = self.accept(event).await?;
            if accepted == Accepted::New {
                self.finish_skipped(&event.id, skipped.to_vec()).await?;
            }
            Ok(accepted)
        })
    }
    /// Records a failed attempt of a route.
    fn attempt_failed<'a>(
        &'a self,
        event_id: &'a str,
        route: &'a str,
        attempt: u32,
        error: &'a str,
        retryable: bool,
    ) -> BoxFuture<'a, Result<(), JournalError>>;
    /// Records a route's final decision.
    fn settle<'a>(
        &'a self,
        event_id: &'a str,
        route: &'a str,
        settlement: &'a Settlement,
    ) -> BoxFuture<'a, Result<(), JournalError>>;
    /// Marks the event finished; returns its status (dead if any route dead-lettered).
    fn finish<'a>(&'a self, event_id: &'a str) -> BoxFuture<'a, Result<EventStatus, JournalError>> {
        self.finish_skipped(event_id, Vec::new())
    }
    /// Records the routes that skipped the event, `(route, reason)`, and marks it finished, in
    /// one transaction; returns its status. Skips are recorded here rather than one by one:
    /// deciding a skip again after a crash is harmless, so it need not be durable any earlier,
    /// and an event that every route skips costs two journal writes (accept, finish), not one
    /// per route more.
    fn finish_skipped<'a>(
        &'a self,
        event_id: &'a str,
        skipped: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<EventStatus, JournalError>>;
    /// Pending events with their settled routes, oldest first (for recovery).
    fn pending(&self) -> BoxFuture<'_, Result<Vec<PendingEvent>, JournalError>> {
        self.pending_before(None, usize::MAX)
    }
    /// At most `limit` pending events accepted before `before` (all of them with `None`),
    /// oldest first, with their settled routes: what the sweep looks for while running.
    fn pending_before(
        &self,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<PendingEvent>, JournalError>>;
    /// Events, newest first.
    fn list_events<'a>(
        &'a self,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<EventSummary>, JournalError>>;
    /// One event with its history.
    fn event<'a>(&'a self, id: &'a str)
    -> BoxFuture<'a, Result<Option<EventDetail>, JournalError>>;
    /// Dead letters, newest first.
    fn dead_letters(
        &self,
        include_resolved: bool,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, JournalError>>;
    /// One dead letter.
    fn dead_letter(&self, id: i64) -> BoxFuture<'_, Result<Option<DeadLetter>, JournalError>>;
    /// Marks a dead letter resolved, and the event done when it was its last open one.
    fn resolve_dead_letter<'a>(
        &'a self,
        id: i64,
        resolution: &'a str,
    ) -> BoxFuture<'a, Result<(), JournalError>>;
    /// Deletes finished events past the retention, in small steps other writes go between
    /// (nothing on the commit path grows with the journal); returns how many.
    fn prune(&self, retention: Retention) -> BoxFuture<'_, Result<u64, JournalError>>;
    /// How many events are pending, and how many dead letters are open (for metrics).
    fn counts(&self) -> BoxFuture<'_, Result<(u64, u64), JournalError>>;
    /// Why the journal cannot take new events now, if it cannot: [`Store::accept`] refuses
    /// while this is set, and readiness reports it.
    fn fault(&self) -> Option<String>;
    /// Checks that the journal is still the file it opened and that it takes a write; sets
    /// or clears [`Store::fault`] accordingly (a file removed or replaced stays a fault).
    fn check(&self) -> BoxFuture<'_, Option<String>>;
    /// At most `limit` followed runs that have not ended and are due for a look, the longest
    /// due first; each is not due again for `hold` (so instances sharing the journal look at
    /// different runs, and a look that never reports back is retried after `hold`).
    fn runs_due(
        &self,
        limit: usize,
        hold: Duration,
    ) -> BoxFuture<'_, Result<Vec<FollowedRun>, JournalError>>;
    /// Records what looks at followed runs found, in one transaction: a state that differs
    /// from the recorded one is written to the run and as a `run_state` decision of its
    /// event; a run that ended is followed no more; every run is next due at its
    /// `next_check`. Returns the runs whose state this write changed.
    fn runs_seen(&self, seen: Vec<RunSeen>)
    -> BoxFuture<'_, Result<Vec<RunChanged>, JournalError>>;
    /// A route's runs for concurrency key `key` that have not ended, oldest first.
    fn unfinished_runs<'a>(
        &'a self,
        route: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FollowedRun>, JournalError>>;
    /// One followed run.
    fn followed_run<'a>(
        &'a self,
        flow_run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<FollowedRun>, JournalError>>;
    /// The instances sharing this journal, with what each owns; empty for a journal only one
    /// process opens (SQLite).
    fn instances(&self) -> BoxFuture<'_, Result<Vec<Instance>, JournalError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// What the journal is, for logs and `status` (a file's path, or a database URL with any
    /// password masked).
    fn describe(&self) -> String;
}

/// An event's decisions and the skips recorded in its row (`skips`, a JSON array of
/// `[route, reason]`, made at its end, `finished`), the skips in their place in time: after
/// every decision made before the event ended.
/// How a failed attempt reads in an event's history (every store writes the same).
pub(crate) fn attempt_detail(error: &str, retryable: bool) -> String {
    if retryable {
        format!("{error} (will retry)")
    } else {
        error.to_string()
    }
}

pub(crate) fn with_skips(
    mut decisions: Vec<Decision>,
    skips: Option<&str>,
    finished: Option<DateTime<Utc>>,
) -> Vec<Decision> {
    let skipped: Vec<(String, String)> = skips
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let at = finished.unwrap_or_default();
    let place = decisions.partition_point(|d| d.at <= at);
    let rows = skipped.into_iter().map(|(route, reason)| Decision {
        route,
        kind: "skipped".into(),
        detail: Some(reason),
        flow_run_id: None,
        flow_run_name: None,
        deployment: None,
        replayed: None,
        attempt: None,
        at,
    });
    decisions.splice(place..place, rows);
    decisions
}

#[cfg(test)]
mod tests {
    /// The digest is the first 128 bits of SHA-256 over name, NUL, payload, in lower-case hex
    /// (journals written before keep matching redeliveries).
    #[test]
    fn the_digest_is_stable() {
        assert_eq!(super::digest("n", "{}"), super::digest("n", "{}"));
        let d = super::digest("order.created", r#"{"n":1}"#);
        assert_eq!(d.len(), 32);
        assert!(
            d.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        // The same bytes as the usual per-byte formatting.
        assert_eq!(super::digest("a", "b"), expected("a\0b"));
    }

    fn expected(input: &str) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(input.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
