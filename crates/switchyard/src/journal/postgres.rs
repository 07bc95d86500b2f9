//! The PostgreSQL journal: one database shared by several instances.
//!
//! Writes on the hot path (accept, settle, finish, absorb) are jobs on a bounded channel that a
//! few writer tasks take in batches: each batch is one transaction on one connection, its
//! statements pipelined, and every job is answered only after COMMIT (group commit, as the
//! SQLite writer does). A batch in which a statement fails is rolled back and its jobs run
//! again one transaction each, so one bad job never takes its neighbours with it.
//!
//! Every instance registers in `switchyard.instances` and renews its lease there. A pending
//! event is owned by the instance that accepted it; once that instance's lease lapses, the
//! sweep of any other instance claims it (`FOR UPDATE SKIP LOCKED`: never two at once) and
//! finishes it. An event id is unique across instances, so a sender's retry at another
//! instance finds the first delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::{GenericClient, Pool};
use futures::future::BoxFuture;
use switchyard_core::Event;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::faults::Faults;
use super::{
    Accepted, DeadLetter, Decision, EventDetail, EventFilter, EventStatus, EventSummary,
    FollowedRun, Instance, JournalError, PendingEvent, Retention, RunChanged, RunSeen, Settlement,
    Store, TriggerChange,
};
use schema::{MIGRATION_LOCK, MIGRATIONS, RETENTION_LOCK, SCHEMA_VERSION};

mod migrate;
mod ops;
mod schema;

pub use migrate::Migrated;

use ops::{Answer, Op};

/// Writer tasks, each with a connection of its own while it commits a batch.
const WRITERS: usize = 4;

/// Connections for reads, claims and retention, besides the writers'.
const READERS: usize = 4;

/// Jobs committed together at most.
const MAX_JOBS: usize = 512;

/// How a PostgreSQL journal is opened.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user[:password]@host[:port]/database[?options]` (or libpq's `key=value`).
    pub url: String,
    /// This instance's name among those sharing the journal; `None`: the host name and a
    /// random suffix (a restarted instance is then a new one, and its leftovers are claimed
    /// once its old lease lapses).
    pub instance: Option<String>,
    /// How long an instance's lease lasts without renewal (renewed every third of it).
    pub lease: Duration,
    /// Whether this process is an instance that takes events (registered, with a lease it
    /// renews); a command that only reads or replays is not, and what it writes pending is
    /// anyone's to claim.
    pub register: bool,
}

/// The PostgreSQL [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    tx: mpsc::Sender<Job>,
    me: Arc<str>,
    shown: Arc<str>,
    fault: Arc<Faults>,
    lease_lost: Arc<AtomicBool>,
    /// Stops the heartbeat when the last clone goes.
    _alive: Arc<DropGuard>,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Answer, JournalError>>,
}

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(super) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A driver error with its causes (tokio-postgres says only "db error" itself; the server's
/// message is its source).
fn db(e: impl std::error::Error) -> JournalError {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    JournalError::Db(message)
}

impl PostgresStore {
    /// Connects, migrates (once, however many instances start together), registers this
    /// instance and starts its writers and its heartbeat.
    pub async fn open(opts: &PostgresOptions) -> Result<Self, JournalError> {
        let shown: Arc<str> = Arc::from(crate::secrets::url(&opts.url));
        let open_err = |message: String| JournalError::Open {
            path: shown.to_string(),
            message,
        };
        let mut config: tokio_postgres::Config = opts
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| open_err(format!("not a PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("switchyard");
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(WRITERS + READERS)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| open_err(format!("cannot connect: {e}")))?;
        migrate(&mut client).await.map_err(open_err)?;
        let lease = opts.lease.max(Duration::from_secs(1));
        let host: Arc<str> = Arc::from(host());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let me: Arc<str> = Arc::from(match &opts.instance {
            Some(name) if opts.register => name.clone(),
            _ if !opts.register => format!("cli-{host}-{}", std::process::id()),
            _ => format!("{host}-{}", suffix.get(..8).unwrap_or(&suffix)),
        });
        if opts.register {
            register(&client, &me, &host, lease)
                .await
                .map_err(open_err)?;
        }
        drop(client);

        let fault = Arc::new(Faults::default());
        let (tx, rx) = mpsc::channel::<Job>(MAX_JOBS * 2);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            tokio::spawn(writer(
                pool.clone(),
                Arc::clone(&rx),
                Arc::clone(&fault),
                Arc::clone(&me),
            ));
        }
        let stop = CancellationToken::new();
        let lease_lost = Arc::new(AtomicBool::new(false));
        if opts.register {
            tokio::spawn(heartbeat(
                pool.clone(),
                Arc::clone(&me),
                host,
                lease,
                Arc::clone(&lease_lost),
                stop.clone(),
            ));
        }
        tracing::info!(journal = %shown, instance = %me, lease = ?lease, "journal opened (PostgreSQL)");
        Ok(Self {
            pool,
            tx,
            me,
            shown,
            fault,
            lease_lost,
            _alive: Arc::new(stop.drop_guard()),
        })
    }

    async fn submit(&self, op: Op) -> Result<Answer, JournalError> {
        if matches!(op, Op::Insert { .. })
            && let Some(why) = self.fault()
        {
            return Err(JournalError::Unavailable(why));
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { op, reply })
            .await
            .map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, JournalError> {
        self.pool.get().await.map_err(|e| {
            let why = format!("cannot reach the journal's database: {e}");
            self.fault.set_transient(Some(why.clone()));
            JournalError::Db(why)
        })
    }

    fn insert_op(
        &self,
        e: &Event,
        skipped: Option<&[(String, String)]>,
    ) -> Result<Op, JournalError> {
        let skips = match skipped {
            Some(s) if !s.is_empty() => Some(serde_json::to_string(s).map_err(db)?),
            _ => None,
        };
        Ok(Op::Insert {
            row: Arc::new(ops::EventRow::new(e)?),
            done: skipped.is_some(),
            skips,
        })
    }

    fn absorb_op(&self, change: &TriggerChange) -> Result<Op, JournalError> {
        let firings = change
            .firings
            .iter()
            .map(ops::EventRow::new)
            .collect::<Result<_, _>>()?;
        let states = change
            .states
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(ToString::to_string)))
            .collect();
        Ok(Op::Absorb(Arc::new(ops::Absorb {
            route: change.route.clone(),
            firings,
            states,
            settles: change.settles.clone(),
        })))
    }
}

/// Rows of `(key, state)` from `switchyard.trigger_states`, parsed; a state that does not
/// read or parse is left out (the route starts that bucket afresh).
fn stored_states(rows: &[tokio_postgres::Row]) -> Vec<(String, serde_json::Value)> {
    rows.iter()
        .filter_map(|r| {
            let (key, state): (String, String) = (r.try_get(0).ok()?, r.try_get(1).ok()?);
            serde_json::from_str(&state).ok().map(|v| (key, v))
        })
        .collect()
}

/// The host name, for an instance's default name and its row.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

/// Runs the steps a database lacks, under an advisory lock (instances that start together
/// wait for the first); refuses a database newer than this build.
async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| e.to_string())?;
    tx.batch_execute(schema::META)
        .await
        .map_err(|e| format!("cannot create the switchyard schema: {e}"))?;
    let version: i64 = tx
        .query_opt(
            "SELECT value FROM switchyard.meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .and_then(|r| r.try_get::<_, String>(0).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(format!(
            "schema version {version} is newer than this switchyard understands ({SCHEMA_VERSION})"
        ));
    }
    for (to, step) in MIGRATIONS.iter().filter(|(to, _)| *to > version) {
        tx.batch_execute(step)
            .await
            .map_err(|e| format!("migration to version {to} failed: {e}"))?;
        tx.execute(
            "INSERT INTO switchyard.meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&to.to_string()],
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())
}

/// Registers this instance. A live instance of the same name (another process, or this one
/// before a kill whose lease has not lapsed yet) is waited for, up to its lease; the same
/// process opening the journal again takes its row at once.
async fn register(
    client: &deadpool_postgres::Object,
    me: &str,
    host: &str,
    lease: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + lease + Duration::from_secs(1);
    let pid = i64::from(std::process::id());
    let mut warned = false;
    loop {
        let taken = client
            .execute(
                "INSERT INTO switchyard.instances (id, host, pid, lease) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                     started_at = now(), heartbeat_at = now(), lease = excluded.lease
                 WHERE switchyard.instances.heartbeat_at <= now() - make_interval(secs => switchyard.instances.lease)
                    OR (switchyard.instances.host = excluded.host AND switchyard.instances.pid = excluded.pid)",
                &[&me, &host, &pid, &lease.as_secs_f64()],
            )
            .await
            .map_err(|e| e.to_string())?;
        if taken == 1 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "an instance named {me:?} is alive and renewing its lease; give each instance its own journal.instance"
            ));
        }
        if !warned {
            tracing::warn!(instance = %me, "an instance of this name holds a lease; waiting for it to lapse");
            warned = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Renews this instance's lease every third of it until the store goes; a lease that could
/// not be renewed for a whole lease is lost (others may claim what this instance holds), and
/// the journal refuses new events until a renewal succeeds.
async fn heartbeat(
    pool: Pool,
    me: Arc<str>,
    host: Arc<str>,
    lease: Duration,
    lost: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let every = lease / 3;
    let mut renewed = tokio::time::Instant::now();
    let mut tidied = renewed;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        let ok = match pool.get().await {
            Ok(c) => c
                .execute(
                    "INSERT INTO switchyard.instances (id, host, pid, lease) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
                    &[&&*me, &&*host, &i64::from(std::process::id()), &lease.as_secs_f64()],
                )
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if ok.is_ok() && tidied.elapsed() >= TIDY_EVERY {
            tidied = tokio::time::Instant::now();
            if let Ok(c) = pool.get().await {
                let gone = c
                    .execute(
                        "DELETE FROM switchyard.instances i
                         WHERE i.heartbeat_at < now() - interval '1 hour'
                           AND NOT EXISTS (SELECT 1 FROM switchyard.events e
                                           WHERE e.status = 'pending' AND e.owner = i.id)",
                        &[],
                    )
                    .await;
                if let Ok(n @ 1..) = gone {
                    tracing::info!(
                        instances = n,
                        "forgot instances gone for an hour that own nothing"
                    );
                }
            }
        }
        match ok {
            Ok(_) => {
                renewed = tokio::time::Instant::now();
                if lost.swap(false, Ordering::AcqRel) {
                    tracing::info!(instance = %me, "lease renewed; accepting new events");
                }
            }
            Err(e) if renewed.elapsed() >= lease => {
                if !lost.swap(true, Ordering::AcqRel) {
                    tracing::error!(instance = %me, error = %e, "lease lost: refusing new events until it is renewed");
                }
            }
            Err(e) => tracing::warn!(instance = %me, error = %e, "cannot renew the lease"),
        }
    }
    // A clean stop gives up the lease at once: what is left pending is claimed without
    // waiting for it to lapse.
    if let Ok(c) = pool.get().await {
        let _ = c
            .execute(
                "UPDATE switchyard.instances SET heartbeat_at = 'epoch' WHERE id = $1",
                &[&&*me],
            )
            .await;
    }
}

/// How often an instance forgets instances that have been gone an hour and own nothing (a
/// default name is new on every start, so restarts would otherwise pile up).
const TIDY_EVERY: Duration = Duration::from_secs(600);

/// Takes batches of jobs until every sender is gone.
async fn writer(pool: Pool, rx: Arc<Mutex<mpsc::Receiver<Job>>>, fault: Arc<Faults>, me: Arc<str>) {
    loop {
        let jobs = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut jobs = vec![first];
            while jobs.len() < MAX_JOBS {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            jobs
        };
        let mut client = match pool.get().await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("cannot reach the journal's database: {e}");
                fault.set_transient(Some(why.clone()));
                for job in jobs {
                    let _ = job.reply.send(Err(JournalError::Db(why.clone())));
                }
                continue;
            }
        };
        let ctx = ops::Ctx { me: &me };
        match batch(&mut client, &jobs, &ctx).await {
            Ok(answers) => {
                for (job, answer) in jobs.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(_) => {
                // One transaction each: the job that failed answers with its error alone.
                for job in jobs {
                    let r = single(&mut client, &job.op, &ctx).await;
                    if let Err(e) = &r
                        && client.is_closed()
                    {
                        fault.set_transient(Some(format!("journal write failed: {e}")));
                    }
                    let _ = job.reply.send(r.map_err(db));
                }
            }
        }
    }
}

async fn batch(
    client: &mut deadpool_postgres::Object,
    jobs: &[Job],
    ctx: &ops::Ctx<'_>,
) -> Result<Vec<Answer>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // Polled together, the jobs' statements go down the connection without waiting for each
    // other's answers (tokio-postgres pipelines them).
    let answers = futures::future::join_all(jobs.iter().map(|j| ops::exec(&tx, &j.op, ctx))).await;
    let answers = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    Ok(answers)
}

async fn single(
    client: &mut deadpool_postgres::Object,
    op: &Op,
    ctx: &ops::Ctx<'_>,
) -> Result<Answer, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let answer = ops::exec(&tx, op, ctx).await?;
    tx.commit().await?;
    Ok(answer)
}

/// Finished events deleted per retention statement.
const PRUNE_CHUNK: i64 = 500;

impl Store for PostgresStore {
    fn shares_trigger_state(&self) -> bool {
        true
    }

    fn trigger_step<'a>(
        &'a self,
        route: &'a str,
        mut keys: Vec<String>,
        step: super::TriggerStep<'a>,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            // In one order everywhere, so two steps on overlapping buckets never deadlock. A
            // bucket not stored yet has no row to lock; the advisory lock covers it too.
            keys.sort();
            keys.dedup();
            for key in &keys {
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
                    &[&route, key],
                )
                .await
                .map_err(db)?;
            }
            let rows = tx
                .query(
                    "SELECT key, state FROM switchyard.trigger_states WHERE route = $1 AND key = ANY($2)",
                    &[&route, &keys],
                )
                .await
                .map_err(db)?;
            let Some(change) = step(stored_states(&rows)) else {
                return tx.commit().await.map_err(db);
            };
            let op = self.absorb_op(&change)?;
            let ctx = ops::Ctx { me: &self.me };
            ops::exec(&tx, &op, &ctx).await.map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }

    fn fault(&self) -> Option<String> {
        if self.lease_lost.load(Ordering::Acquire) {
            return Some(format!(
                "instance {} lost its lease in the shared journal (cannot renew it)",
                self.me
            ));
        }
        self.fault.get()
    }

    fn describe(&self) -> String {
        format!("{} (instance {})", self.shown, self.me)
    }

    fn check(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let probe = async {
                let c = self.client().await?;
                c.execute(
                    "INSERT INTO switchyard.meta (key, value) VALUES ('probed_at', $1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&now_ms().to_string()],
                )
                .await
                .map_err(db)
            };
            match probe.await {
                Ok(_) => self.fault.set_transient(None),
                Err(e) => self.fault.set_transient(Some(e.to_string())),
            }
            self.fault()
        })
    }

    fn accept<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<Accepted, JournalError>> {
        Box::pin(async move {
            match self.submit(self.insert_op(event, None)?).await? {
                Answer::Accepted(a) => Ok(a),
                other => Err(ops::unexpected(&other)),
            }
        })
    }

    fn accept_skipped<'a>(
        &'a self,
        event: &'a Event,
        skipped: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Accepted, JournalError>> {
        Box::pin(async move {
            match self.submit(self.insert_op(event, Some(skipped))?).await? {
                Answer::Accepted(a) => Ok(a),
                other => Err(ops::unexpected(&other)),
            }
        })
    }

    fn absorb<'a>(&'a self, change: &'a TriggerChange) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move { self.submit(self.absorb_op(change)?).await.map(|_| ()) })
    }

    fn trigger_states<'a>(
        &'a self,
        route: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, serde_json::Value)>, JournalError>> {
        Box::pin(async move {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT key, state FROM switchyard.trigger_states WHERE route = $1 ORDER BY key",
                    &[&route],
                )
                .await
                .map_err(db)?;
            Ok(stored_states(&rows))
        })
    }

    fn attempt_failed<'a>(
        &'a self,
        event_id: &'a str,
        route: &'a str,
        attempt: u32,
        error: &'a str,
        retryable: bool,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        let op = Op::AttemptFailed {
            event_id: event_id.into(),
            route: route.into(),
            attempt: i64::from(attempt),
            detail: super::attempt_detail(error, retryable),
        };
        Box::pin(async move { self.submit(op).await.map(|_| ()) })
    }

    fn settle<'a>(
        &'a self,
        event_id: &'a str,
        route: &'a str,
        settlement: &'a Settlement,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        let op = Op::Settle {
            event_id: event_id.into(),
            route: route.into(),
            settlement: Arc::new(settlement.clone()),
        };
        Box::pin(async move { self.submit(op).await.map(|_| ()) })
    }

    fn finish_skipped<'a>(
        &'a self,
        event_id: &'a str,
        skipped: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<EventStatus, JournalError>> {
        Box::pin(async move {
            let skips = if skipped.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&skipped).map_err(db)?)
            };
            let op = Op::Finish {
                event_id: event_id.into(),
                skips,
            };
            match self.submit(op).await? {
                Answer::Status(s) => Ok(s),
                other => Err(ops::unexpected(&other)),
            }
        })
    }

    fn pending_before(
        &self,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<PendingEvent>, JournalError>> {
        let before = before.map_or(i64::MAX, |t| t.timestamp_millis());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            // This instance's own events, and those of instances whose lease lapsed, claimed
            // in one statement: rows another instance is claiming are skipped, not waited for.
            let rows = tx
                .query(
                    &format!(
                        "WITH claimable AS (
                             SELECT e.id FROM switchyard.events e
                             WHERE e.status = 'pending' AND e.accepted_at < $1
                               AND (e.owner IS NULL OR e.owner = $2 OR NOT EXISTS (
                                   SELECT 1 FROM switchyard.instances i WHERE i.id = e.owner
                                     AND i.heartbeat_at > now() - make_interval(secs => i.lease)))
                             ORDER BY e.accepted_at, e.seq LIMIT $3
                             FOR UPDATE OF e SKIP LOCKED)
                         UPDATE switchyard.events ev SET owner = $2 FROM claimable
                         WHERE ev.id = claimable.id
                         RETURNING {}, ev.owner IS DISTINCT FROM $2 AS foreign, ev.seq",
                        ops::EVENT_COLUMNS_EV
                    ),
                    &[&before, &&*self.me, &limit],
                )
                .await
                .map_err(db)?;
            let mut events = Vec::with_capacity(rows.len());
            for r in &rows {
                let accepted: i64 = r.try_get(8).map_err(db)?;
                let seq: i64 = r.try_get(10).map_err(db)?;
                events.push((
                    accepted,
                    seq,
                    ops::event_from_row(r).map_err(JournalError::Db)?,
                ));
            }
            events.sort_by_key(|(a, s, _)| (*a, *s));
            let ids: Vec<&str> = events.iter().map(|(_, _, e)| e.id.as_str()).collect();
            let settled = tx
                .query(
                    "SELECT event_id, route FROM switchyard.route_states WHERE event_id = ANY($1) ORDER BY route",
                    &[&ids],
                )
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            let mut by_event: std::collections::HashMap<String, Vec<String>> =
                std::collections::HashMap::new();
            for r in &settled {
                let (event, route): (String, String) =
                    (r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?);
                by_event.entry(event).or_default().push(route);
            }
            Ok(events
                .into_iter()
                .map(|(_, _, event)| {
                    let settled = by_event.remove(&event.id).unwrap_or_default();
                    PendingEvent { event, settled }
                })
                .collect())
        })
    }

    fn list_events<'a>(
        &'a self,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<EventSummary>, JournalError>> {
        Box::pin(async move {
            let c = self.client().await?;
            let (after_at, after_seq) = filter.after.unzip();
            let limit = i64::try_from(filter.limit.max(1)).unwrap_or(i64::MAX);
            let rows = c
                .query(
                    "SELECT e.id, e.source, e.name, e.status, e.accepted_at, e.seq,
                        ARRAY(SELECT d.flow_run_id FROM switchyard.decisions d
                              WHERE d.event_id = e.id AND d.kind = 'run_created'
                              GROUP BY d.flow_run_id ORDER BY MIN(d.id))
                     FROM switchyard.events e
                     WHERE ($1::text IS NULL OR e.status = $1) AND ($2::text IS NULL OR e.source = $2)
                       AND ($4::text IS NULL OR e.name = $4)
                       AND ($5::text IS NULL
                            OR EXISTS (SELECT 1 FROM switchyard.decisions d WHERE d.event_id = e.id AND d.route = $5)
                            OR EXISTS (SELECT 1 FROM jsonb_array_elements(COALESCE(e.skips, '[]')::jsonb) s WHERE s->>0 = $5))
                       AND ($6::text IS NULL OR strpos(e.payload, $6) > 0 OR strpos(e.labels, $6) > 0)
                       AND ($7::bigint IS NULL OR e.accepted_at >= $7) AND ($8::bigint IS NULL OR e.accepted_at < $8)
                       AND ($9::bigint IS NULL OR e.accepted_at < $9 OR (e.accepted_at = $9 AND e.seq < $10))
                     ORDER BY e.accepted_at DESC, e.seq DESC LIMIT $3",
                    &[
                        &filter.status.map(EventStatus::as_str),
                        &filter.source,
                        &limit,
                        &filter.name,
                        &filter.route,
                        &filter.text,
                        &filter.since.map(|t| t.timestamp_millis()),
                        &filter.until.map(|t| t.timestamp_millis()),
                        &after_at,
                        &after_seq,
                    ],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let runs: Vec<Option<String>> = r.try_get(6)?;
                    let accepted: i64 = r.try_get(4)?;
                    Ok(EventSummary {
                        id: r.try_get(0)?,
                        source: r.try_get(1)?,
                        name: r.try_get(2)?,
                        status: EventStatus::parse(r.try_get(3)?),
                        accepted_at: from_ms(accepted),
                        runs: runs.into_iter().flatten().collect(),
                        position: (accepted, r.try_get(5)?),
                    })
                })
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(db)
        })
    }

    fn event<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<EventDetail>, JournalError>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    &format!(
                        "SELECT {}, skips, finished_at FROM switchyard.events WHERE id = $1",
                        ops::EVENT_COLUMNS
                    ),
                    &[&id],
                )
                .await
                .map_err(db)?;
            let Some(row) = row else { return Ok(None) };
            let event = ops::event_from_row(&row).map_err(JournalError::Db)?;
            let status: String = row.try_get(7).map_err(db)?;
            let accepted: i64 = row.try_get(8).map_err(db)?;
            let skips: Option<String> = row.try_get(9).map_err(db)?;
            let finished: Option<i64> = row.try_get(10).map_err(db)?;
            let rows = c
                .query(
                    "SELECT route, kind, detail, flow_run_id, flow_run_name, deployment, replayed, attempt, at
                     FROM switchyard.decisions WHERE event_id = $1 ORDER BY id",
                    &[&id],
                )
                .await
                .map_err(db)?;
            let decisions = rows
                .iter()
                .map(|r| {
                    Ok(Decision {
                        route: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        detail: r.try_get(2)?,
                        flow_run_id: r.try_get(3)?,
                        flow_run_name: r.try_get(4)?,
                        deployment: r.try_get(5)?,
                        replayed: r.try_get(6)?,
                        attempt: r
                            .try_get::<_, Option<i64>>(7)?
                            .and_then(|a| u32::try_from(a).ok()),
                        at: from_ms(r.try_get(8)?),
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(db)?;
            let decisions = super::with_skips(decisions, skips.as_deref(), finished.map(from_ms));
            let followed = c
                .query(
                    &format!(
                        "SELECT {} FROM switchyard.runs WHERE event_id = $1 ORDER BY created_at, flow_run_id",
                        ops::RUN_COLUMNS
                    ),
                    &[&id],
                )
                .await
                .map_err(db)?
                .iter()
                .map(ops::run_from_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            Ok(Some(EventDetail {
                event,
                status: EventStatus::parse(&status),
                accepted_at: from_ms(accepted),
                decisions,
                followed,
            }))
        })
    }

    fn dead_letters(
        &self,
        include_resolved: bool,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, JournalError>> {
        Box::pin(async move {
            let c = self.client().await?;
            let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
            let rows = c
                .query(
                    &format!(
                        "SELECT {} FROM switchyard.dead_letters WHERE ($1 OR resolved_at IS NULL) ORDER BY id DESC LIMIT $2",
                        ops::DEAD_LETTER_COLUMNS
                    ),
                    &[&include_resolved, &limit],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(ops::dead_letter_from_row)
                .collect::<Result<_, _>>()
                .map_err(db)
        })
    }

    fn dead_letter(&self, id: i64) -> BoxFuture<'_, Result<Option<DeadLetter>, JournalError>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    &format!(
                        "SELECT {} FROM switchyard.dead_letters WHERE id = $1",
                        ops::DEAD_LETTER_COLUMNS
                    ),
                    &[&id],
                )
                .await
                .map_err(db)?;
            row.as_ref()
                .map(ops::dead_letter_from_row)
                .transpose()
                .map_err(db)
        })
    }

    fn resolve_dead_letter<'a>(
        &'a self,
        id: i64,
        resolution: &'a str,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            tx.execute(
                "UPDATE switchyard.dead_letters SET resolved_at = $2, resolution = $3 WHERE id = $1 AND resolved_at IS NULL",
                &[&id, &now_ms(), &resolution],
            )
            .await
            .map_err(db)?;
            tx.execute(
                "UPDATE switchyard.events e SET status = 'done'
                 WHERE e.status = 'dead' AND e.id = (SELECT event_id FROM switchyard.dead_letters WHERE id = $1)
                   AND NOT EXISTS (SELECT 1 FROM switchyard.dead_letters d WHERE d.event_id = e.id AND d.resolved_at IS NULL)",
                &[&id],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }

    fn prune(&self, retention: Retention) -> BoxFuture<'_, Result<u64, JournalError>> {
        Box::pin(async move {
            // A connection of its own, closed (not returned to the pool) when this ends or is
            // dropped halfway: the session-level lock below never outlives it.
            let c = deadpool_postgres::Object::take(self.client().await?);
            // One instance at a time; the lock goes with the session if this one dies.
            let locked: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&RETENTION_LOCK])
                .await
                .map_err(db)?
                .try_get(0)
                .map_err(db)?;
            if !locked {
                return Ok(0);
            }
            let result = prune_locked(&c, retention).await;
            let _ = c
                .execute("SELECT pg_advisory_unlock($1)", &[&RETENTION_LOCK])
                .await;
            result
        })
    }

    fn runs_due(
        &self,
        limit: usize,
        hold: Duration,
    ) -> BoxFuture<'_, Result<Vec<FollowedRun>, JournalError>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let hold = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        Box::pin(async move {
            let c = self.client().await?;
            let now = now_ms();
            // SKIP LOCKED: instances asking together are given different runs.
            let rows = c
                .query(
                    &format!(
                        "UPDATE switchyard.runs r SET next_check_at = $1 FROM (
                            SELECT flow_run_id FROM switchyard.runs
                            WHERE ended_at IS NULL AND next_check_at <= $2
                            ORDER BY next_check_at LIMIT $3 FOR UPDATE SKIP LOCKED) d
                         WHERE r.flow_run_id = d.flow_run_id RETURNING {}",
                        ops::RUN_COLUMNS_R
                    ),
                    &[&now.saturating_add(hold), &now, &limit],
                )
                .await
                .map_err(db)?;
            let mut runs = rows
                .iter()
                .map(ops::run_from_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            runs.sort_by_key(|r| r.changed_at);
            Ok(runs)
        })
    }

    fn runs_seen(
        &self,
        seen: Vec<RunSeen>,
    ) -> BoxFuture<'_, Result<Vec<RunChanged>, JournalError>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            let now = now_ms();
            let changed_st = tx
                .prepare_cached(&format!(
                    "UPDATE switchyard.runs r SET state_type = $2, state_name = $3, changed_at = $4, next_check_at = $5,
                         ended_at = CASE WHEN $6::BOOLEAN THEN $4::BIGINT END
                     WHERE flow_run_id = $1 AND ended_at IS NULL
                       AND (state_type IS DISTINCT FROM $2 OR state_name IS DISTINCT FROM $3)
                     RETURNING {}",
                    ops::RUN_COLUMNS_R
                ))
                .await
                .map_err(db)?;
            let decision_st = tx
                .prepare_cached(
                    "INSERT INTO switchyard.decisions (event_id, route, kind, detail, flow_run_id, flow_run_name, deployment, at)
                     VALUES ($1, $2, 'run_state', $3, $4, $5, $6, $7)",
                )
                .await
                .map_err(db)?;
            let same_st = tx
                .prepare_cached(
                    "UPDATE switchyard.runs SET next_check_at = $2, ended_at = CASE WHEN $3::BOOLEAN THEN $4::BIGINT END
                     WHERE flow_run_id = $1 AND ended_at IS NULL",
                )
                .await
                .map_err(db)?;
            let mut changed = Vec::new();
            for s in seen {
                let next = s.next_check.timestamp_millis();
                let row = tx
                    .query_opt(
                        &changed_st,
                        &[
                            &s.flow_run_id,
                            &s.state.0,
                            &s.state.1,
                            &now,
                            &next,
                            &s.ended,
                        ],
                    )
                    .await
                    .map_err(db)?;
                match row {
                    Some(row) => {
                        let run = ops::run_from_row(&row).map_err(db)?;
                        tx.execute(
                            &decision_st,
                            &[
                                &run.event_id,
                                &run.route,
                                &run.state_name,
                                &run.flow_run_id,
                                &run.flow_run_name,
                                &run.deployment,
                                &now,
                            ],
                        )
                        .await
                        .map_err(db)?;
                        changed.push(RunChanged {
                            run,
                            ended: s.ended,
                        });
                    }
                    None => {
                        tx.execute(&same_st, &[&s.flow_run_id, &next, &s.ended, &now])
                            .await
                            .map_err(db)?;
                    }
                }
            }
            tx.commit().await.map_err(db)?;
            Ok(changed)
        })
    }

    fn unfinished_runs<'a>(
        &'a self,
        route: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FollowedRun>, JournalError>> {
        Box::pin(async move {
            let c = self.client().await?;
            c.query(
                &format!(
                    "SELECT {} FROM switchyard.runs WHERE route = $1 AND concurrency_key = $2 AND ended_at IS NULL ORDER BY created_at",
                    ops::RUN_COLUMNS
                ),
                &[&route, &key],
            )
            .await
            .map_err(db)?
            .iter()
            .map(ops::run_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)
        })
    }

    fn followed_run<'a>(
        &'a self,
        flow_run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<FollowedRun>, JournalError>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    &format!(
                        "SELECT {} FROM switchyard.runs WHERE flow_run_id = $1",
                        ops::RUN_COLUMNS
                    ),
                    &[&flow_run_id],
                )
                .await
                .map_err(db)?;
            row.as_ref().map(ops::run_from_row).transpose().map_err(db)
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<(u64, u64), JournalError>> {
        Box::pin(async move {
            let c = self.client().await?;
            let r = c
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM switchyard.events WHERE status = 'pending'),
                            (SELECT COUNT(*) FROM switchyard.dead_letters WHERE resolved_at IS NULL)",
                    &[],
                )
                .await
                .map_err(db)?;
            let n = |i: usize| {
                r.try_get::<_, i64>(i)
                    .map(|v| u64::try_from(v).unwrap_or(0))
            };
            Ok((n(0).map_err(db)?, n(1).map_err(db)?))
        })
    }

    fn instances(&self) -> BoxFuture<'_, Result<Vec<Instance>, JournalError>> {
        Box::pin(async move {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT i.id, i.host, i.pid, i.started_at, i.heartbeat_at,
                        i.heartbeat_at > now() - make_interval(secs => i.lease),
                        (SELECT COUNT(*) FROM switchyard.events e WHERE e.status = 'pending' AND e.owner = i.id)
                     FROM switchyard.instances i ORDER BY i.id",
                    &[],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let id: String = r.try_get(0)?;
                    Ok(Instance {
                        this: id == *self.me,
                        id,
                        host: r.try_get(1)?,
                        pid: r.try_get(2)?,
                        started_at: r.try_get(3)?,
                        heartbeat_at: r.try_get(4)?,
                        alive: r.try_get(5)?,
                        pending: u64::try_from(r.try_get::<_, i64>(6)?).unwrap_or(0),
                    })
                })
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(db)
        })
    }
}

/// Retention's deletes, once the lock is held: the bound first (the newest finished event to
/// go), then chunks each its own statement, so accepts commit between them.
async fn prune_locked(
    c: &deadpool_postgres::ClientWrapper,
    retention: Retention,
) -> Result<u64, JournalError> {
    let age = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let by_age = (now_ms().saturating_sub(age), i64::MAX);
    let offset = i64::try_from(retention.max_events).unwrap_or(i64::MAX);
    let by_count = c
        .query_opt(
            "SELECT finished_at, seq FROM switchyard.events WHERE status = 'done'
             ORDER BY finished_at DESC, seq DESC LIMIT 1 OFFSET $1",
            &[&offset],
        )
        .await
        .map_err(db)?
        .map(|r| Ok::<_, tokio_postgres::Error>((r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?)))
        .transpose()
        .map_err(db)?;
    let (finished, seq) = by_count.map_or(by_age, |c| c.max(by_age));
    let mut deleted = 0u64;
    loop {
        let n = c
            .execute(
                "DELETE FROM switchyard.events WHERE id IN (
                     SELECT id FROM switchyard.events WHERE status = 'done' AND finished_at <= $1
                       AND (finished_at < $1 OR seq <= $2)
                     ORDER BY finished_at, seq LIMIT $3)",
                &[&finished, &seq, &PRUNE_CHUNK],
            )
            .await
            .map_err(db)?;
        deleted += n;
        if n < PRUNE_CHUNK as u64 {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests;
