//! The admin server's JSON API and its Prometheus and readiness endpoints. Each handler's
//! `#[utoipa::path]` is its entry in the OpenAPI document ([`super::openapi`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Admin;
use super::views::{
    DeadLettersPage, DeadLettersQuery, DecisionCounts, ErrorBody, EventView, EventsPage,
    EventsQuery, InstancesPage, JournalView, Overview, PrefectView, Ready, ReloadResult, Reloaded,
    Resolved, RouteCounters, RouteView, RoutesPage, RunState, RunView, SourceView,
};
use crate::config::SourceConfig;
use crate::journal::{EventFilter, EventStatus};
use crate::metrics;

/// How long a readiness probe waits for Prefect.
const PROBE: Duration = Duration::from_secs(2);
/// Runs whose live state one event page fetches from Prefect, at most.
const MAX_RUN_LOOKUPS: usize = 20;

type Answer<T> = Result<Json<T>, (StatusCode, Json<ErrorBody>)>;

fn fail(status: StatusCode, error: impl std::fmt::Display) -> (StatusCode, Json<ErrorBody>) {
    (
        status,
        Json(ErrorBody {
            error: error.to_string(),
        }),
    )
}

fn unavailable(error: impl std::fmt::Display) -> (StatusCode, Json<ErrorBody>) {
    fail(StatusCode::SERVICE_UNAVAILABLE, error)
}

/// A count as a gauge's value (saturating).
fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Every metric", content_type = "application/openmetrics-text", body = String)))]
pub(super) async fn metrics_text(State(s): State<Arc<Admin>>) -> Response {
    let m = metrics::get();
    m.queue_depth.set(count(s.dispatch.queued()));
    m.prefect_in_flight_limit.set(s.prefect().in_flight_limit());
    if let Ok((pending, open)) = s.journal.counts().await {
        m.journal_pending_events.set(count(pending));
        m.dead_letters_open.set(count(open));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

/// Sources that hold a connection (the others are up whenever the router is).
fn connects(s: &SourceConfig) -> bool {
    !matches!(s, SourceConfig::Stdin(_) | SourceConfig::Webhook(_))
}

fn is_up(src: &SourceConfig) -> bool {
    metrics::get()
        .source_up
        .get_or_create(&metrics::source(src.name()))
        .get()
        == 1
}

/// Why Prefect is not answering, if it is not.
async fn prefect_problem(s: &Admin) -> Option<String> {
    match tokio::time::timeout(PROBE, s.prefect().health()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {}s", PROBE.as_secs())),
    }
}

/// Ready: the journal takes writes, Prefect answers, every source is connected.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Not ready, and why", body = Ready)))]
pub(super) async fn readyz(State(s): State<Arc<Admin>>) -> (StatusCode, Json<Ready>) {
    let mut reasons = Vec::new();
    if let Some(f) = s.dispatch.fault() {
        reasons.push(format!("journal: {f}"));
    }
    if let Some(p) = prefect_problem(&s).await {
        reasons.push(format!("prefect: {p}"));
    }
    for src in s
        .routing()
        .sources
        .iter()
        .filter(|s| connects(s) && !is_up(s))
    {
        reasons.push(format!("source {}: not connected", src.name()));
    }
    let ready = reasons.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Ready { ready, reasons }))
}

/// A route's decisions so far, by kind.
fn decision_counts(route: &str) -> DecisionCounts {
    metrics::DECISIONS
        .into_iter()
        .map(|d| (d.to_string(), metrics::decisions(route, d)))
        .collect()
}

/// What the UI's first page shows: sources with their counters and connection, routes with
/// their decisions, Prefect's health and the in-flight limit, the queue, the journal.
#[utoipa::path(get, path = "/api/v1/overview", tag = "api",
    responses((status = 200, body = Overview)))]
pub(super) async fn overview(State(s): State<Arc<Admin>>) -> Json<Overview> {
    let m = metrics::get();
    let routing = s.routing();
    let sources = routing
        .sources
        .iter()
        .map(|src| {
            let label = metrics::source(src.name());
            SourceView {
                name: src.name().to_string(),
                describe: src.spec().describe(),
                up: connects(src).then(|| is_up(src)),
                received: m.events_received.get_or_create(&label).get(),
                accepted: m.events_accepted.get_or_create(&label).get(),
                refused: m.refused_by_source.get_or_create(&label).get(),
            }
        })
        .collect();
    let routes = routing
        .routes
        .iter()
        .map(|r| RouteCounters {
            name: r.name.clone(),
            from: r.sources.clone(),
            decisions: decision_counts(&r.name),
        })
        .collect();
    let error = prefect_problem(&s).await;
    let (pending, open) = match s.journal.counts().await {
        Ok((p, o)) => (Some(p), Some(o)),
        Err(_) => (None, None),
    };
    Json(Overview {
        version: env!("CARGO_PKG_VERSION").to_string(),
        sources,
        routes,
        prefect: PrefectView {
            ui: s.prefect().ui_url(),
            healthy: error.is_none(),
            error,
            in_flight_limit: s.prefect().in_flight_limit(),
        },
        queue_depth: s.dispatch.queued(),
        journal: JournalView {
            pending_events: pending,
            dead_letters_open: open,
            fault: s.dispatch.fault(),
        },
    })
}

/// An RFC 3339 query parameter (empty: none); `Err` is the reason for a 400.
fn time(key: &str, v: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
    crate::journal::time_bound(key, v.filter(|t| !t.is_empty()))
}

fn filter_of(q: EventsQuery) -> Result<EventFilter, String> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(v @ ("pending" | "done" | "dead")) => Some(EventStatus::parse(v)),
        Some(other) => {
            return Err(format!(
                "status: expected pending, done or dead, got {other:?}"
            ));
        }
    };
    let since = time("since", q.since.as_deref())?;
    let until = time("until", q.until.as_deref())?;
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.split_once(':')
                .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
                .ok_or("cursor: not one this API gave")?,
        ),
    };
    let nonempty = |v: Option<String>| v.filter(|t| !t.is_empty());
    Ok(EventFilter {
        status,
        source: nonempty(q.source),
        limit: q.limit.unwrap_or(50).clamp(1, 1000),
        name: nonempty(q.name),
        route: nonempty(q.route),
        text: nonempty(q.q),
        since,
        until,
        after,
    })
}

/// Events, newest first, filtered; page on with `cursor`.
#[utoipa::path(get, path = "/api/v1/events", tag = "api", params(EventsQuery), responses(
    (status = 200, body = EventsPage),
    (status = 400, description = "A filter is malformed", body = ErrorBody),
    (status = 503, description = "The journal cannot be read", body = ErrorBody)))]
pub(super) async fn list_events(
    State(s): State<Arc<Admin>>,
    Query(q): Query<EventsQuery>,
) -> Answer<EventsPage> {
    let filter = filter_of(q).map_err(|e| fail(StatusCode::BAD_REQUEST, e))?;
    let events = s.journal.list_events(&filter).await.map_err(unavailable)?;
    let next = (events.len() == filter.limit)
        .then(|| events.last())
        .flatten()
        .map(|e| format!("{}:{}", e.position.0, e.position.1));
    Ok(Json(EventsPage { events, next }))
}

async fn run_view(s: &Admin, id: String) -> RunView {
    let state = match id.parse::<uuid::Uuid>() {
        Ok(uuid) => match tokio::time::timeout(PROBE, s.prefect().flow_run(&uuid)).await {
            Ok(Ok(run)) => RunState {
                kind: run.state_type,
                name: run.state_name,
                error: None,
            },
            Ok(Err(e)) => RunState {
                error: Some(e.to_string()),
                ..RunState::default()
            },
            Err(_) => RunState {
                error: Some("Prefect did not answer in time".into()),
                ..RunState::default()
            },
        },
        Err(_) => RunState {
            error: Some("not a run id".into()),
            ..RunState::default()
        },
    };
    RunView {
        url: s.prefect().run_page(&id),
        id,
        state,
    }
}

/// One event: its payload and labels, every route's decision with its reason, every attempt,
/// and the runs it started with their state in Prefect now.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "api",
    params(("id" = String, Path, description = "The event's id")), responses(
    (status = 200, body = EventView),
    (status = 404, description = "No such event", body = ErrorBody),
    (status = 503, description = "The journal cannot be read", body = ErrorBody)))]
pub(super) async fn event(
    State(s): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Answer<EventView> {
    let detail = s
        .journal
        .event(&id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "no such event"))?;
    // A redelivered event records its (same) run again; list each run once.
    let mut ids: Vec<String> = Vec::new();
    for rid in detail
        .decisions
        .iter()
        .filter_map(|d| d.flow_run_id.as_ref())
    {
        if !ids.contains(rid) && ids.len() < MAX_RUN_LOOKUPS {
            ids.push(rid.clone());
        }
    }
    let runs = futures::future::join_all(ids.into_iter().map(|rid| run_view(&s, rid))).await;
    Ok(Json(EventView { detail, runs }))
}

/// Dead letters, newest first (open ones unless `all`).
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "api", params(DeadLettersQuery), responses(
    (status = 200, body = DeadLettersPage),
    (status = 503, description = "The journal cannot be read", body = ErrorBody)))]
pub(super) async fn dead_letters(
    State(s): State<Arc<Admin>>,
    Query(q): Query<DeadLettersQuery>,
) -> Answer<DeadLettersPage> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let dead_letters = s
        .journal
        .dead_letters(q.all.unwrap_or(false), limit)
        .await
        .map_err(unavailable)?;
    Ok(Json(DeadLettersPage { dead_letters }))
}

/// The instances sharing the journal (a PostgreSQL journal), with their leases and what each
/// owns; empty for a journal this instance alone opens (SQLite).
#[utoipa::path(get, path = "/api/v1/instances", tag = "api", responses(
    (status = 200, body = InstancesPage),
    (status = 503, description = "The journal cannot be read", body = ErrorBody)))]
pub(super) async fn instances(State(s): State<Arc<Admin>>) -> Answer<InstancesPage> {
    let instances = s.journal.instances().await.map_err(unavailable)?;
    Ok(Json(InstancesPage {
        journal: s.journal.describe(),
        instances,
    }))
}

async fn open_dead_letter(s: &Admin, id: i64) -> Result<(), (StatusCode, Json<ErrorBody>)> {
    match s.journal.dead_letter(id).await.map_err(unavailable)? {
        None => Err(fail(StatusCode::NOT_FOUND, "no such dead letter")),
        Some(dl) => match dl.resolution {
            Some(r) => Err(fail(
                StatusCode::CONFLICT,
                format!("already resolved ({r})"),
            )),
            None => Ok(()),
        },
    }
}

/// Runs a dead letter's route again for its event (the same idempotency key: a run Prefect
/// already has is found, not doubled).
#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/replay", tag = "api",
    params(("id" = i64, Path, description = "The dead letter's number")), responses(
    (status = 200, body = Resolved),
    (status = 404, description = "No such dead letter", body = ErrorBody),
    (status = 409, description = "Already replayed or purged", body = ErrorBody),
    (status = 502, description = "The replay failed (it stays open)", body = ErrorBody)))]
pub(super) async fn replay(State(s): State<Arc<Admin>>, Path(id): Path<i64>) -> Answer<Resolved> {
    open_dead_letter(&s, id).await?;
    let resolution =
        crate::replay::dead_letter(&s.routing().routes, s.journal.as_ref(), &s.prefect(), id)
            .await
            .map_err(|e| fail(StatusCode::BAD_GATEWAY, format!("replay failed: {e}")))?;
    tracing::info!(dead_letter = id, %resolution, "dead letter replayed through the admin API");
    Ok(Json(Resolved { id, resolution }))
}

/// Gives a dead letter up: it is kept, marked `purged`, and never run.
#[utoipa::path(delete, path = "/api/v1/dead-letters/{id}", tag = "api",
    params(("id" = i64, Path, description = "The dead letter's number")), responses(
    (status = 200, body = Resolved),
    (status = 404, description = "No such dead letter", body = ErrorBody),
    (status = 409, description = "Already replayed or purged", body = ErrorBody)))]
pub(super) async fn purge(State(s): State<Arc<Admin>>, Path(id): Path<i64>) -> Answer<Resolved> {
    open_dead_letter(&s, id).await?;
    s.journal
        .resolve_dead_letter(id, "purged")
        .await
        .map_err(unavailable)?;
    tracing::info!(dead_letter = id, "dead letter purged through the admin API");
    Ok(Json(Resolved {
        id,
        resolution: "purged".into(),
    }))
}

/// Every route with its decisions, and what triggers and batches hold open.
#[utoipa::path(get, path = "/api/v1/routes", tag = "api", responses((status = 200, body = RoutesPage)))]
pub(super) async fn routes(State(s): State<Arc<Admin>>) -> Json<RoutesPage> {
    let routing = s.routing();
    let mut routes = Vec::with_capacity(routing.routes.len());
    for r in &routing.routes {
        let state = match &r.stateful {
            Some(st) => Some(st.snapshot().await),
            None => None,
        };
        routes.push(RouteView {
            name: r.name.clone(),
            from: r.sources.clone(),
            kind: if state.is_some() { "stateful" } else { "plain" }.into(),
            decisions: decision_counts(&r.name),
            state,
        });
    }
    Json(RoutesPage { routes })
}

/// Every decision as it happens (Server-Sent Events: one `data:` line of JSON per decision;
/// `event: lagged` with the number a slow listener skipped).
#[utoipa::path(get, path = "/api/v1/tap", tag = "api", params(crate::tap::TapFilter),
    responses((status = 200, description = "A stream of decisions", content_type = "text/event-stream", body = crate::tap::Tapped)))]
pub(super) async fn tap(Query(filter): Query<crate::tap::TapFilter>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let rx = crate::tap::subscribe();
    let stream = futures::stream::unfold((rx, filter), |(mut rx, filter)| async move {
        loop {
            match rx.recv().await {
                Ok(t) if filter.passes(&t) => {
                    let e = Event::default()
                        .json_data(&t)
                        .unwrap_or_else(|_| Event::default().data("{}"));
                    return Some((Ok::<_, std::convert::Infallible>(e), (rx, filter)));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let e = Event::default().event("lagged").data(n.to_string());
                    return Some((Ok(e), (rx, filter)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Reloads the config file, as SIGHUP does: the new config is checked first; one that fails
/// leaves the old one running and says why. Routes change between events; sources whose
/// settings changed restart; trigger state is kept where the trigger did not change.
#[utoipa::path(post, path = "/api/v1/reload", tag = "api", responses(
    (status = 200, description = "Applied, or nothing changed", body = Reloaded),
    (status = 422, description = "The new config fails; the old one keeps running", body = Reloaded),
    (status = 503, description = "Shutting down", body = ErrorBody)))]
pub(super) async fn reload(
    State(s): State<Arc<Admin>>,
) -> Result<(StatusCode, Json<Reloaded>), (StatusCode, Json<ErrorBody>)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.reload
        .send(tx)
        .await
        .map_err(|_| unavailable("switchyard is shutting down"))?;
    let done = rx
        .await
        .map_err(|_| unavailable("switchyard is shutting down"))?;
    let status = match done.result {
        ReloadResult::Failed => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadResult::Applied | ReloadResult::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(done)))
}
