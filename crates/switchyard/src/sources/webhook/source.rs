//! Webhooks: `POST /hooks/<source-name>` with a JSON body.
//!
//! | answer | when |
//! |---|---|
//! | 202 `{"id": ..., "status": "accepted"}` | the event is in the journal and queued |
//! | 400 | the body is not JSON |
//! | 404 | no webhook source has that name |
//! | 409 | the `Idempotency-Key` (or `ce-id`) was already used with a different body |
//! | 413 | the body is over `http.max_body_bytes` |
//! | 503 + `Retry-After` | the queue is full, the journal cannot write, or Switchyard is shutting down |
//!
//! A sender's `Idempotency-Key` or CloudEvents `ce-id` header becomes the event id (prefixed
//! by the hook name), so a retried delivery maps to the same flow run. `ce-type` overrides the
//! event name and `ce-time` the occurrence time.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchyard_core::Event;

use super::{WebhookConfig, WebhookFormat};
use crate::sources::{Dispatcher, Refused};

struct HookState {
    hooks: BTreeMap<String, WebhookConfig>,
    dispatch: Dispatcher,
}

/// The HTTP app: the hooks plus `GET /healthz`.
pub fn app(hooks: Vec<WebhookConfig>, dispatch: Dispatcher, max_body_bytes: usize) -> Router {
    let state = Arc::new(HookState {
        hooks: hooks.into_iter().map(|h| (h.name.clone(), h)).collect(),
        dispatch,
    });
    Router::new()
        .route("/hooks/{name}", post(receive))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Serves every webhook source on `http.listen` until `stop`; an error if it cannot listen.
pub async fn serve(
    hooks: Vec<WebhookConfig>,
    dispatch: Dispatcher,
    addr: std::net::SocketAddr,
    max_body_bytes: usize,
    stop: tokio_util::sync::CancellationToken,
    set: &mut tokio::task::JoinSet<()>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (http.listen): {e}"))?;
    let names: Vec<String> = hooks.iter().map(|h| format!("/hooks/{}", h.name)).collect();
    tracing::info!(listen = %listener.local_addr().unwrap_or(addr), hooks = ?names, "webhook server listening");
    let app = app(hooks, dispatch, max_body_bytes);
    set.spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "webhook server failed");
        }
    });
    Ok(())
}

/// `GET /readyz`: 200 while events can be accepted, 503 with the reason otherwise.
async fn ready(State(state): State<Arc<HookState>>) -> Response {
    match state.dispatch.fault() {
        None => reply(StatusCode::OK, json!({"ready": true})),
        Some(why) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reasons": [format!("journal: {why}")]}),
        ),
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A Prefect event body: `event` names it, `resource` (and `related`, as
/// `related.<role>.<label>`) become labels, `payload` the payload, `id` and `occurred` are kept.
pub fn prefect_event(hook: &str, body: Value) -> Result<switchyard_core::EventBuilder, String> {
    let Value::Object(mut obj) = body else {
        return Err("expected a Prefect event object".into());
    };
    let name = match obj.remove("event") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err("expected `event`: the event name".into()),
    };
    let resource = match obj.remove("resource") {
        Some(Value::Object(r)) if r.contains_key("prefect.resource.id") => r,
        _ => {
            return Err(
                "expected `resource` with a `prefect.resource.id` label (as Prefect requires)"
                    .into(),
            );
        }
    };
    let payload = obj.remove("payload").unwrap_or_else(|| json!({}));
    let mut b = Event::builder(hook, name, payload);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (k, v) in &resource {
        b = b.label(k.clone(), text(v));
    }
    if let Some(Value::Array(related)) = obj.remove("related") {
        for r in related.iter().filter_map(Value::as_object) {
            let role = r
                .get("prefect.resource.role")
                .map(text)
                .unwrap_or_else(|| "related".into());
            for (k, v) in r {
                b = b.label(format!("related.{role}.{k}"), text(v));
            }
        }
    }
    if let Some(Value::String(id)) = obj.get("id") {
        b = b.id(format!("{hook}:{id}"));
    }
    if let Some(t) = obj
        .get("occurred")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        b = b.occurred(t.with_timezone(&chrono::Utc));
    }
    Ok(b)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

async fn receive(
    State(state): State<Arc<HookState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(hook) = state.hooks.get(&name) else {
        tracing::warn!(hook = %name, "request for an unknown hook");
        return reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("unknown hook {name:?}"), "hooks": state.hooks.keys().collect::<Vec<_>>()}),
        );
    };
    let body = match body {
        Ok(b) => b,
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
            tracing::warn!(source = %name, "request body over the size limit, refused");
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "request body is over the size limit"}),
            );
        }
        Err(e) => {
            tracing::warn!(source = %name, error = %e, "cannot read the request body");
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("cannot read the request body: {e}")}),
            );
        }
    };
    let payload: Value = match crate::sources::parse_json(&body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(source = %name, error = %e, "malformed JSON body, refused");
            let e = e.replacen("not valid JSON", "malformed JSON", 1);
            return reply(StatusCode::BAD_REQUEST, json!({"error": e}));
        }
    };
    let mut builder = if hook.format == WebhookFormat::PrefectEvent {
        match prefect_event(&name, payload) {
            Ok(b) => b,
            Err(reason) => {
                tracing::warn!(source = %name, reason, "not a Prefect event, refused");
                return reply(StatusCode::BAD_REQUEST, json!({"error": reason}));
            }
        }
    } else {
        let event_name = header_str(&headers, "ce-type")
            .map(String::from)
            .or_else(|| hook.event.clone())
            .unwrap_or_else(|| format!("{name}.received"));
        Event::builder(&name, event_name, payload)
    };
    if let Some(id) =
        header_str(&headers, "idempotency-key").or_else(|| header_str(&headers, "ce-id"))
    {
        builder = builder.id(format!("{name}:{id}"));
    }
    if let Some(time) =
        header_str(&headers, "ce-time").and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        builder = builder.occurred(time.with_timezone(&chrono::Utc));
    }
    if let Some(ct) = header_str(&headers, "content-type") {
        builder = builder.label("http.content_type", ct);
    }
    let event = builder.build();
    let id = event.id.clone();
    match state.dispatch.try_dispatch(event).await {
        Ok(_) => {
            tracing::info!(source = %name, event_id = %id, "event received");
            reply(
                StatusCode::ACCEPTED,
                json!({"id": id, "status": "accepted"}),
            )
        }
        Err(Refused::Conflict(id)) => {
            tracing::warn!(source = %name, event_id = %id, "idempotency key reused with a different body; refused");
            reply(
                StatusCode::CONFLICT,
                json!({"error": format!("idempotency key {:?} was already used with a different body", id.strip_prefix(&format!("{name}:")).unwrap_or(&id))}),
            )
        }
        Err(refused) => {
            if let Refused::Journal(e) = &refused {
                tracing::error!(source = %name, event_id = %id, error = %e, "cannot journal the event; refused");
            } else {
                tracing::warn!(source = %name, event_id = %id, reason = %refused, "event refused, sender should retry");
            }
            let mut resp = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": refused.to_string()}),
            );
            let retry = if refused == Refused::Full { "1" } else { "5" };
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(retry));
            resp
        }
    }
}
