//! Configuration: typed, validated, in YAML or JSON, with `${VAR}` / `${VAR:-default}`
//! interpolation. The original prefect-event-router's JSON form (`{"threads": [...]}`) is
//! accepted unchanged and translated (see [`legacy`]).
//!
//! Every error names the file, the key (as a path such as `routes[0].action.deployment`) and
//! what was expected.

pub mod bounds;
mod error;
mod interpolate;
pub mod legacy;
pub mod schema;
pub mod triggers;
mod validate;

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

pub use error::ConfigError;
pub use interpolate::{InterpolationError, interpolate};
use validate::validate;

/// The sources' settings live with their connectors (`sources/<name>/config.rs`).
pub use crate::sources::SourceConfig;
pub use crate::sources::webhook::HttpConfig;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How to reach Prefect.
    #[serde(default)]
    pub prefect: PrefectConfig,
    /// The in-process queue between sources and routes.
    #[serde(default)]
    pub engine: EngineConfig,
    /// The HTTP server that hosts webhook sources.
    #[serde(default)]
    pub http: HttpConfig,
    /// The journal of events, decisions, runs and dead letters.
    #[serde(default)]
    pub journal: JournalConfig,
    /// How long transient failures are retried before an event is dead-lettered.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Budgets for templates and `when` expressions.
    #[serde(default)]
    pub templates: TemplatesConfig,
    /// The admin server: metrics, health, the events API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Where events come from.
    pub sources: Vec<SourceConfig>,
    /// What to do with them.
    pub routes: Vec<RouteConfig>,
}

/// The admin server (`/metrics`, `/healthz`, `/readyz`, `/api/v1/...`), on a listener of its
/// own.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Whether to serve it (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where (default `127.0.0.1:9595`). When it is not set and the port is taken, the
    /// router runs without the admin server and says so; a set address must be free.
    pub listen: Option<std::net::SocketAddr>,
    /// `Authorization: Bearer <token>` required on everything but `/healthz` (default:
    /// `SWITCHYARD_ADMIN_TOKEN`, else none). Required when `listen` is not a loopback address.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            token: None,
        }
    }
}

impl AdminConfig {
    /// The default address.
    pub const DEFAULT_LISTEN: std::net::SocketAddr =
        std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9595);

    /// The token in force: `token`, else `SWITCHYARD_ADMIN_TOKEN`; empty is none.
    pub fn effective_token(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| std::env::var("SWITCHYARD_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty())
    }
}

/// Prefect connection. Unset values come from `PREFECT_API_URL`, `PREFECT_API_KEY` and
/// `PREFECT_API_AUTH_STRING`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefectConfig {
    /// API base URL, e.g. `http://127.0.0.1:4200/api`.
    pub api_url: Option<String>,
    /// Prefect Cloud API key (Bearer).
    pub api_key: Option<String>,
    /// `user:password` for a self-hosted server with basic auth.
    pub auth_string: Option<String>,
    /// Most `create_flow_run` calls in flight (default 4). Switchyard starts at one and adapts
    /// between one and this by Prefect's answers (more while fast and successful, half as
    /// many on 503/429/timeouts).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: NonZeroUsize,
    /// At most this many `create_flow_run` calls per second, all routes together (default:
    /// unlimited).
    pub rate_limit: Option<f64>,
    /// Timeout of one HTTP attempt (default `30s`).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub request_timeout: Duration,
    /// Retries of a transient failure (503, 429, connection refused...) before giving up
    /// (default 8: after 25 ms, doubling, ±50 % jitter; ~6.4 s in all).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Following the runs Switchyard creates until they end.
    #[serde(default)]
    pub follow: FollowConfig,
}

pub use crate::follow::FollowConfig;

impl Default for PrefectConfig {
    fn default() -> Self {
        Self {
            api_url: None,
            api_key: None,
            auth_string: None,
            max_in_flight: default_in_flight(),
            rate_limit: None,
            request_timeout: default_request_timeout(),
            max_retries: default_retries(),
            follow: FollowConfig::default(),
        }
    }
}

fn default_in_flight() -> NonZeroUsize {
    NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retries() -> u32 {
    8
}

/// The engine: a bounded queue drained by a consumer pool.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Events held between sources and routes (default 1024). When full, sources wait and
    /// webhooks answer 503 with `Retry-After`.
    #[serde(default = "default_capacity")]
    pub queue_capacity: NonZeroUsize,
    /// Consumers kept running (default 1).
    #[serde(default = "default_min_consumers")]
    pub min_consumers: NonZeroUsize,
    /// Consumers under load (default 8).
    #[serde(default = "default_max_consumers")]
    pub max_consumers: NonZeroUsize,
    /// How long shutdown waits for queued events to finish (default `30s`).
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub shutdown_timeout: Duration,
    /// Events each acknowledging source (Kafka, MQTT, AMQP, NATS JetStream, Redis Streams,
    /// Azure) has being accepted at once while it reads on (default 256): the journal commits
    /// them together.
    #[serde(default = "default_accepts_in_flight")]
    pub accepts_in_flight: NonZeroUsize,
    /// How long shutdown waits for the sources and background jobs to stop before aborting
    /// them (default `10s`); what they had not handed over stays with the broker.
    #[serde(default = "default_source_stop_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub source_stop_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: default_capacity(),
            min_consumers: default_min_consumers(),
            max_consumers: default_max_consumers(),
            shutdown_timeout: default_shutdown_timeout(),
            source_stop_timeout: default_source_stop_timeout(),
            accepts_in_flight: default_accepts_in_flight(),
        }
    }
}

fn default_capacity() -> NonZeroUsize {
    NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN)
}
fn default_min_consumers() -> NonZeroUsize {
    NonZeroUsize::MIN
}
fn default_max_consumers() -> NonZeroUsize {
    NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_accepts_in_flight() -> NonZeroUsize {
    NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN)
}
fn default_source_stop_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The journal: a SQLite file (the default), or a PostgreSQL database that several instances
/// share (`url`).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// The database file (default `switchyard.db` in the working directory); created and
    /// migrated on start. Not used when `url` is set.
    #[serde(default = "default_journal_path")]
    pub path: PathBuf,
    /// A PostgreSQL database (`postgres://user[:password]@host[:port]/database`) instead of
    /// the file: every instance given the same one shares its events, its duplicate detection
    /// and each other's leftovers. Its tables live in a schema of their own (`switchyard`),
    /// made and migrated on start. `SWITCHYARD_JOURNAL_URL` overrides it; `${VAR}` keeps a
    /// password out of the file.
    #[serde(default)]
    pub url: Option<String>,
    /// This instance's name among those sharing a PostgreSQL journal (default: the host name
    /// and a random suffix, new on every start). Two live instances never share a name.
    #[serde(default)]
    pub instance: Option<String>,
    /// How long a PostgreSQL journal's instance holds its pending events without renewing
    /// its lease (default `20s`; renewed every third of it). Once it lapses (the instance
    /// died), another instance's sweep claims them.
    #[serde(default = "default_lease", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub lease: Duration,
    /// How long finished events are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// How often the journal is checked (default `5s`): still the file it opened (a file
    /// removed or replaced stops the intake for good) and still taking writes (a full disk
    /// stops the intake until a write succeeds again).
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub check_interval: Duration,
    /// How often pending events that no task holds are looked for (default `30s`), and
    /// resumed: an event whose end could not be written is finished while running.
    #[serde(default = "default_sweep_interval", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub sweep_interval: Duration,
    /// How old a pending event must be before the sweep resumes it (default `1m`).
    #[serde(default = "default_sweep_after", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub sweep_after: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            path: default_journal_path(),
            url: None,
            instance: None,
            lease: default_lease(),
            retention: RetentionConfig::default(),
            check_interval: default_check_interval(),
            sweep_interval: default_sweep_interval(),
            sweep_after: default_sweep_after(),
        }
    }
}

/// Whether `s` is meant as a PostgreSQL journal's URL (rather than a file).
fn is_journal_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Whether `url` can name a PostgreSQL journal in this build (never echoing it: it may hold a
/// password).
pub fn check_journal_url(url: &str) -> Result<(), String> {
    if !is_journal_url(url) {
        return Err("expected a postgres:// or postgresql:// URL".into());
    }
    if cfg!(not(feature = "postgres")) {
        return Err("this build has no PostgreSQL journal (cargo feature `postgres`)".into());
    }
    #[cfg(feature = "postgres")]
    if let Err(e) = url.parse::<tokio_postgres::Config>() {
        // tokio-postgres names what it could not parse, never the value.
        return Err(format!("not a PostgreSQL URL: {e}"));
    }
    Ok(())
}

fn default_lease() -> Duration {
    Duration::from_secs(20)
}
fn default_check_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_sweep_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_sweep_after() -> Duration {
    Duration::from_secs(60)
}

fn default_journal_path() -> PathBuf {
    PathBuf::from("switchyard.db")
}

/// Retention of finished events (pending events and open dead letters are always kept).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished events older than this are deleted (default `7d`).
    #[serde(default = "default_retention_age", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub max_age: Duration,
    /// At most this many finished events are kept (default 1,000,000).
    #[serde(default = "default_retention_events")]
    pub max_events: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: default_retention_age(),
            max_events: default_retention_events(),
        }
    }
}

fn default_retention_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_retention_events() -> u64 {
    1_000_000
}

/// Retries of transient failures (Prefect down or overloaded) per route and event.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts, the first included, before a dead letter (default 10). Each attempt already
    /// includes the Prefect client's own quick retries (`prefect.max_retries`).
    #[serde(default = "default_attempts")]
    pub max_attempts: NonZeroU32,
    /// No retry starts once the event is this old (default `1h`).
    #[serde(default = "default_delivery_age", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub max_age: Duration,
    /// First backoff (default `1s`); doubles each attempt.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub backoff: Duration,
    /// Longest backoff (default `60s`).
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub max_backoff: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            max_age: default_delivery_age(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_attempts() -> NonZeroU32 {
    NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN)
}
fn default_delivery_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}

/// Budgets for every template and `when` expression the router evaluates per event. An
/// evaluation that exceeds one fails and the event is dead-lettered with the reason; the
/// router keeps serving whatever the payloads are.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    /// Fuel per evaluation (default 100,000): an instruction costs one and the data a
    /// template builds about one per 64 bytes, so a loop bounded by the payload, or a value
    /// built to exhaust memory, stops here.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Largest rendered text or value in bytes (default 1 MiB).
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
    /// Threads that evaluate templates, apart from the async runtime (default 2).
    #[serde(default = "default_template_threads")]
    pub threads: usize,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        Self {
            fuel: default_fuel(),
            max_output_bytes: default_max_output(),
            threads: default_template_threads(),
        }
    }
}

impl TemplatesConfig {
    /// The budget templates compile with.
    pub fn budget(&self) -> crate::template::Budget {
        crate::template::Budget {
            fuel: self.fuel,
            max_output_bytes: self.max_output_bytes,
        }
    }
}

fn default_fuel() -> u64 {
    crate::template::DEFAULT_FUEL
}
fn default_max_output() -> usize {
    crate::template::DEFAULT_MAX_OUTPUT
}
fn default_template_threads() -> usize {
    2
}

/// One route: which events, and what to do.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name (in logs, tags and idempotency keys).
    pub name: String,
    /// Source names this route listens to (default: all).
    #[serde(default)]
    pub from: Vec<String>,
    /// Jinja expression over `event`; the route acts only when it is true.
    pub when: Option<String>,
    /// A Prefect-style trigger: the action runs when it fires, not per event.
    pub trigger: Option<triggers::TriggerConfig>,
    /// Micro-batching: the action runs once per closed batch, with every event in it.
    pub batch: Option<triggers::BatchConfig>,
    /// `live` (default), or `shadow`: decide, render and check the run against the
    /// deployment's schema, record it as a would-run, and never create it.
    #[serde(default)]
    pub mode: RouteMode,
    /// When the event counts as handled, and so when its source's message is acknowledged:
    /// `created` (the default: once the run exists) or `finished` (once the run has ended;
    /// see `on_failure`). Each event waiting holds one of `engine.max_consumers`.
    #[serde(default)]
    pub settle_on: SettleOn,
    /// With `settle_on: finished`, what a run that does not complete (Failed, Crashed,
    /// Cancelled, gone from Prefect) leads to: `dead_letter` (the default: a dead letter with
    /// the run and its state; the message is acknowledged), `retry` (a new run, up to
    /// `max_runs`, after the `delivery` backoff; then a dead letter) or `accept` (acknowledged
    /// as if it had completed). A run not ended within `finish_timeout` is never retried.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Most runs per event with `on_failure: retry`, the first included (default 3; 1 to 100).
    #[serde(default = "default_max_runs")]
    pub max_runs: u32,
    /// With `settle_on: finished`, the longest wait for a run to end, from its creation
    /// (default `1h`; `1s` to `30d`); then `dead_letter`, or `accept` with `on_failure: accept`.
    #[serde(default = "default_finish_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub finish_timeout: Duration,
    /// Hold new runs while the deployment has this many runs waiting (Scheduled — Late
    /// included — or Pending; 1 to 1,000,000; needs a fixed deployment). Counted with one
    /// `POST /flow_runs/count` a second at most; events wait in the journal meanwhile, and
    /// once the engine's consumers are all waiting the queue fills and sources are held back
    /// (webhooks answer 503 with `Retry-After`). Default: no limit.
    pub max_backlog: Option<u64>,
    /// At most `limit` unfinished runs per `key` (a template over `event`, e.g.
    /// `"{{ event.payload.customer }}"`): an event whose key is busy waits — in the order
    /// events were received — and starts when a run of its key ends. Needs the runs followed.
    pub concurrency: Option<ConcurrencyConfig>,
    /// What to do.
    pub action: ActionConfig,
}

/// A route's per-key concurrency (see [`RouteConfig::concurrency`]).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyConfig {
    /// The key: a template over `event`.
    pub key: String,
    /// Unfinished runs per key at most (default 1; 1 to 1,000).
    #[serde(default = "default_concurrency_limit")]
    pub limit: u32,
}

fn default_concurrency_limit() -> u32 {
    1
}

/// When a route's event counts as handled (see [`RouteConfig::settle_on`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettleOn {
    /// Once the flow run exists.
    #[default]
    Created,
    /// Once the flow run has ended.
    Finished,
}

/// What a run that did not complete leads to (see [`RouteConfig::on_failure`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// A dead letter.
    #[default]
    DeadLetter,
    /// Another run, up to `max_runs`.
    Retry,
    /// Acknowledged as if it had completed.
    Accept,
}

fn default_max_runs() -> u32 {
    3
}
fn default_finish_timeout() -> Duration {
    Duration::from_secs(3600)
}

impl RouteConfig {
    /// What the route's trigger or batch waits for, in a line (none for a plain route).
    pub fn describe_stateful(&self) -> Option<String> {
        match (&self.trigger, &self.batch) {
            (Some(t), _) => Some(t.describe()),
            (None, Some(b)) => Some(b.describe()),
            (None, None) => None,
        }
    }
}

/// Whether a route's runs are created.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RouteMode {
    /// Runs are created.
    #[default]
    Live,
    /// Runs are recorded as would-runs, never created.
    Shadow,
}

/// An action, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionConfig {
    /// Create a flow run of a deployment.
    RunDeployment(RunDeploymentConfig),
}

/// `run_deployment`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunDeploymentConfig {
    /// `"Flow Name/deployment-name"` or a deployment id; a Jinja template.
    pub deployment: String,
    /// Parameters: a map whose string values are Jinja templates (a template that is one
    /// `{{ expression }}` keeps the expression's JSON type), or one template string that
    /// renders to an object.
    #[serde(default = "empty_object")]
    pub parameters: Value,
    /// Extra tags on the run.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Run name template (default: Prefect picks one).
    pub flow_run_name: Option<String>,
    /// Most runs of this route being created at once (default: no cap beyond the global one).
    pub max_in_flight: Option<NonZeroUsize>,
    /// At most this many runs per second from this route (default: unlimited).
    pub rate_limit: Option<f64>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A read and validated configuration (data only: [`crate::routes::load`] compiles its
/// routes).
#[derive(Debug)]
pub struct Parsed {
    /// Where it came from.
    pub path: PathBuf,
    /// The settings.
    pub config: Config,
    /// Whether it was the original prefect-event-router's form.
    pub legacy: bool,
}

/// Reads a config file (see [`parse_str`]).
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(path, format!("cannot read the file: {e}")))
}

/// Interpolates, parses and validates config text, with an explicit environment.
pub fn parse_str(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Parsed, ConfigError> {
    let text = interpolate(text, env).map_err(|e| ConfigError::file(path, e.to_string()))?;
    let shape: Value = serde_norway::from_str(&text)
        .map_err(|e| ConfigError::file(path, format!("not valid YAML or JSON: {e}")))?;
    // Before anything can print a part of it.
    crate::secrets::register_env();
    crate::secrets::register_value(&shape);
    let (config, legacy) = match &shape {
        Value::Object(map) if map.contains_key("threads") => {
            (legacy::translate(path, &text)?, true)
        }
        Value::Object(_) => (parse::<Config>(path, &text)?, false),
        _ => {
            return Err(ConfigError::file(
                path,
                "expected a mapping with `sources` and `routes` (or the prefect-event-router form with `threads`)",
            ));
        }
    };
    validate(path, &config)?;
    Ok(Parsed {
        path: path.to_path_buf(),
        config,
        legacy,
    })
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut key = e.path().to_string();
        let mut message = e.into_inner().to_string();
        // A value deserialized by hand (a trigger) says where inside it the error is.
        if let Some(at) = message.find(triggers::AT)
            && let Some((inner, rest)) = message[at + triggers::AT.len()..].split_once("`: ")
        {
            key = format!("{key}.{inner}");
            message = rest.to_string();
        }
        // serde_norway prefixes its own (shorter) path; the key already says where.
        if let Some((head, tail)) = message.split_once(": ") {
            let root = head.split(['[', '.']).next().unwrap_or(head);
            if !head.contains(' ') && key.starts_with(root) {
                message = tail.to_string();
            }
        }
        if key == "." || key.is_empty() {
            ConfigError::file(path, message)
        } else {
            ConfigError::at(path, key, message)
        }
    })
}

impl Config {
    /// The sources' names, sorted.
    pub fn source_names(&self) -> Vec<&str> {
        let mut known: Vec<&str> = self.sources.iter().map(SourceConfig::name).collect();
        known.sort_unstable();
        known
    }
}

#[cfg(test)]
mod tests;

fn default_true() -> bool {
    true
}
