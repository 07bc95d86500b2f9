//! What became of an accepted event, as a source tells its sender: a webhook's answer
//! (`respond: created | finished`) and a broker's reply (AMQP `reply_to`) carry the same
//! small JSON:
//!
//! `{"id", "status", "runs": [{"route", "flow_run_id", "flow_run_name", "deployment",
//! "state", "state_type", "ended", "url"}], "reasons"?}`
//!
//! where `status` is `created` (runs exist), `finished` (they have ended), `running` (the
//! wait ran out before they ended), `skipped` (no route ran), `dead_lettered` (a route gave
//! up; `reasons` says why) or `accepted` (not decided within the wait). `url` is the run's
//! page in the Prefect UI.

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::journal::FollowedRun;
use crate::pipeline::{Disposition, Receipt};
use crate::sources::Dispatcher;

/// How far a report waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Every route has decided (the runs exist).
    Created,
    /// The runs created have ended.
    Finished,
}

/// A report: its `status` word and the whole body.
#[derive(Debug, Clone)]
pub struct Report {
    /// See the module docs.
    pub status: &'static str,
    /// The JSON.
    pub body: Value,
}

/// Waits for `receipt` (unless already `decided`), then for the runs as `until` says, up to
/// `deadline`, and reports.
pub async fn report(
    dispatch: &Dispatcher,
    receipt: Option<Receipt>,
    id: &str,
    until: Until,
    deadline: Instant,
) -> Report {
    let decided = match receipt {
        None => true,
        Some(r) => matches!(
            tokio::time::timeout_at(deadline, r.outcome()).await,
            Ok(Disposition::Settled { .. } | Disposition::AlreadySettled)
        ),
    };
    let accepted = || Report {
        status: "accepted",
        body: json!({"id": id, "status": "accepted", "runs": []}),
    };
    let detail = match dispatch.journal().event(id).await {
        Ok(Some(d)) if decided => d,
        Ok(_) => return accepted(),
        Err(e) => {
            tracing::warn!(event_id = %id, error = %e, "cannot read the event back to report it");
            return accepted();
        }
    };
    let dead: Vec<String> = detail
        .decisions
        .iter()
        .filter(|d| d.kind == "dead_lettered")
        .filter_map(|d| d.detail.clone())
        .collect();
    let mut runs = detail.followed;
    let follower = dispatch.follower().filter(|f| f.enabled());
    let mut finished = false;
    if until == Until::Finished
        && let Some(f) = follower
    {
        let waits = runs.iter().map(|r| async {
            let left = deadline.saturating_duration_since(Instant::now());
            match uuid::Uuid::parse_str(&r.flow_run_id) {
                Ok(uuid) if r.ended_at.is_none() => f.ended(uuid, left).await,
                _ => None,
            }
            .unwrap_or_else(|| r.clone())
        });
        runs = futures::future::join_all(waits).await;
        finished = runs.iter().all(|r| r.ended_at.is_some());
    }
    let status = if !dead.is_empty() {
        "dead_lettered"
    } else if runs.is_empty() {
        "skipped"
    } else if until == Until::Created || follower.is_none() {
        "created"
    } else if finished {
        "finished"
    } else {
        "running"
    };
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| run_json(r, follower.map(|f| f.run_page(&r.flow_run_id))))
        .collect();
    let mut body = json!({"id": id, "status": status, "runs": runs});
    if !dead.is_empty() {
        body["reasons"] = json!(dead);
    }
    Report { status, body }
}

/// A run in a report.
fn run_json(r: &FollowedRun, url: Option<String>) -> Value {
    json!({
        "route": r.route,
        "flow_run_id": r.flow_run_id,
        "flow_run_name": r.flow_run_name,
        "deployment": r.deployment,
        "state": r.state_name,
        "state_type": r.state_type,
        "ended": r.ended_at.is_some(),
        "url": url,
    })
}
