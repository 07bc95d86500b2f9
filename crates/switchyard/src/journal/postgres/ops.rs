//! The writes a batch carries, each as data (a batch that fails runs its jobs again one by
//! one), and rows back to types.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use switchyard_core::Event;
use tokio_postgres::Row;

use super::now_ms;
use crate::journal::{Accepted, DeadLetter, EventStatus, FollowedRun, JournalError, Settlement};

/// An event as its row holds it.
#[derive(Debug)]
pub(super) struct EventRow {
    id: String,
    source: String,
    name: String,
    occurred: String,
    received: String,
    payload: String,
    labels: String,
    digest: String,
}

impl EventRow {
    /// The event's row: its payload and labels as JSON text, and its digest.
    pub(super) fn new(e: &Event) -> Result<Self, JournalError> {
        let payload = serde_json::to_string(&e.payload).map_err(super::db)?;
        let labels = serde_json::to_string(&e.labels).map_err(super::db)?;
        Ok(Self {
            digest: crate::journal::digest(&e.name, &payload),
            id: e.id.clone(),
            source: e.source.clone(),
            name: e.name.clone(),
            occurred: e.occurred.to_rfc3339(),
            received: e.received.to_rfc3339(),
            payload,
            labels,
        })
    }
}

/// A trigger step (see [`crate::journal::TriggerChange`]), its states as JSON text.
#[derive(Debug)]
pub(super) struct Absorb {
    pub(super) route: String,
    pub(super) firings: Vec<EventRow>,
    pub(super) states: Vec<(String, Option<String>)>,
    pub(super) settles: Option<(String, String)>,
}

/// One write.
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// Journal a received event: pending and owned by this instance, or (`done`) finished
    /// with its skips.
    Insert {
        row: Arc<EventRow>,
        done: bool,
        skips: Option<String>,
    },
    Absorb(Arc<Absorb>),
    AttemptFailed {
        event_id: String,
        route: String,
        attempt: i64,
        detail: String,
    },
    Settle {
        event_id: String,
        route: String,
        settlement: Arc<Settlement>,
    },
    Finish {
        event_id: String,
        skips: Option<String>,
    },
}

/// What a write answers.
#[derive(Debug)]
pub(super) enum Answer {
    Accepted(Accepted),
    Status(EventStatus),
    Done,
}

pub(super) fn unexpected(a: &Answer) -> JournalError {
    JournalError::Db(format!("unexpected answer from the journal writer: {a:?}"))
}

/// Who is writing, for ownership and leases.
pub(super) struct Ctx<'a> {
    pub(super) me: &'a str,
}

pub(super) async fn exec<C: GenericClient + Sync>(
    c: &C,
    op: &Op,
    ctx: &Ctx<'_>,
) -> Result<Answer, tokio_postgres::Error> {
    match op {
        Op::Insert { row, done, skips } => insert(c, row, *done, skips.as_deref(), ctx)
            .await
            .map(Answer::Accepted),
        Op::Absorb(a) => absorb(c, a, ctx).await.map(|()| Answer::Done),
        Op::AttemptFailed {
            event_id,
            route,
            attempt,
            detail,
        } => {
            let st = c
                .prepare_cached(
                    "INSERT INTO switchyard.decisions (event_id, route, kind, detail, attempt, at)
                     VALUES ($1, $2, 'attempt_failed', $3, $4, $5)",
                )
                .await?;
            c.execute(&st, &[event_id, route, detail, attempt, &now_ms()])
                .await?;
            Ok(Answer::Done)
        }
        Op::Settle {
            event_id,
            route,
            settlement,
        } => settle(c, event_id, route, settlement)
            .await
            .map(|()| Answer::Done),
        Op::Finish { event_id, skips } => {
            let st = c
                .prepare_cached(
                    "UPDATE switchyard.events SET finished_at = $2, skips = $3, status = CASE WHEN EXISTS (
                         SELECT 1 FROM switchyard.dead_letters WHERE event_id = $1 AND resolved_at IS NULL)
                       THEN 'dead' ELSE 'done' END
                     WHERE id = $1 RETURNING status",
                )
                .await?;
            let r = c.query_one(&st, &[event_id, &now_ms(), skips]).await?;
            Ok(Answer::Status(EventStatus::parse(r.try_get(0)?)))
        }
    }
}

async fn insert<C: GenericClient + Sync>(
    c: &C,
    e: &EventRow,
    done: bool,
    skips: Option<&str>,
    ctx: &Ctx<'_>,
) -> Result<Accepted, tokio_postgres::Error> {
    let st = c
        .prepare_cached(if done {
            "INSERT INTO switchyard.events (id, source, name, occurred, received, payload, labels, status, accepted_at, finished_at, digest, skips, owner)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'done', $8, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
        } else {
            "INSERT INTO switchyard.events (id, source, name, occurred, received, payload, labels, status, accepted_at, digest, skips, owner)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
        })
        .await?;
    let inserted = c
        .execute(
            &st,
            &[
                &e.id,
                &e.source,
                &e.name,
                &e.occurred,
                &e.received,
                &e.payload,
                &e.labels,
                &now_ms(),
                &e.digest,
                &skips,
                &ctx.me,
            ],
        )
        .await?;
    if inserted == 1 {
        return Ok(Accepted::New);
    }
    // Already journaled, by this instance or another: the same message, or another one under
    // a reused id; held by a live instance, or free to take.
    let st = c
        .prepare_cached(
            "SELECT e.status, e.digest, e.owner,
                 e.owner IS NOT NULL AND e.owner <> $2 AND EXISTS (
                     SELECT 1 FROM switchyard.instances i WHERE i.id = e.owner
                       AND i.heartbeat_at > now() - make_interval(secs => i.lease))
             FROM switchyard.events e WHERE e.id = $1",
        )
        .await?;
    let r = c.query_one(&st, &[&e.id, &ctx.me]).await?;
    let status = EventStatus::parse(r.try_get(0)?);
    let digest: Option<String> = r.try_get(1)?;
    if digest.is_some_and(|d| d != e.digest) {
        return Ok(Accepted::Conflict);
    }
    if status == EventStatus::Pending {
        if r.try_get::<_, bool>(3)? {
            return Ok(Accepted::Elsewhere);
        }
        let owner: Option<String> = r.try_get(2)?;
        if owner.as_deref() != Some(ctx.me) {
            // Its owner's lease lapsed: this delivery takes it over, unless another instance
            // took it first.
            let st = c
                .prepare_cached(
                    "UPDATE switchyard.events SET owner = $2
                     WHERE id = $1 AND status = 'pending' AND owner IS NOT DISTINCT FROM $3",
                )
                .await?;
            if c.execute(&st, &[&e.id, &ctx.me, &owner]).await? == 0 {
                return Ok(Accepted::Elsewhere);
            }
        }
    }
    Ok(Accepted::Duplicate {
        status,
        settled: settled_routes(c, &e.id).await?,
    })
}

async fn settled_routes<C: GenericClient + Sync>(
    c: &C,
    event_id: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let st = c
        .prepare_cached(
            "SELECT route FROM switchyard.route_states WHERE event_id = $1 ORDER BY route",
        )
        .await?;
    c.query(&st, &[&event_id])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

async fn absorb<C: GenericClient + Sync>(
    c: &C,
    a: &Absorb,
    ctx: &Ctx<'_>,
) -> Result<(), tokio_postgres::Error> {
    let at = now_ms();
    if !a.firings.is_empty() {
        // Firings first: an id already journaled (a replayed event) is not a second one.
        let st = c
            .prepare_cached(
                "INSERT INTO switchyard.events (id, source, name, occurred, received, payload, labels, status, accepted_at, owner)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) ON CONFLICT (id) DO NOTHING",
            )
            .await?;
        for e in &a.firings {
            c.execute(
                &st,
                &[
                    &e.id,
                    &e.source,
                    &e.name,
                    &e.occurred,
                    &e.received,
                    &e.payload,
                    &e.labels,
                    &at,
                    &ctx.me,
                ],
            )
            .await?;
        }
    }
    for (key, state) in &a.states {
        match state {
            Some(v) => {
                let st = c
                    .prepare_cached(
                        "INSERT INTO switchyard.trigger_states (route, key, state) VALUES ($1, $2, $3)
                         ON CONFLICT (route, key) DO UPDATE SET state = excluded.state",
                    )
                    .await?;
                c.execute(&st, &[&a.route, key, v]).await?;
            }
            None => {
                let st = c
                    .prepare_cached(
                        "DELETE FROM switchyard.trigger_states WHERE route = $1 AND key = $2",
                    )
                    .await?;
                c.execute(&st, &[&a.route, key]).await?;
            }
        }
    }
    if let Some((event_id, reason)) = &a.settles {
        let st = c
            .prepare_cached(
                "INSERT INTO switchyard.decisions (event_id, route, kind, detail, at) VALUES ($1, $2, 'absorbed', $3, $4)",
            )
            .await?;
        c.execute(&st, &[event_id, &a.route, reason, &at]).await?;
        route_state(c, event_id, &a.route, "absorbed").await?;
    }
    Ok(())
}

async fn route_state<C: GenericClient + Sync>(
    c: &C,
    event_id: &str,
    route: &str,
    status: &str,
) -> Result<(), tokio_postgres::Error> {
    let st = c
        .prepare_cached(
            "INSERT INTO switchyard.route_states (event_id, route, status) VALUES ($1, $2, $3)
             ON CONFLICT (event_id, route) DO UPDATE SET status = excluded.status",
        )
        .await?;
    c.execute(&st, &[&event_id, &route, &status]).await?;
    Ok(())
}

/// Records a route's final decision (inside the batch's transaction).
async fn settle<C: GenericClient + Sync>(
    c: &C,
    event_id: &str,
    route: &str,
    s: &Settlement,
) -> Result<(), tokio_postgres::Error> {
    let at = now_ms();
    let status = match s {
        Settlement::Skipped { reason } => {
            let st = c
                .prepare_cached(
                    "INSERT INTO switchyard.decisions (event_id, route, kind, detail, at) VALUES ($1, $2, 'skipped', $3, $4)",
                )
                .await?;
            c.execute(&st, &[&event_id, &route, reason, &at]).await?;
            "skipped"
        }
        Settlement::Ran(run) => {
            let st = c
                .prepare_cached(
                    "INSERT INTO switchyard.decisions (event_id, route, kind, flow_run_id, flow_run_name, deployment, replayed, at)
                     VALUES ($1, $2, 'run_created', $3, $4, $5, $6, $7)",
                )
                .await?;
            c.execute(
                &st,
                &[
                    &event_id,
                    &route,
                    &run.flow_run_id.to_string(),
                    &run.flow_run_name,
                    &run.deployment,
                    &run.replayed,
                    &at,
                ],
            )
            .await?;
            let st = c
                .prepare_cached(
                    "INSERT INTO switchyard.runs (flow_run_id, event_id, route, flow_run_name, deployment, state_type, state_name, created_at, changed_at, next_check_at, concurrency_key)
                     VALUES ($1, $2, $3, $4, $5, 'SCHEDULED', 'Scheduled', $6, $6, $6, $7) ON CONFLICT (flow_run_id) DO NOTHING",
                )
                .await?;
            c.execute(
                &st,
                &[
                    &run.flow_run_id.to_string(),
                    &event_id,
                    &route,
                    &run.flow_run_name,
                    &run.deployment,
                    &at,
                    &run.concurrency_key,
                ],
            )
            .await?;
            "ran"
        }
        Settlement::WouldRun(w) => {
            let detail = serde_json::json!({
                "parameters": w.parameters,
                "idempotency_key": w.idempotency_key,
            })
            .to_string();
            let st = c
                .prepare_cached(
                    "INSERT INTO switchyard.decisions (event_id, route, kind, detail, flow_run_name, deployment, at)
                     VALUES ($1, $2, 'would_run', $3, $4, $5, $6)",
                )
                .await?;
            c.execute(
                &st,
                &[
                    &event_id,
                    &route,
                    &detail,
                    &w.flow_run_name,
                    &w.deployment,
                    &at,
                ],
            )
            .await?;
            "would_run"
        }
        Settlement::DeadLettered {
            reason,
            retryable,
            attempts,
        } => {
            let attempts = i64::from(*attempts);
            let st = c
                .prepare_cached(
                    "INSERT INTO switchyard.decisions (event_id, route, kind, detail, attempt, at) VALUES ($1, $2, 'dead_lettered', $3, $4, $5)",
                )
                .await?;
            c.execute(&st, &[&event_id, &route, reason, &attempts, &at])
                .await?;
            let st = c
                .prepare_cached(
                    "INSERT INTO switchyard.dead_letters (event_id, route, reason, retryable, attempts, at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await?;
            c.execute(&st, &[&event_id, &route, reason, retryable, &attempts, &at])
                .await?;
            "dead_lettered"
        }
    };
    route_state(c, event_id, route, status).await
}

/// The columns [`event_from_row`] reads, then the status and when it was accepted.
pub(super) const EVENT_COLUMNS: &str =
    "id, source, name, occurred, received, payload, labels, status, accepted_at";

/// [`EVENT_COLUMNS`] of the row an `UPDATE switchyard.events ev` returns.
pub(super) const EVENT_COLUMNS_EV: &str = "ev.id, ev.source, ev.name, ev.occurred, ev.received, ev.payload, ev.labels, ev.status, ev.accepted_at";

pub(super) fn event_from_row(r: &Row) -> Result<Event, String> {
    let text = |i: usize| -> Result<String, String> {
        r.try_get(i)
            .map_err(|e| format!("a stored event does not read: {e}"))
    };
    let time = |i: usize| -> Result<DateTime<Utc>, String> {
        DateTime::parse_from_rfc3339(&text(i)?)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("a stored time does not parse: {e}"))
    };
    let json = |i: usize| -> Result<serde_json::Value, String> {
        serde_json::from_str(&text(i)?)
            .map_err(|e| format!("a stored document does not parse: {e}"))
    };
    Ok(Event {
        id: text(0)?,
        source: text(1)?,
        name: text(2)?,
        occurred: time(3)?,
        received: time(4)?,
        payload: json(5)?,
        labels: serde_json::from_value(json(6)?).unwrap_or_default(),
    })
}

pub(super) const DEAD_LETTER_COLUMNS: &str =
    "id, event_id, route, reason, retryable, attempts, at, resolution";

pub(super) fn dead_letter_from_row(r: &Row) -> Result<DeadLetter, tokio_postgres::Error> {
    Ok(DeadLetter {
        id: r.try_get(0)?,
        event_id: r.try_get(1)?,
        route: r.try_get(2)?,
        reason: r.try_get(3)?,
        retryable: r.try_get(4)?,
        attempts: u32::try_from(r.try_get::<_, i64>(5)?).unwrap_or(u32::MAX),
        at: super::from_ms(r.try_get(6)?),
        resolution: r.try_get(7)?,
    })
}

/// The columns [`run_from_row`] reads.
pub(super) const RUN_COLUMNS: &str = "flow_run_id, flow_run_name, deployment, event_id, route, state_type, state_name, created_at, changed_at, ended_at";

/// [`RUN_COLUMNS`] of the row an `UPDATE switchyard.runs r` returns.
pub(super) const RUN_COLUMNS_R: &str = "r.flow_run_id, r.flow_run_name, r.deployment, r.event_id, r.route, r.state_type, r.state_name, r.created_at, r.changed_at, r.ended_at";

/// A followed run from [`RUN_COLUMNS`].
pub(super) fn run_from_row(r: &Row) -> Result<FollowedRun, tokio_postgres::Error> {
    Ok(FollowedRun {
        flow_run_id: r.try_get(0)?,
        flow_run_name: r.try_get(1)?,
        deployment: r.try_get(2)?,
        event_id: r.try_get(3)?,
        route: r.try_get(4)?,
        state_type: r.try_get(5)?,
        state_name: r.try_get(6)?,
        created_at: super::from_ms(r.try_get(7)?),
        changed_at: super::from_ms(r.try_get(8)?),
        ended_at: r.try_get::<_, Option<i64>>(9)?.map(super::from_ms),
    })
}
