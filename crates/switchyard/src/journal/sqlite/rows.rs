//! Rows to types and back: events, dead letters, a route's recorded decision.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use switchyard_core::Event;

use super::from_ms;
use crate::journal::{DeadLetter, FollowedRun, Settlement};

pub(super) fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let parse_time = |i: usize| -> rusqlite::Result<DateTime<Utc>> {
        let s: String = r.get(i)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
    };
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
        let s: String = r.get(i)?;
        serde_json::from_str(&s).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(Event {
        id: r.get(0)?,
        source: r.get(1)?,
        name: r.get(2)?,
        occurred: parse_time(3)?,
        received: parse_time(4)?,
        payload: json(5)?,
        labels: serde_json::from_value(json(6)?).unwrap_or_default(),
    })
}

pub(super) const EVENT_COLUMNS: &str =
    "id, source, name, occurred, received, payload, labels, status, accepted_at";

pub(super) fn settled_routes(conn: &Connection, event_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT route FROM route_states WHERE event_id = ?1 ORDER BY route")?;
    stmt.query_map(params![event_id], |r| r.get(0))?.collect()
}

pub(super) fn dead_letter_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get(0)?,
        event_id: r.get(1)?,
        route: r.get(2)?,
        reason: r.get(3)?,
        retryable: r.get::<_, i64>(4)? != 0,
        attempts: r.get::<_, i64>(5)? as u32,
        at: from_ms(r.get(6)?),
        resolution: r.get(7)?,
    })
}

pub(super) const DEAD_LETTER_COLUMNS: &str =
    "id, event_id, route, reason, retryable, attempts, at, resolution";

/// Records a route's final decision (inside the caller's transaction).
pub(super) fn record_settlement(
    conn: &Connection,
    event_id: &str,
    route: &str,
    s: &Settlement,
    at: i64,
) -> rusqlite::Result<()> {
    let status = match s {
        Settlement::Skipped { reason } => {
            conn.prepare_cached(
                "INSERT INTO decisions (event_id, route, kind, detail, at) VALUES (?1, ?2, 'skipped', ?3, ?4)",
            )?
            .execute(params![event_id, route, reason, at])?;
            "skipped"
        }
        Settlement::Ran(run) => {
            conn.prepare_cached(
                "INSERT INTO decisions (event_id, route, kind, flow_run_id, flow_run_name, deployment, replayed, at)
                 VALUES (?1, ?2, 'run_created', ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                event_id,
                route,
                run.flow_run_id.to_string(),
                run.flow_run_name,
                run.deployment,
                run.replayed,
                at
            ])?;
            conn.prepare_cached(
                "INSERT INTO runs (flow_run_id, event_id, route, flow_run_name, deployment, state_type, state_name, created_at, changed_at, next_check_at, concurrency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'SCHEDULED', 'Scheduled', ?6, ?6, ?6, ?7) ON CONFLICT (flow_run_id) DO NOTHING",
            )?
            .execute(params![
                run.flow_run_id.to_string(),
                event_id,
                route,
                run.flow_run_name,
                run.deployment,
                at,
                run.concurrency_key
            ])?;
            "ran"
        }
        Settlement::WouldRun(w) => {
            let detail = serde_json::json!({
                "parameters": w.parameters,
                "idempotency_key": w.idempotency_key,
            });
            conn.prepare_cached(
                "INSERT INTO decisions (event_id, route, kind, detail, flow_run_name, deployment, at)
                 VALUES (?1, ?2, 'would_run', ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                event_id,
                route,
                detail.to_string(),
                w.flow_run_name,
                w.deployment,
                at
            ])?;
            "would_run"
        }
        Settlement::DeadLettered {
            reason,
            retryable,
            attempts,
        } => {
            conn.prepare_cached(
                "INSERT INTO decisions (event_id, route, kind, detail, attempt, at) VALUES (?1, ?2, 'dead_lettered', ?3, ?4, ?5)",
            )?
            .execute(params![event_id, route, reason, attempts, at])?;
            conn.prepare_cached(
                "INSERT INTO dead_letters (event_id, route, reason, retryable, attempts, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![event_id, route, reason, retryable, attempts, at])?;
            "dead_lettered"
        }
    };
    conn.prepare_cached(
        "INSERT INTO route_states (event_id, route, status) VALUES (?1, ?2, ?3)
         ON CONFLICT (event_id, route) DO UPDATE SET status = excluded.status",
    )?
    .execute(params![event_id, route, status])?;
    Ok(())
}

/// The columns [`run_from_row`] reads.
pub(super) const RUN_COLUMNS: &str = "flow_run_id, flow_run_name, deployment, event_id, route, state_type, state_name, created_at, changed_at, ended_at";

/// A followed run from [`RUN_COLUMNS`].
pub(super) fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FollowedRun> {
    Ok(FollowedRun {
        flow_run_id: r.get(0)?,
        flow_run_name: r.get(1)?,
        deployment: r.get(2)?,
        event_id: r.get(3)?,
        route: r.get(4)?,
        state_type: r.get(5)?,
        state_name: r.get(6)?,
        created_at: from_ms(r.get(7)?),
        changed_at: from_ms(r.get(8)?),
        ended_at: r.get::<_, Option<i64>>(9)?.map(from_ms),
    })
}
