//! The admin server (`admin.listen`, default `127.0.0.1:9595`): a web UI, Prometheus metrics,
//! health and readiness, and a JSON API over the journal — events with every route's decision
//! and the runs they started (with their live state from Prefect), dead letters to replay or
//! purge, the routes with their counters and open trigger state, and the live tap of
//! decisions (Server-Sent Events). `/api/v1/openapi.json` describes the API.
//!
//! **Access.** With a token (`admin.token` or `SWITCHYARD_ADMIN_TOKEN`) every request but
//! `/healthz` and the UI's own files needs `Authorization: Bearer <token>`; a non-loopback
//! address without one is a config error. Without a token, requests must name a loopback host
//! (`Host: localhost:9595`, `127.0.0.1`, `[::1]`), which keeps a web page elsewhere from
//! reaching the API through DNS rebinding. A request that changes something (replay, purge,
//! reload)
//! from another origin, as a browser marks it (`Origin`, `Sec-Fetch-Site`), is refused either
//! way. It is served by the same shedding listener as the webhooks.

mod api;
pub mod openapi;
mod ui;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde_json::json;
use subtle::ConstantTimeEq;
use switchyard_prefect::PrefectClient;
use tokio_util::sync::CancellationToken;

use crate::config::AdminConfig;
use crate::http::{bearer, header_str, reply};
use crate::journal::Store;
use crate::pipeline::Dispatcher;
use crate::routes::{Live, Routing};
pub use views::{ReloadResult, Reloaded};

/// What the admin server reads.
pub struct Admin {
    /// The journal.
    pub journal: Arc<dyn Store>,
    /// The pipeline (queue depth, journal faults).
    pub dispatch: Dispatcher,
    /// The routes, sources and Prefect client in force (a reload swaps them).
    pub live: Arc<Live>,
    /// Where `POST /api/v1/reload` asks for a reload.
    pub reload: ReloadRequests,
    /// The token requests need, if any.
    pub token: Option<String>,
}

impl Admin {
    /// The routing in force.
    fn routing(&self) -> Arc<Routing> {
        self.live.current()
    }

    /// The Prefect client in force.
    fn prefect(&self) -> PrefectClient {
        self.live.current().env.prefect.clone()
    }
}

/// Asks the running router to reload its config file; the answer comes when it is done.
pub type ReloadRequests = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Reloaded>>;

/// The admin app.
pub fn app(admin: Admin) -> Router {
    let state = Arc::new(admin);
    Router::new()
        .route("/metrics", get(api::metrics_text))
        .route("/readyz", get(api::readyz))
        .route("/api/v1/overview", get(api::overview))
        .route("/api/v1/events", get(api::list_events))
        .route("/api/v1/events/{id}", get(api::event))
        .route("/api/v1/dead-letters", get(api::dead_letters))
        .route("/api/v1/dead-letters/{id}/replay", post(api::replay))
        .route("/api/v1/dead-letters/{id}", delete(api::purge))
        .route("/api/v1/routes", get(api::routes))
        .route("/api/v1/instances", get(api::instances))
        .route("/api/v1/tap", get(api::tap))
        .route("/api/v1/reload", post(api::reload))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ))
        .merge(ui::routes())
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            same_site,
        ))
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
    tracing::info!(listen = %local, token = admin.token.is_some(), "admin server listening; the UI is at http://{local}/");
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

fn refuse(status: StatusCode, why: &str) -> Response {
    reply(status, json!({"error": why}))
}

async fn authorize(State(s): State<Arc<Admin>>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = bearer(req.headers()).unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            let mut r = refuse(StatusCode::UNAUTHORIZED, "a valid admin token is required");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

/// The host part of a `Host` header or an origin's authority, without the port.
fn host_of(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a request is refused for where it comes from, if it is (see the module docs).
fn cross_site(headers: &HeaderMap, method: &Method, token: bool) -> Option<&'static str> {
    let host = header_str(headers, "host");
    if !token && host.is_some_and(|h| !is_loopback_host(host_of(h))) {
        return Some("this admin server has no token, so it answers only to a loopback Host");
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if let Some(site) = header_str(headers, "sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Some("a change from another site is refused");
    }
    if let Some(origin) = header_str(headers, "origin") {
        let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
        if host != Some(authority) {
            return Some("a change from another origin is refused");
        }
    }
    None
}

async fn same_site(State(s): State<Arc<Admin>>, req: Request, next: Next) -> Response {
    match cross_site(req.headers(), req.method(), s.token.is_some()) {
        Some(why) => refuse(StatusCode::FORBIDDEN, why),
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn without_a_token_only_a_loopback_host_is_served() {
        for ok in [
            "127.0.0.1:9595",
            "localhost:9595",
            "[::1]:9595",
            "LOCALHOST",
            "127.1.2.3",
        ] {
            let h = headers(&[("host", ok)]);
            assert_eq!(cross_site(&h, &Method::GET, false), None, "{ok}");
        }
        for bad in [
            "evil.example:9595",
            "10.0.0.5:9595",
            "localhost.evil.example",
        ] {
            let h = headers(&[("host", bad)]);
            assert!(cross_site(&h, &Method::GET, false).is_some(), "{bad}");
            assert_eq!(
                cross_site(&h, &Method::GET, true),
                None,
                "{bad} with a token"
            );
        }
    }

    #[test]
    fn a_change_from_another_origin_is_refused() {
        let same = headers(&[
            ("host", "127.0.0.1:9595"),
            ("origin", "http://127.0.0.1:9595"),
        ]);
        assert_eq!(cross_site(&same, &Method::POST, false), None);
        let other = headers(&[
            ("host", "127.0.0.1:9595"),
            ("origin", "http://evil.example"),
        ]);
        assert!(cross_site(&other, &Method::POST, false).is_some());
        assert!(cross_site(&other, &Method::DELETE, true).is_some());
        assert_eq!(cross_site(&other, &Method::GET, false), None);
        let fetch = headers(&[("host", "127.0.0.1:9595"), ("sec-fetch-site", "cross-site")]);
        assert!(cross_site(&fetch, &Method::POST, false).is_some());
        let curl = headers(&[("host", "127.0.0.1:9595")]);
        assert_eq!(cross_site(&curl, &Method::POST, false), None);
    }
}
