//! What a webhook answers once its event is accepted, by the hook's `respond`: `accepted`,
//! 202 `{"id", "status": "accepted"}` at once; `created` and `finished`, 200 with the report
//! of [`crate::sources::outcome`] once every route has decided or the runs have ended — or
//! 202 with where things stand when `respond_timeout` runs out first (the event is
//! journaled and goes on either way).

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use tokio::time::Instant;

use super::Respond;
use crate::http::reply;
use crate::pipeline::Receipt;
use crate::sources::Dispatcher;
use crate::sources::outcome::{Until, report};

/// The answer to a request whose event was accepted (`receipt`).
pub(super) async fn answer(
    dispatch: &Dispatcher,
    receipt: Receipt,
    respond: Respond,
    timeout: Duration,
) -> Response {
    let until = match respond {
        Respond::Accepted => {
            return reply(
                StatusCode::ACCEPTED,
                json!({"id": receipt.id, "status": "accepted"}),
            );
        }
        Respond::Created => Until::Created,
        Respond::Finished => Until::Finished,
    };
    let id = receipt.id.clone();
    let r = report(
        dispatch,
        Some(receipt),
        &id,
        until,
        Instant::now() + timeout,
    )
    .await;
    let code = match r.status {
        "accepted" | "running" => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    reply(code, r.body)
}
