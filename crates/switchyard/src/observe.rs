//! The admin server (`admin.listen`, default `127.0.0.1:9595`): Prometheus metrics, health and
//! readiness, and a JSON API over the journal — events with every route's decision and the
//! runs they started (with their live state from Prefect), dead letters to replay or purge,
//! the routes with their counters, and the live tap of decisions (Server-Sent Events).
//!
//! With a token (`admin.token` or `SWITCHYARD_ADMIN_TOKEN`) every request but `/healthz` needs
//! `Authorization: Bearer <token>`; a non-loopback address without one is a config error.
//! It is served by the same shedding listener as the webhooks.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use switchyard_prefect::PrefectClient;
use tokio_util::sync::CancellationToken;

use crate::config::{AdminConfig, SourceConfig};
use crate::journal::{EventFilter, EventStatus, Store};
use crate::metrics::{self, DecisionLabels, SourceLabel};
use crate::pipeline::Dispatcher;
use crate::routes::Route;

/// How long a readiness probe waits for Prefect.
const PROBE: Duration = Duration::from_secs(2);
/// Runs whose live state one event page fetches from Prefect, at most.
const MAX_RUN_LOOKUPS: usize = 20;

/// What the admin server reads.
pub struct Admin {
    /// The journal.
    pub journal: Arc<dyn Store>,
    /// The pipeline (queue depth, journal faults).
    pub dispatch: Dispatcher,
    /// Prefect.
    pub prefect: PrefectClient,
    /// The routes.
    pub routes: Vec<Arc<Route>>,
    /// The sources.
    pub sources: Vec<SourceConfig>,
    /// The token requests need, if any.
    pub token: Option<String>,
}

/// The admin app.
pub fn app(admin: Admin) -> Router {
    let state = Arc::new(admin);
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/readyz", get(readyz))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/{id}", get(event))
        .route("/api/v1/dead-letters", get(dead_letters))
        .route("/api/v1/dead-letters/{id}/replay", post(replay))
        .route("/api/v1/dead-letters/{id}", delete(purge))
        .route("/api/v1/routes", get(routes))
        .route("/api/v1/tap", get(tap))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves the admin app until `stop`. With no `admin.listen` set and the default port taken,
/// logs that and serves nothing; a set address that cannot be bound is an error.
pub async fn serve(
    cfg: &AdminConfig,
    admin: Admin,
    stop: CancellationToken,
    set: &mut tokio::task::JoinSet<()>,
) -> Result<(), String> {
    let addr = cfg.listen.unwrap_or(AdminConfig::DEFAULT_LISTEN);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if cfg.listen.is_none() => {
            tracing::warn!(listen = %addr, error = %e, "admin server not started: its default address is taken (set admin.listen, or admin.enabled: false)");
            return Ok(());
        }
        Err(e) => return Err(format!("cannot listen on {addr} (admin.listen): {e}")),
    };
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(listen = %local, token = admin.token.is_some(), "admin server listening");
    let limits = crate::sources::webhook::listener::Limits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 256,
    };
    let app = app(admin);
    set.spawn(crate::sources::webhook::listener::run(
        listener, app, limits, None, stop,
    ));
    Ok(())
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn authorize(State(s): State<Arc<Admin>>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "a valid admin token is required"}),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

async fn metrics_text(State(s): State<Arc<Admin>>) -> Response {
    let m = metrics::get();
    m.queue_depth
        .set(i64::try_from(s.dispatch.queued()).unwrap_or(i64::MAX));
    m.prefect_in_flight_limit.set(s.prefect.in_flight_limit());
    if let Ok((pending, open)) = s.journal.counts().await {
        m.journal_pending_events
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        m.dead_letters_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
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

async fn readyz(State(s): State<Arc<Admin>>) -> Response {
    let mut reasons = Vec::new();
    if let Some(f) = s.dispatch.fault() {
        reasons.push(format!("journal: {f}"));
    }
    match tokio::time::timeout(PROBE, s.prefect.health()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("prefect: {e}")),
        Err(_) => reasons.push(format!("prefect: no answer within {}s", PROBE.as_secs())),
    }
    for src in s.sources.iter().filter(|s| connects(s)) {
        let up = metrics::get()
            .source_up
            .get_or_create(&SourceLabel {
                source: src.name().to_string(),
            })
            .get();
        if up == 0 {
            reasons.push(format!("source {}: not connected", src.name()));
        }
    }
    if reasons.is_empty() {
        reply(StatusCode::OK, json!({"ready": true}))
    } else {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reasons": reasons}),
        )
    }
}

/// `GET /api/v1/events` query.
#[derive(Debug, Deserialize)]
struct EventsQuery {
    status: Option<String>,
    source: Option<String>,
    route: Option<String>,
    name: Option<String>,
    /// Text in the payload or labels.
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    /// `next` of the previous page.
    cursor: Option<String>,
}

/// An RFC 3339 query parameter; `Err` is the reason for a 400.
fn time(key: &str, v: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
    v.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.to_utc())
            .map_err(|e| format!("{key}: expected an RFC 3339 time: {e}"))
    })
    .transpose()
}

async fn list_events(State(s): State<Arc<Admin>>, Query(q): Query<EventsQuery>) -> Response {
    let status = match q.status.as_deref() {
        None => None,
        Some(v @ ("pending" | "done" | "dead")) => Some(EventStatus::parse(v)),
        Some(other) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("status: expected pending, done or dead, got {other:?}")}),
            );
        }
    };
    let (since, until) = match (
        time("since", q.since.as_deref()),
        time("until", q.until.as_deref()),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return reply(StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    let after = match q.cursor.as_deref().map(|c| {
        c.split_once(':')
            .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
    }) {
        None => None,
        Some(Some(p)) => Some(p),
        Some(None) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "cursor: not one this API gave"}),
            );
        }
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let filter = EventFilter {
        status,
        source: q.source,
        limit,
        name: q.name,
        route: q.route,
        text: q.q.filter(|t| !t.is_empty()),
        since,
        until,
        after,
    };
    match s.journal.list_events(&filter).await {
        Ok(events) => {
            let next = (events.len() == limit)
                .then(|| {
                    events
                        .last()
                        .map(|e| format!("{}:{}", e.position.0, e.position.1))
                })
                .flatten();
            reply(StatusCode::OK, json!({"events": events, "next": next}))
        }
        Err(e) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
    }
}

/// The Prefect UI's page of a flow run.
fn run_url(prefect: &PrefectClient, id: &str) -> String {
    let api = prefect.api_url().as_str().trim_end_matches('/');
    let ui = api.strip_suffix("/api").unwrap_or(api);
    format!("{ui}/runs/flow-run/{id}")
}

async fn event(State(s): State<Arc<Admin>>, Path(id): Path<String>) -> Response {
    let detail = match s.journal.event(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => return reply(StatusCode::NOT_FOUND, json!({"error": "no such event"})),
        Err(e) => {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            );
        }
    };
    let run_ids: Vec<String> = detail
        .decisions
        .iter()
        .filter_map(|d| d.flow_run_id.clone())
        .take(MAX_RUN_LOOKUPS)
        .collect();
    let lookups = run_ids.iter().map(|rid| {
        let prefect = s.prefect.clone();
        async move {
            let url = run_url(&prefect, rid);
            let state = match rid.parse::<uuid::Uuid>() {
                Ok(uuid) => match tokio::time::timeout(PROBE, prefect.flow_run(&uuid)).await {
                    Ok(Ok(run)) => json!({"type": run.state_type, "name": run.state_name}),
                    Ok(Err(e)) => json!({"error": e.to_string()}),
                    Err(_) => json!({"error": "Prefect did not answer in time"}),
                },
                Err(_) => json!({"error": "not a run id"}),
            };
            json!({"id": rid, "url": url, "state": state})
        }
    });
    let runs = futures::future::join_all(lookups).await;
    let mut body = serde_json::to_value(&detail).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut body {
        o.insert("runs".into(), Value::Array(runs));
    }
    reply(StatusCode::OK, body)
}

#[derive(Debug, Deserialize)]
struct DeadLettersQuery {
    /// Include replayed and purged ones.
    all: Option<bool>,
    limit: Option<usize>,
}

async fn dead_letters(State(s): State<Arc<Admin>>, Query(q): Query<DeadLettersQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    match s.journal.dead_letters(q.all.unwrap_or(false), limit).await {
        Ok(list) => reply(StatusCode::OK, json!({"dead_letters": list})),
        Err(e) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
    }
}

async fn replay(State(s): State<Arc<Admin>>, Path(id): Path<i64>) -> Response {
    match s.journal.dead_letter(id).await {
        Ok(None) => {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"error": "no such dead letter"}),
            );
        }
        Err(e) => {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            );
        }
        Ok(Some(_)) => {}
    }
    match crate::replay::dead_letter(&s.routes, s.journal.as_ref(), &s.prefect, id).await {
        Ok(resolution) => {
            tracing::info!(dead_letter = id, %resolution, "dead letter replayed through the admin API");
            reply(StatusCode::OK, json!({"id": id, "resolution": resolution}))
        }
        Err(e) => reply(
            StatusCode::BAD_GATEWAY,
            json!({"id": id, "error": format!("replay failed: {e}")}),
        ),
    }
}

async fn purge(State(s): State<Arc<Admin>>, Path(id): Path<i64>) -> Response {
    match s.journal.dead_letter(id).await {
        Ok(None) => reply(
            StatusCode::NOT_FOUND,
            json!({"error": "no such dead letter"}),
        ),
        Ok(Some(dl)) if dl.resolution.is_some() => reply(
            StatusCode::CONFLICT,
            json!({"error": format!("already resolved ({})", dl.resolution.unwrap_or_default())}),
        ),
        Ok(Some(_)) => match s.journal.resolve_dead_letter(id, "purged").await {
            Ok(()) => {
                tracing::info!(dead_letter = id, "dead letter purged through the admin API");
                reply(StatusCode::OK, json!({"id": id, "resolution": "purged"}))
            }
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            ),
        },
        Err(e) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
    }
}

async fn routes(State(s): State<Arc<Admin>>) -> Response {
    let m = metrics::get();
    let mut list = Vec::with_capacity(s.routes.len());
    for r in &s.routes {
        let decisions: serde_json::Map<String, Value> =
            ["skipped", "ran", "dead", "absorbed", "fired"]
                .into_iter()
                .map(|d| {
                    let n = m
                        .route_decisions
                        .get_or_create(&DecisionLabels {
                            route: r.name.clone(),
                            decision: d.to_string(),
                        })
                        .get();
                    (d.to_string(), json!(n))
                })
                .collect();
        let state = match &r.stateful {
            Some(st) => st.snapshot().await,
            None => Value::Null,
        };
        list.push(json!({
            "name": r.name,
            "from": r.sources,
            "kind": if r.stateful.is_some() { "stateful" } else { "plain" },
            "decisions": decisions,
            "state": state,
        }));
    }
    reply(StatusCode::OK, json!({"routes": list}))
}

/// `GET /api/v1/tap?source=&route=&decision=`: every decision as it happens, one SSE `data:`
/// JSON line each; `event: lagged` says how many a slow listener skipped.
async fn tap(Query(filter): Query<crate::tap::TapFilter>) -> Response {
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
