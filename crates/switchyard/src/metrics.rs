//! Every metric Switchyard exports, defined once (Prometheus names and conventions, labels of
//! low cardinality: sources, routes, reasons — never an event id), with `prometheus-client`.
//!
//! Counters and histograms are updated where things happen; the gauges that describe state
//! (queue depth, pending events, open dead letters) are read when `/metrics` is scraped.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `{source}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// The source's name.
    pub source: String,
}

/// `{source, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The source's name.
    pub source: String,
    /// Why: `unauthorized`, `rate_limited`, `too_large`, `timeout`, `malformed`, `full`,
    /// `shutting_down`, `journal`, `conflict`, `undecodable`, `poison`.
    pub reason: String,
}

/// `{route}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route's name.
    pub route: String,
}

/// `{route, decision}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The route's name.
    pub route: String,
    /// `skipped`, `ran`, `dead`, `absorbed`, `fired`, `shadow`.
    pub decision: String,
}

/// `{source, topic, partition}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    /// The source's name.
    pub source: String,
    /// The Kafka topic.
    pub topic: String,
    /// The partition.
    pub partition: String,
}

/// `{route, state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    /// The route that created the run.
    pub route: String,
    /// `completed`, `failed`, `crashed`, `cancelled`, `not_found` (Prefect no longer has it)
    /// or `unfollowed` (not ended within `prefect.follow.max_age`).
    pub state: String,
}

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// `applied`, `unchanged` or `failed`.
    pub result: String,
}

/// `{operation, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrefectLabels {
    /// `create_flow_run`, `read_deployment`, `health`, ...
    pub operation: String,
    /// The HTTP status, or `error` when no answer came.
    pub status: String,
}

/// Every metric.
pub struct Metrics {
    registry: Registry,
    /// Messages and requests that reached a source.
    pub events_received: Family<SourceLabel, Counter>,
    /// Events journaled for routing.
    pub events_accepted: Family<SourceLabel, Counter>,
    /// Events of a `journal: routed` source that no route wanted: acknowledged unjournaled.
    pub events_unrouted: Family<SourceLabel, Counter>,
    /// Messages and requests turned away, and why.
    pub events_refused: Family<RefusedLabels, Counter>,
    /// Each route's final decision per event.
    pub route_decisions: Family<DecisionLabels, Counter>,
    /// New flow runs (not idempotent replays).
    pub flow_runs_created: Family<RouteLabel, Counter>,
    /// Followed runs that ended, by how.
    pub flow_runs_finished: Family<FinishedLabels, Counter>,
    /// How long ended runs ran (Prefect's start to end time).
    pub flow_run_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// Prefect API attempts.
    pub prefect_requests: Family<PrefectLabels, Counter>,
    /// How long Prefect attempts took.
    pub prefect_request_duration: Histogram,
    /// The adaptive limit on Prefect writes in flight.
    pub prefect_in_flight_limit: Gauge<f64, AtomicU64>,
    /// Events queued for the routes.
    pub queue_depth: Gauge,
    /// Events journaled and not finished.
    pub journal_pending_events: Gauge,
    /// Dead letters not yet replayed or purged.
    pub dead_letters_open: Gauge,
    /// From an event's arrival to its flow run's creation.
    pub event_to_run: Histogram,
    /// Whether a source is connected (1) or not (0).
    pub source_up: Family<SourceLabel, Gauge>,
    /// Whether a route holds new runs because its deployment's backlog is at `max_backlog`.
    pub route_held: Family<RouteLabel, Gauge>,
    /// Kafka: messages in a partition not yet read, as librdkafka last reported.
    pub source_lag: Family<LagLabels, Gauge>,
    /// Config reloads, by result.
    pub config_reloads: Family<ReloadLabel, Counter>,
    /// Refusals per source, all reasons together (not exported: the UI's overview reads it;
    /// `events_refused` has them by reason).
    pub refused_by_source: Family<SourceLabel, Counter>,
}

fn run_duration_histogram() -> Histogram {
    // 100 ms to ~1.8 h.
    Histogram::new(exponential_buckets(0.1, 2.0, 17))
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 1 ms to ~33 s.
    exponential_buckets(0.001, 2.0, 16)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let m = Self {
            events_received: Family::default(),
            events_accepted: Family::default(),
            events_unrouted: Family::default(),
            events_refused: Family::default(),
            route_decisions: Family::default(),
            flow_runs_created: Family::default(),
            flow_runs_finished: Family::default(),
            flow_run_duration: Family::new_with_constructor(run_duration_histogram),
            prefect_requests: Family::default(),
            prefect_request_duration: Histogram::new(seconds_buckets()),
            prefect_in_flight_limit: Gauge::default(),
            queue_depth: Gauge::default(),
            journal_pending_events: Gauge::default(),
            dead_letters_open: Gauge::default(),
            event_to_run: Histogram::new(seconds_buckets()),
            source_up: Family::default(),
            route_held: Family::default(),
            source_lag: Family::default(),
            config_reloads: Family::default(),
            refused_by_source: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_received",
            "Messages and requests that reached a source",
            m.events_received.clone(),
        );
        registry.register(
            "events_accepted",
            "Events journaled: for routing, or finished at once when every route skips them",
            m.events_accepted.clone(),
        );
        registry.register(
            "events_unrouted",
            "Events of a `journal: routed` source that no route wanted, acknowledged without a journal write",
            m.events_unrouted.clone(),
        );
        registry.register(
            "events_refused",
            "Messages and requests turned away, by reason",
            m.events_refused.clone(),
        );
        registry.register(
            "route_decisions",
            "Each route's final decision per event",
            m.route_decisions.clone(),
        );
        registry.register(
            "flow_runs_created",
            "Flow runs created (idempotent replays not counted)",
            m.flow_runs_created.clone(),
        );
        registry.register(
            "flow_runs_finished",
            "Followed flow runs that ended, by route and final state",
            m.flow_runs_finished.clone(),
        );
        registry.register(
            "flow_run_duration_seconds",
            "How long followed flow runs ran, from Prefect's start time to its end time",
            m.flow_run_duration.clone(),
        );
        registry.register(
            "prefect_requests",
            "Prefect API attempts, by operation and HTTP status",
            m.prefect_requests.clone(),
        );
        registry.register(
            "prefect_request_duration_seconds",
            "How long Prefect API attempts took",
            m.prefect_request_duration.clone(),
        );
        registry.register(
            "prefect_in_flight_limit",
            "The adaptive limit on Prefect writes in flight",
            m.prefect_in_flight_limit.clone(),
        );
        registry.register(
            "queue_depth",
            "Events queued for the routes",
            m.queue_depth.clone(),
        );
        registry.register(
            "journal_pending_events",
            "Events journaled and not finished",
            m.journal_pending_events.clone(),
        );
        registry.register(
            "dead_letters_open",
            "Dead letters not yet replayed or purged",
            m.dead_letters_open.clone(),
        );
        registry.register(
            "event_to_run_seconds",
            "From an event's arrival to the creation of its flow run",
            m.event_to_run.clone(),
        );
        registry.register(
            "source_up",
            "Whether a source is connected (1) or not (0)",
            m.source_up.clone(),
        );
        registry.register(
            "route_held",
            "Whether a route holds new runs (1) because its deployment's backlog is at max_backlog",
            m.route_held.clone(),
        );
        registry.register(
            "source_lag",
            "Kafka: messages in a partition not yet read (librdkafka's consumer lag)",
            m.source_lag.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads (SIGHUP, --watch, POST /api/v1/reload), by result",
            m.config_reloads.clone(),
        );
        Self { registry, ..m }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// The label of `name`.
pub fn source(name: &str) -> SourceLabel {
    SourceLabel {
        source: name.to_string(),
    }
}

/// `source` received a message or request.
pub fn received(source: &str) {
    get()
        .events_received
        .get_or_create(&self::source(source))
        .inc();
}

/// `source` journaled an event for routing.
pub fn accepted(source: &str) {
    get()
        .events_accepted
        .get_or_create(&self::source(source))
        .inc();
}

/// An event of a `journal: routed` source that no route wanted.
pub fn unrouted(source: &str) {
    get()
        .events_unrouted
        .get_or_create(&self::source(source))
        .inc();
}

/// `source` turned one away (also a line of the tap).
pub fn refused(source: &str, reason: &str) {
    crate::tap::publish(|| crate::tap::Tapped {
        at: chrono::Utc::now(),
        source: source.to_string(),
        event_id: None,
        event: None,
        route: None,
        decision: "refused".into(),
        detail: Some(reason.to_string()),
        flow_run_id: None,
    });
    let m = get();
    m.events_refused
        .get_or_create(&RefusedLabels {
            source: source.to_string(),
            reason: reason.to_string(),
        })
        .inc();
    m.refused_by_source
        .get_or_create(&self::source(source))
        .inc();
}

/// Every `decision` a route counts: an event's outcome ([`crate::outcome::RouteOutcome::decision`])
/// or a trigger's firing (`fired`).
pub const DECISIONS: [&str; 6] = ["skipped", "ran", "dead", "absorbed", "fired", "shadow"];

/// How many times `route` has decided `decision` (see [`DecisionLabels`]).
pub fn decisions(route: &str, decision: &str) -> u64 {
    get()
        .route_decisions
        .get_or_create(&DecisionLabels {
            route: route.to_string(),
            decision: decision.to_string(),
        })
        .get()
}

/// `route` decided.
pub fn decided(route: &str, decision: &str) {
    get()
        .route_decisions
        .get_or_create(&DecisionLabels {
            route: route.to_string(),
            decision: decision.to_string(),
        })
        .inc();
}

/// `route` created a run, `since_arrival` after its event arrived.
pub fn run_created(route: &str, since_arrival: Duration) {
    let m = get();
    m.flow_runs_created
        .get_or_create(&RouteLabel {
            route: route.to_string(),
        })
        .inc();
    m.event_to_run.observe(since_arrival.as_secs_f64());
}

/// A followed run ended (`state`, see [`FinishedLabels`]), after running `ran` when Prefect
/// says how long.
pub fn run_finished(route: &str, state: &str, ran: Option<Duration>) {
    let m = get();
    m.flow_runs_finished
        .get_or_create(&FinishedLabels {
            route: route.to_string(),
            state: state.to_string(),
        })
        .inc();
    if let Some(ran) = ran {
        m.flow_run_duration
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .observe(ran.as_secs_f64());
    }
}

/// A config reload ended: `applied`, `unchanged` or `failed`.
pub fn config_reloaded(result: &str) {
    get()
        .config_reloads
        .get_or_create(&ReloadLabel {
            result: result.to_string(),
        })
        .inc();
}

/// `route` holds new runs (`true`: its deployment's backlog is at `max_backlog`) or not.
pub fn route_held(route: &str, held: bool) {
    get()
        .route_held
        .get_or_create(&RouteLabel {
            route: route.to_string(),
        })
        .set(i64::from(held));
}

/// `source` connected (`true`) or lost its connection.
pub fn source_up(source: &str, up: bool) {
    get()
        .source_up
        .get_or_create(&self::source(source))
        .set(i64::from(up));
}

/// Kafka's lag of `source` on a partition; `None` when librdkafka does not know it (the
/// partition is not assigned here), which removes the series.
pub fn source_lag(source: &str, topic: &str, partition: i32, lag: Option<i64>) {
    let labels = LagLabels {
        source: source.to_string(),
        topic: topic.to_string(),
        partition: partition.to_string(),
    };
    match lag {
        Some(n) => {
            get().source_lag.get_or_create(&labels).set(n);
        }
        None => {
            get().source_lag.remove(&labels);
        }
    }
}

/// Feeds the Prefect client's attempts into the metrics.
pub struct PrefectObserver;

impl switchyard_prefect::Observer for PrefectObserver {
    fn request(&self, operation: &'static str, status: Option<u16>, took: Duration) {
        let m = get();
        m.prefect_requests
            .get_or_create(&PrefectLabels {
                operation: operation.to_string(),
                status: status.map_or_else(|| "error".to_string(), |s| s.to_string()),
            })
            .inc();
        m.prefect_request_duration.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        received("orders");
        refused("orders", "unauthorized");
        decided("big-orders", "ran");
        run_created("big-orders", Duration::from_millis(20));
        let text = get().encode();
        for want in [
            "switchyard_events_received_total{source=\"orders\"}",
            "switchyard_events_refused_total{source=\"orders\",reason=\"unauthorized\"}",
            "switchyard_route_decisions_total{route=\"big-orders\",decision=\"ran\"}",
            "switchyard_flow_runs_created_total{route=\"big-orders\"}",
            "switchyard_event_to_run_seconds_bucket",
            "# TYPE switchyard_queue_depth gauge",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
