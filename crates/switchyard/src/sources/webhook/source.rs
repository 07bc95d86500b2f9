//! Webhooks: `POST /hooks/<source-name>` with a JSON body.
//!
//! | answer | when |
//! |---|---|
//! | 202 `{"id": ..., "status": "accepted"}` | the event is in the journal and queued |
//! | 200 `{"id": ..., "status": "created" or "finished", "runs": [...]}` | with `respond: created` or `finished`, once the routes decided or the runs ended (see [`super::respond`]) |
//! | 400 | the body is not JSON |
//! | 401 | the hook has `verify` and the request fails it (signature, timestamp, credentials) |
//! | 404 | no webhook source has that name (the answer does not list the others) |
//! | 409 | the `Idempotency-Key` (or `ce-id`) was already used with a different body |
//! | 408 | the body did not arrive within `http.body_timeout` |
//! | 413 | the body is over `http.max_body_bytes` (at once for `Expect: 100-continue`) |
//! | 429 + `Retry-After` | the hook's `rate_limit` is exceeded |
//! | 503 + `Retry-After` | the queue is full, the journal cannot write, or Switchyard is shutting down |
//!
//! A verified sender's delivery id (Standard Webhooks' `webhook-id`, `X-GitHub-Delivery`, a
//! Stripe event's `id`), else an `Idempotency-Key` or CloudEvents `ce-id` header, becomes the
//! event id (prefixed by the hook name), so a retried delivery maps to the same flow run.
//! The event name is the hook's `event`; a name the sender supplies (`ce-type`,
//! `X-GitHub-Event`, Stripe's `type`) is used only with `event_from: sender` (the default for
//! GitHub and Stripe verification) and is otherwise a label. `ce-time` sets the occurrence
//! time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;
use switchyard_core::Event;

use super::limit::TokenBucket;
use super::listener::{Limits, connection_cap, raise_file_limit};
use super::request::{Incoming, Made};
use super::{HttpConfig, Verified, Verifier, WebhookConfig};
use crate::http::{header_str, reply};
use crate::sources::{Dispatcher, Refused};
use crate::template::TextTemplate;

struct HookState {
    /// Swapped whole by a reload ([`Hooks::replace`]); a request reads it once.
    hooks: std::sync::RwLock<Arc<BTreeMap<String, Arc<Hook>>>>,
    dispatch: Dispatcher,
    max_body: usize,
    body_timeout: Duration,
}

struct Hook {
    cfg: WebhookConfig,
    /// `Err` when its secrets could not be read: every request is refused (fail closed).
    verifier: Option<Result<Verifier, String>>,
    rate: Option<TokenBucket>,
    /// `Err` when it does not compile: every request is refused.
    template: Option<Result<Arc<TextTemplate>, String>>,
}

impl Hook {
    fn new(cfg: WebhookConfig) -> Self {
        let verifier = cfg
            .verify
            .as_ref()
            .map(|v| Verifier::new(v).map_err(|(_, m)| m));
        let rate = cfg.rate_limit.map(TokenBucket::new);
        let template = cfg
            .template
            .as_deref()
            .map(|t| TextTemplate::compile_lenient(t).map(Arc::new));
        Self {
            cfg,
            verifier,
            rate,
            template,
        }
    }
}

/// The hooks a running HTTP server answers, to change while it serves (a reload).
#[derive(Clone)]
pub struct Hooks(Arc<HookState>);

impl Hooks {
    /// Answers `hooks` from the next request on. A hook whose settings did not change keeps
    /// what it holds (its rate limit's bucket); a hook no longer listed answers 404.
    pub fn replace(&self, hooks: Vec<WebhookConfig>) {
        let old = self.current();
        let next: BTreeMap<String, Arc<Hook>> = hooks
            .into_iter()
            .map(|cfg| {
                let hook = match old.get(&cfg.name) {
                    Some(h) if h.cfg == cfg => Arc::clone(h),
                    _ => Arc::new(Hook::new(cfg)),
                };
                (hook.cfg.name.clone(), hook)
            })
            .collect();
        for name in old.keys().filter(|n| !next.contains_key(*n)) {
            crate::metrics::source_up(name, false);
        }
        for name in next.keys() {
            crate::metrics::source_up(name, true);
        }
        *self
            .0
            .hooks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
    }

    fn current(&self) -> Arc<BTreeMap<String, Arc<Hook>>> {
        self.0.current()
    }
}

impl HookState {
    fn current(&self) -> Arc<BTreeMap<String, Arc<Hook>>> {
        Arc::clone(
            &self
                .hooks
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// The HTTP app: the hooks plus `GET /healthz` and `GET /readyz`. A hook whose secrets cannot
/// be read refuses every request ([`serve`] and `check` report it before it comes to that).
pub fn app(hooks: Vec<WebhookConfig>, dispatch: Dispatcher, max_body_bytes: usize) -> Router {
    app_with(hooks, dispatch, max_body_bytes, Duration::from_secs(30)).0
}

/// [`app`] with a body-read timeout (`http.body_timeout`), and the handle that changes its
/// hooks.
pub fn app_with(
    hooks: Vec<WebhookConfig>,
    dispatch: Dispatcher,
    max_body: usize,
    body_timeout: Duration,
) -> (Router, Hooks) {
    let hooks = hooks
        .into_iter()
        .map(|cfg| (cfg.name.clone(), Arc::new(Hook::new(cfg))))
        .collect();
    let state = Arc::new(HookState {
        hooks: std::sync::RwLock::new(Arc::new(hooks)),
        dispatch,
        max_body,
        body_timeout,
    });
    let router = Router::new()
        .route(
            "/hooks/{name}",
            post(receive)
                .put(receive)
                .patch(receive)
                .get(receive)
                .delete(receive),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(Arc::clone(&state));
    (router, Hooks(state))
}

/// Whether every hook's secrets can be read: an error names the hook and the key.
pub fn check_secrets(hooks: &[WebhookConfig]) -> Result<(), String> {
    for hook in hooks {
        if let Some(v) = &hook.verify {
            Verifier::new(v).map_err(|(key, m)| format!("webhook {}: {key}.{m}", hook.name))?;
        }
    }
    Ok(())
}

/// Serves every webhook source on `http.listen` until `stop` (see [`super::listener`] for how
/// the listener sheds abuse); an error if it cannot listen or a hook's secrets cannot be read.
pub async fn serve(
    hooks: Vec<WebhookConfig>,
    dispatch: Dispatcher,
    http: &HttpConfig,
    stop: tokio_util::sync::CancellationToken,
    set: &mut tokio::task::JoinSet<()>,
) -> Result<Hooks, String> {
    check_secrets(&hooks)?;
    let addr = http.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (http.listen): {e}"))?;
    let tls = http
        .tls
        .as_ref()
        .map(super::tls::acceptor)
        .transpose()
        .map_err(|(key, m)| format!("http.{key}: {m}"))?;
    let files = raise_file_limit();
    let limits = Limits {
        header_timeout: http.header_timeout,
        idle_timeout: http.idle_timeout,
        max_connections: connection_cap(http.max_connections.get(), files),
    };
    let names: Vec<String> = hooks.iter().map(|h| format!("/hooks/{}", h.name)).collect();
    tracing::info!(
        listen = %listener.local_addr().unwrap_or(addr), hooks = ?names,
        max_connections = limits.max_connections, open_file_limit = files, tls = tls.is_some(),
        "webhook server listening"
    );
    let (app, handle) = app_with(
        hooks,
        dispatch,
        http.max_body_bytes.get(),
        http.body_timeout,
    );
    for name in &names {
        crate::metrics::source_up(name.trim_start_matches("/hooks/"), true);
    }
    set.spawn(super::listener::run(listener, app, limits, tls, stop));
    Ok(handle)
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

/// The most of an over-long body read (and thrown away) so the client can read the 413.
const MAX_DISCARD: usize = 64 << 20;

/// Reads the body within `http.body_timeout` and `http.max_body_bytes`. Over the limit: a
/// client that sent `Expect: 100-continue` hears 413 at once, without sending the body; any
/// other client is read to the end of its body (up to 64 MiB, within the timeout) first, so it
/// is still listening when the 413 comes instead of seeing a broken pipe.
async fn read_body(
    state: &HookState,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let too_large = || {
        let mut r = reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "request body is over the size limit"}),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let declared = header_str(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let expects =
        header_str(headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let deadline = tokio::time::Instant::now() + state.body_timeout;
    let max = state.max_body;
    if declared.is_some_and(|n| n > max as u64) {
        tracing::warn!(source = %name, length = declared, "request body over the size limit, refused");
        if !expects {
            discard(body, MAX_DISCARD, deadline).await;
        }
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    loop {
        let next = match tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut stream))
            .await
        {
            Ok(n) => n,
            Err(_) => {
                tracing::warn!(source = %name, "request body not received within http.body_timeout");
                let mut r = reply(
                    StatusCode::REQUEST_TIMEOUT,
                    json!({"error": "request body not received in time"}),
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Err(r);
            }
        };
        match next {
            None => return Ok(Bytes::from(buf)),
            Some(Ok(chunk)) => {
                if buf.len() + chunk.len() > max {
                    tracing::warn!(source = %name, "request body over the size limit, refused");
                    discard_stream(&mut stream, MAX_DISCARD, deadline).await;
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                tracing::warn!(source = %name, error = %e, "cannot read the request body");
                return Err(reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "cannot read the request body"}),
                ));
            }
        }
    }
}

async fn discard(body: Body, limit: usize, deadline: tokio::time::Instant) {
    discard_stream(&mut body.into_data_stream(), limit, deadline).await;
}

async fn discard_stream(
    stream: &mut axum::body::BodyDataStream,
    limit: usize,
    deadline: tokio::time::Instant,
) {
    let mut seen = 0usize;
    while seen < limit {
        match tokio::time::timeout_at(deadline, futures::StreamExt::next(stream)).await {
            Ok(Some(Ok(chunk))) => seen = seen.saturating_add(chunk.len()),
            _ => return,
        }
    }
}

/// Counts a request turned away before it became an event.
fn turned_away(source: &str, reason: &str, resp: Response) -> Response {
    crate::metrics::received(source);
    crate::metrics::refused(source, reason);
    resp
}

/// 401 with a generic reason and a challenge: which check failed is for the log only.
fn unauthorized() -> Response {
    let mut resp = reply(
        StatusCode::UNAUTHORIZED,
        json!({"error": "request could not be verified"}),
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Signature"),
    );
    resp
}

async fn receive(
    State(state): State<Arc<HookState>>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let hooks = state.current();
    let Some(Hook {
        cfg: hook,
        verifier,
        rate,
        template,
    }) = hooks.get(&name).map(|h| &**h)
    else {
        // The log may list the hooks; the answer never does.
        tracing::warn!(hook = %name, hooks = ?hooks.keys().collect::<Vec<_>>(), "request for an unknown hook");
        return reply(StatusCode::NOT_FOUND, json!({"error": "no such hook"}));
    };
    let template = match template {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(why)) => {
            tracing::error!(source = %name, error = %why, "the hook's template does not compile; request refused");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "the hook is misconfigured"}),
            );
        }
    };
    if template.is_none() && !matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "this hook takes POST, PUT or PATCH"}),
        );
    }
    if let Some(Err(wait)) = rate.as_ref().map(TokenBucket::try_take) {
        tracing::warn!(source = %name, "over the hook's rate limit; refused");
        let mut resp = reply(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "too many requests"}),
        );
        let secs = wait.as_secs_f64().ceil().max(1.0).to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return turned_away(&name, "rate_limited", resp);
    }
    let body = match read_body(&state, &name, &headers, body).await {
        Ok(b) => b,
        Err(resp) => {
            let reason = match resp.status() {
                StatusCode::PAYLOAD_TOO_LARGE => "too_large",
                StatusCode::REQUEST_TIMEOUT => "timeout",
                _ => "malformed",
            };
            return turned_away(&name, reason, resp);
        }
    };
    let verified = match verifier {
        None => Verified::default(),
        Some(Err(why)) => {
            tracing::error!(source = %name, error = %why, "the hook's secrets cannot be read; request refused");
            return turned_away(&name, "unauthorized", unauthorized());
        }
        Some(Ok(v)) => match v.verify(&headers, &body, chrono::Utc::now().timestamp()) {
            Ok(verified) => verified,
            Err(why) => {
                // Never journaled; the log says which check failed, never a secret.
                tracing::warn!(source = %name, reason = %why, "request failed verification; refused");
                return turned_away(&name, "unauthorized", unauthorized());
            }
        },
    };
    let incoming = Incoming {
        name: &name,
        hook,
        template,
        method: method.as_str(),
        query: query.as_deref(),
        headers: &headers,
        body: &body,
        verified,
    };
    let event = match incoming.events().await {
        Ok(Made::One(event)) => event,
        Ok(Made::Batch(events)) => return accept_batch(&state, &name, events).await,
        Err(reason) => {
            tracing::warn!(source = %name, reason, "request does not make an event; refused");
            let resp = reply(StatusCode::BAD_REQUEST, json!({"error": reason}));
            return turned_away(&name, "malformed", resp);
        }
    };
    let id = event.id.clone();
    let (respond, respond_timeout) = (hook.respond, hook.respond_timeout);
    match state.dispatch.try_dispatch(event).await {
        Ok(receipt) => {
            tracing::info!(source = %name, event_id = %id, "event received");
            let timeout = respond_timeout.unwrap_or(super::DEFAULT_RESPOND_TIMEOUT);
            super::respond::answer(&state.dispatch, receipt, respond, timeout).await
        }
        Err(refused) => {
            let (status, error, retry) = refusal(&name, &id, &refused);
            with_retry(reply(status, json!({"error": error})), retry)
        }
    }
}

/// How a refused event is answered: the status, the reason, and `Retry-After` seconds.
fn refusal(name: &str, id: &str, refused: &Refused) -> (StatusCode, String, Option<&'static str>) {
    match refused {
        Refused::Conflict(id) => {
            tracing::warn!(source = %name, event_id = %id, "idempotency key reused with a different body; refused");
            let key = id.strip_prefix(&format!("{name}:")).unwrap_or(id);
            (
                StatusCode::CONFLICT,
                format!("idempotency key {key:?} was already used with a different body"),
                None,
            )
        }
        other => {
            if let Refused::Journal(e) = other {
                tracing::error!(source = %name, event_id = %id, error = %e, "cannot journal the event; refused");
            } else {
                tracing::warn!(source = %name, event_id = %id, reason = %other, "event refused, sender should retry");
            }
            let retry = if *other == Refused::Full { "1" } else { "5" };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                other.to_string(),
                Some(retry),
            )
        }
    }
}

fn with_retry(mut resp: Response, retry: Option<&'static str>) -> Response {
    if let Some(secs) = retry {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
    }
    resp
}

/// Accepts each event of a CloudEvents batch in order: 202 with their ids once all are in the
/// journal. A refusal stops there with the answer it gets alone, listing the ids accepted
/// before it: a sender that retries the whole batch finds those again (same ids) and starts
/// nothing twice.
async fn accept_batch(state: &HookState, name: &str, events: Vec<Event>) -> Response {
    let mut ids = Vec::with_capacity(events.len());
    for event in events {
        let id = event.id.clone();
        if let Err(refused) = state.dispatch.try_dispatch(event).await {
            let (status, error, retry) = refusal(name, &id, &refused);
            let body = json!({"error": format!("entry {}: {error}", ids.len()), "accepted": ids});
            return with_retry(reply(status, body), retry);
        }
        ids.push(id);
    }
    tracing::info!(source = %name, events = ids.len(), "CloudEvents batch received");
    reply(
        StatusCode::ACCEPTED,
        json!({"ids": ids, "status": "accepted"}),
    )
}
