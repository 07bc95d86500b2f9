//! What became of an event, in words every layer shares: the journal stores these, routes
//! return them, the pipeline finishes events by them. Also the names of the engine's
//! topics, which the pipeline publishes to and routes subscribe to.

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

/// The routes that skipped an event, `(route, reason)`, for [`Store::finish_skipped`].
pub fn skipped_routes<'a>(
    outcomes: impl IntoIterator<Item = (&'a str, &'a RouteOutcome)>,
) -> Vec<(String, String)> {
    outcomes
        .into_iter()
        .filter_map(|(route, o)| match o {
            RouteOutcome::Skipped { reason } => Some((route.to_string(), reason.clone())),
            _ => None,
        })
        .collect()
}

/// The engine topic of events named `name` from `source`: routes whose trigger expects exact
/// names subscribe to these instead of the whole source, so rules that cannot match an event
/// never see it.
pub fn name_topic(source: &str, name: &str) -> String {
    format!("{source}#{name}")
}

/// The source name of a route's firings.
pub fn firing_source(route: &str) -> String {
    format!("trigger:{route}")
}
