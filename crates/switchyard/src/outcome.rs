//! What became of an event, in words every layer shares, defined once:
//!
//! - [`RunCreated`]: the flow run that exists for an event (a run reference);
//! - [`WouldRun`]: the run a shadow route would have created, and did not;
//! - [`Settlement`]: a route's final decision, as the journal records it (skipped, ran, dead);
//! - [`RouteOutcome`]: what a route returns to the pipeline (a settlement, or taken into a
//!   trigger's state, or settled before);
//! - [`Disposition`]: how an accepted event ended, as its source is told (acknowledge or not);
//! - [`Failure`]: a failed attempt, retryable or permanent.

use serde::Serialize;
use uuid::Uuid;

/// A flow run that exists for an event.
#[derive(Debug, Clone, Serialize)]
pub struct RunCreated {
    /// The deployment as configured or rendered (`Flow/deployment` or an id).
    pub deployment: String,
    /// Its id.
    pub deployment_id: Uuid,
    /// The run.
    pub flow_run_id: Uuid,
    /// Its name.
    pub flow_run_name: String,
    /// True when Prefect returned an existing run for the idempotency key.
    pub replayed: bool,
    /// The route's `concurrency.key` for the event, when it has one: the run counts
    /// against that key's limit until it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
}

/// The run a shadow route (`mode: shadow`, `run --shadow`) would have created: decided,
/// rendered and checked against the deployment's schema like a live one, never created.
#[derive(Debug, Clone, Serialize)]
pub struct WouldRun {
    /// The deployment as configured or rendered.
    pub deployment: String,
    /// Its id.
    pub deployment_id: Uuid,
    /// The parameters it would be given.
    pub parameters: serde_json::Value,
    /// The idempotency key it would carry.
    pub idempotency_key: String,
    /// The run name, when the route sets one.
    pub flow_run_name: Option<String>,
}

/// What a route did with an event. Each is recorded in the journal before it is returned,
/// except `Skipped`: the caller records skips with the event's end ([`skipped_routes`]).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RouteOutcome {
    /// The route did not apply.
    Skipped {
        /// Why.
        reason: String,
    },
    /// A flow run exists for the event (new, or an idempotent replay).
    RunCreated(RunCreated),
    /// A shadow route decided to run and recorded what it would have created.
    WouldRun(WouldRun),
    /// The route gave up; a dead letter holds the reason.
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// A trigger or batch took the event into its state (it may have fired).
    Absorbed {
        /// What the trigger did with it.
        note: String,
    },
    /// The journal already had this route's decision (a resumed or redelivered event).
    AlreadySettled,
}

impl RouteOutcome {
    /// The outcome's word in the tap and in `switchyard_route_decisions_total{decision}`
    /// (see [`crate::metrics::DECISIONS`]); `settled_before` for [`RouteOutcome::AlreadySettled`],
    /// which the metrics do not count (the first delivery did).
    pub fn decision(&self) -> &'static str {
        match self {
            Self::Skipped { .. } => "skipped",
            Self::RunCreated(_) => "ran",
            Self::WouldRun(_) => "shadow",
            Self::DeadLettered { .. } => "dead",
            Self::Absorbed { .. } => "absorbed",
            Self::AlreadySettled => "settled_before",
        }
    }
}

/// Every receiving route's outcome for one event, `(route, outcome)`: what the engine's one
/// collector returns (the routes in force are read once per event, see `routes::Live`).
pub type Routed = Vec<(String, RouteOutcome)>;

/// Routes that skip an event and why, `(route, reason)`.
pub type Skips = Vec<(String, String)>;

/// The routes that skipped an event, `(route, reason)`, for [`Store::finish_skipped`].
pub fn skipped_routes<'a>(
    outcomes: impl IntoIterator<Item = (&'a str, &'a RouteOutcome)>,
) -> Skips {
    outcomes
        .into_iter()
        .filter_map(|(route, o)| match o {
            RouteOutcome::Skipped { reason } => Some((route.to_string(), reason.clone())),
            _ => None,
        })
        .collect()
}

/// A route's final decision for an event.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// The route did not apply.
    Skipped {
        /// Why.
        reason: String,
    },
    /// A flow run exists for the event.
    Ran(RunCreated),
    /// A shadow route would have run.
    WouldRun(WouldRun),
    /// The route gave up; the reason is kept for `switchyard dlq`.
    DeadLettered {
        /// Why.
        reason: String,
        /// Whether the cause was transient (Prefect unavailable for too long).
        retryable: bool,
        /// Attempts made.
        attempts: u32,
    },
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
    /// Whether a later attempt may succeed.
    pub retryable: bool,
}

/// How an accepted event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Every route settled: the event may be acknowledged. `dead` when a route dead-lettered.
    Settled {
        /// Whether a dead letter was written.
        dead: bool,
    },
    /// Already settled before (a redelivery): acknowledge.
    AlreadySettled,
    /// Not finished (shutdown interrupted a retry, or the journal failed): it stays pending in
    /// the journal and is resumed on restart. Do not acknowledge.
    Unfinished,
}
