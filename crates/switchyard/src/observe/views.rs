//! What the admin API answers, as types: the handlers serialise these, and the OpenAPI
//! document (`/api/v1/openapi.json`) is generated from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::journal::{DeadLetter, EventDetail, EventSummary};

/// Every error: what went wrong, in words.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The reason.
    pub error: String,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Whether every check passed.
    pub ready: bool,
    /// The checks that failed: `journal: ...`, `prefect: ...`, `source <name>: not connected`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// A source on the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    /// Its name.
    pub name: String,
    /// What it is, as `check` prints it (no secret).
    pub describe: String,
    /// Whether it is connected; `null` for sources that hold no connection (stdin, webhooks).
    pub up: Option<bool>,
    /// Messages and requests received.
    pub received: u64,
    /// Events journaled for routing.
    pub accepted: u64,
    /// Messages and requests turned away.
    pub refused: u64,
}

/// A route's decisions so far, by kind: `skipped`, `ran`, `dead`, `absorbed`, `fired`,
/// `shadow`.
pub type DecisionCounts = BTreeMap<String, u64>;

/// A route on the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteCounters {
    /// Its name.
    pub name: String,
    /// The sources it reads.
    pub from: Vec<String>,
    /// Its decisions so far.
    pub decisions: DecisionCounts,
}

/// Prefect as the router sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrefectView {
    /// The Prefect UI.
    pub ui: String,
    /// Whether `/health` answered.
    pub healthy: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The adaptive limit on Prefect writes in flight.
    pub in_flight_limit: f64,
}

/// The journal on the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct JournalView {
    /// Events accepted and not finished (`null` when the journal cannot be read).
    pub pending_events: Option<u64>,
    /// Dead letters not yet replayed or purged.
    pub dead_letters_open: Option<u64>,
    /// Why the journal stopped taking writes, if it did.
    pub fault: Option<String>,
}

/// `GET /api/v1/overview`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// Switchyard's version.
    pub version: String,
    /// Every source.
    pub sources: Vec<SourceView>,
    /// Every route.
    pub routes: Vec<RouteCounters>,
    /// Prefect.
    pub prefect: PrefectView,
    /// Events queued for the routes.
    pub queue_depth: usize,
    /// The journal.
    pub journal: JournalView,
}

/// `GET /api/v1/events` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// `pending`, `done` or `dead`.
    pub status: Option<String>,
    /// Only this source.
    pub source: Option<String>,
    /// Only events this route decided on.
    pub route: Option<String>,
    /// Only this event name.
    pub name: Option<String>,
    /// Text anywhere in the payload or the labels.
    pub q: Option<String>,
    /// Accepted at or after (RFC 3339).
    pub since: Option<String>,
    /// Accepted before (RFC 3339).
    pub until: Option<String>,
    /// Events per page (1 to 1000, default 50).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /api/v1/events`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    /// This page.
    pub events: Vec<EventSummary>,
    /// The cursor of the next (older) page, if there may be one.
    pub next: Option<String>,
}

/// A run's state in Prefect, looked up when the event was asked for.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RunState {
    /// `SCHEDULED`, `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CRASHED`, `CANCELLED`, ...
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The state's name (`Late`, `Retrying`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Why it could not be looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A flow run an event started.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// The flow run's id.
    pub id: String,
    /// Its page in the Prefect UI.
    pub url: String,
    /// Its state now.
    pub state: RunState,
}

/// `GET /api/v1/events/{id}`: the event, every route's decision, and its runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The journal's record.
    #[serde(flatten)]
    pub detail: EventDetail,
    /// The runs it started, with their state now (at most 20 looked up).
    pub runs: Vec<RunView>,
}

/// `GET /api/v1/dead-letters` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    /// Include replayed and purged ones.
    pub all: Option<bool>,
    /// At most this many (1 to 10000, default 100).
    pub limit: Option<usize>,
}

/// `GET /api/v1/dead-letters`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettersPage {
    /// The dead letters.
    pub dead_letters: Vec<DeadLetter>,
}

/// `GET /api/v1/instances`: the instances sharing the journal.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstancesPage {
    /// The journal (a file's path, or a database URL with any password masked, and this
    /// instance's name).
    pub journal: String,
    /// The instances, by name; empty for a journal one process opens (SQLite).
    pub instances: Vec<crate::journal::Instance>,
}

/// A replayed or purged dead letter.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resolved {
    /// The dead letter.
    pub id: i64,
    /// `replayed: <flow run id>`, `purged`, ...
    pub resolution: String,
}

/// A route and, for triggers and batches, what it holds open.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    /// Its name.
    pub name: String,
    /// The sources it reads.
    pub from: Vec<String>,
    /// `plain`, or `stateful` for triggers and batches.
    pub kind: String,
    /// Its decisions so far.
    pub decisions: DecisionCounts,
    /// For `stateful` routes: `open_buckets`, `buckets` (at most 100: `key`, `opened`,
    /// `count`, `fired`, `last`, ...), and `next_deadline`.
    #[schema(value_type = Option<Object>)]
    pub state: Option<Value>,
}

/// `GET /api/v1/routes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutesPage {
    /// Every route, in config order.
    pub routes: Vec<RouteView>,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// The new config is in force.
    Applied,
    /// The file says what is already in force.
    Unchanged,
    /// The new config fails; the old one keeps running.
    Failed,
}

impl ReloadResult {
    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
        }
    }
}

/// `POST /api/v1/reload`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reloaded {
    /// What happened.
    pub result: ReloadResult,
    /// The config generation in force afterwards (1 at start, one more per applied reload).
    pub generation: u64,
    /// What changed, a line each (`route orders: action changed`, `source kafka: restarted`).
    pub changes: Vec<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
