//! `switchyard test CONFIG TESTS...`: a config's routes tested offline (no Prefect, no broker,
//! no network) on a simulated clock. Each test feeds events at given times since it began,
//! lets the clock run on, and compares the runs the routes decided with the expected ones.
//!
//! The routes are the ones `run` compiles, decided by the same code: `when` and parameter
//! templates ([`Route::plan`]), triggers and batches ([`Route::handle`] and
//! [`Stateful::tick`] against a scratch journal), on a [`SimulatedTime`] instead of the wall
//! clock, so a ten-minute window takes no time to test. A deployment's parameter schema can
//! be given in the tests file, so schema checks run offline too.
//!
//! ```yaml
//! deployments:                       # optional
//!   "triage/default": {schema: {type: object, required: [customer]}}
//! tests:
//!   - name: three failures within ten minutes start one triage run
//!     events:                        # fed in order; `at` is the time since the test began
//!       - {source: orders, name: order.failed, payload: {customer: 7}, at: 0s}
//!       - {source: orders, name: order.failed, payload: {customer: 7}, at: 4m}
//!     advance: 1h                    # let the clock run on after the last event
//!     expect_runs:                   # exactly these, in this order ([] = none at all)
//!       - route: repeated-failures
//!         deployment: triage/default # optional
//!         parameters: {customer: 7}  # optional; a subset match
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use switchyard_core::Event;
use tokio_util::sync::CancellationToken;

use crate::journal::{SqliteStore, Store};
use crate::outcome::RouteOutcome;
use crate::routes::{DeliveryPolicy, Loaded, Plan, Route, RouteEnv};
use crate::topic::firing_source;
use crate::triggers::SimulatedTime;

/// Where every test's clock starts (fixed, so firing times and ids repeat run to run).
const EPOCH: &str = "2026-01-01T00:00:00Z";
/// Clock steps one test may take before it is stopped (a trigger that never settles).
const MAX_STEPS: usize = 100_000;

/// A tests file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestsFile {
    /// Deployments' parameter schemas, by `Flow/deployment`.
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentSpec>,
    /// The tests.
    pub tests: Vec<TestCase>,
}

/// What a test knows of a deployment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Its parameter schema (as Prefect's `parameter_openapi_schema`).
    pub schema: Option<Value>,
}

/// One test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What it shows.
    pub name: String,
    /// Events, in order.
    #[serde(default)]
    pub events: Vec<TestEvent>,
    /// How long the clock runs on after the last event.
    #[serde(
        default,
        deserialize_with = "crate::config::triggers::optional_duration"
    )]
    pub advance: Option<Duration>,
    /// The runs, exactly and in order.
    pub expect_runs: Vec<ExpectedRun>,
}

/// An event of a test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    /// A source of the config.
    pub source: String,
    /// The event's name.
    pub name: String,
    /// Its payload (default `{}`).
    #[serde(default = "empty_object")]
    pub payload: Value,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its id (default: `<test number>-<event number>`).
    pub id: Option<String>,
    /// When, since the test began (seconds or a duration; default 0).
    #[serde(
        default,
        deserialize_with = "crate::config::triggers::seconds_or_duration"
    )]
    pub at: Duration,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A run a test expects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRun {
    /// The route that starts it.
    pub route: String,
    /// Its deployment, if the test says.
    pub deployment: Option<String>,
    /// Parameters it must have (others may be there too).
    pub parameters: Option<Value>,
}

/// What a route decided in a test.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A run.
    Ran {
        /// When, since the test began.
        at: Duration,
        /// The event (or the firing) it is for.
        event: String,
        /// The route.
        route: String,
        /// The deployment.
        deployment: String,
        /// The parameters.
        parameters: Value,
    },
    /// A dead letter.
    Dead {
        /// When, since the test began.
        at: Duration,
        /// The event (or the firing) it is for.
        event: String,
        /// The route.
        route: String,
        /// Why.
        reason: String,
    },
}

/// `expected` is `actual` or a part of it: objects by their keys, recursively; a quoted
/// number or boolean matches that number or boolean.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av))),
        (Value::String(e), Value::Number(n)) => {
            e.parse::<serde_json::Number>().is_ok_and(|x| x == *n)
        }
        (Value::String(e), Value::Bool(b)) => e.parse::<bool>().is_ok_and(|x| x == *b),
        _ => expected == actual,
    }
}

impl ExpectedRun {
    fn fits(&self, o: &Outcome) -> bool {
        match o {
            Outcome::Ran {
                route,
                deployment,
                parameters,
                ..
            } => {
                *route == self.route
                    && self.deployment.as_ref().is_none_or(|d| d == deployment)
                    && self
                        .parameters
                        .as_ref()
                        .is_none_or(|p| matches(p, parameters))
            }
            Outcome::Dead { .. } => false,
        }
    }

    fn show(&self) -> String {
        let mut s = self.route.clone();
        if let Some(d) = &self.deployment {
            s.push_str(&format!(" -> {d}"));
        }
        if let Some(p) = &self.parameters {
            s.push_str(&format!(" {p}"));
        }
        s
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

impl Outcome {
    fn show(&self) -> String {
        match self {
            Self::Ran {
                at,
                route,
                deployment,
                parameters,
                ..
            } => format!("{} {route} -> {deployment} {parameters}", clock(*at)),
            Self::Dead {
                at, route, reason, ..
            } => {
                format!("{} {route}: dead letter: {reason}", clock(*at))
            }
        }
    }
}

/// One test's run: what happened, or why the test could not run.
struct Simulation<'a> {
    routes: &'a [Arc<Route>],
    schemas: &'a BTreeMap<String, DeploymentSpec>,
    time: Arc<SimulatedTime>,
    start: DateTime<Utc>,
    journal: Arc<dyn Store>,
    env: RouteEnv,
    firings: tokio::sync::mpsc::Receiver<Event>,
    outcomes: Vec<Outcome>,
}

impl Simulation<'_> {
    fn since_start(&self) -> Duration {
        (self.time.get() - self.start).to_std().unwrap_or_default()
    }

    fn record_plan(
        &mut self,
        route: &Route,
        event: &str,
        plan: Result<Plan, crate::outcome::Failure>,
    ) {
        let at = self.since_start();
        let dead = |reason: String| Outcome::Dead {
            at,
            event: event.to_string(),
            route: route.name.clone(),
            reason,
        };
        let outcome = match plan {
            Ok(Plan::Skip(_)) => return,
            Err(f) => dead(f.message),
            Ok(Plan::Run(r)) => {
                let parameters = Value::Object(r.parameters().clone());
                let problems = self
                    .schemas
                    .get(&r.deployment())
                    .and_then(|d| d.schema.as_ref())
                    .map(|s| crate::actions::schema::violations(s, &parameters))
                    .unwrap_or_default();
                if problems.is_empty() {
                    Outcome::Ran {
                        at,
                        event: event.to_string(),
                        route: route.name.clone(),
                        deployment: r.deployment(),
                        parameters,
                    }
                } else {
                    dead(crate::actions::ActionError::Schema(problems.join("; ")).to_string())
                }
            }
        };
        self.outcomes.push(outcome);
    }

    /// Plans an event or firing for a route on the evaluation pool, as `run` does.
    async fn plan(&mut self, route: &Arc<Route>, event: &Arc<Event>) {
        let plan = route.plan_off_runtime(event).await;
        self.record_plan(route, &event.id, plan);
    }

    /// Runs the firings the triggers handed over.
    async fn run_firings(&mut self, more: Vec<Event>) -> Result<(), String> {
        let mut all = more;
        while let Ok(f) = self.firings.try_recv() {
            all.push(f);
        }
        for firing in all {
            self.journal
                .accept(&firing)
                .await
                .map_err(|e| e.to_string())?;
            let route = self
                .routes
                .iter()
                .find(|r| firing.source == firing_source(&r.name))
                .cloned();
            if let Some(route) = route {
                self.plan(&route, &Arc::new(firing)).await;
            }
        }
        Ok(())
    }

    /// Moves the clock to `target`, acting on every deadline on the way, in time order.
    async fn advance_to(&mut self, target: DateTime<Utc>) -> Result<(), String> {
        for _ in 0..MAX_STEPS {
            let mut next: Option<DateTime<Utc>> = None;
            for r in self.routes {
                if let Some(st) = &r.stateful
                    && let Some(d) = st.next_deadline().await
                {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
            let Some(due) = next.filter(|d| *d <= target) else {
                if self.time.get() < target {
                    self.time.set(target);
                }
                return Ok(());
            };
            if due > self.time.get() {
                self.time.set(due);
            }
            let mut fired = Vec::new();
            for r in self.routes {
                if let Some(st) = &r.stateful {
                    fired.extend(
                        st.tick(self.journal.as_ref())
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
            }
            let settled = fired.is_empty();
            self.run_firings(fired).await?;
            // A deadline that is due and acts on nothing would loop: step past it.
            if settled && self.time.get() == due {
                self.time.set(due + chrono::Duration::milliseconds(1));
            }
        }
        Err(format!(
            "the clock took more than {MAX_STEPS} steps without settling"
        ))
    }

    async fn feed(&mut self, event: Event) -> Result<(), String> {
        self.journal
            .accept(&event)
            .await
            .map_err(|e| e.to_string())?;
        let event = Arc::new(event);
        for route in self.routes {
            if !route.receives(&event) {
                continue;
            }
            if route.stateful.is_some() {
                let outcome = route
                    .handle(&event, &[], &self.env)
                    .await
                    .map_err(|e| e.to_string())?;
                if let RouteOutcome::DeadLettered { reason } = outcome {
                    let at = self.since_start();
                    self.outcomes.push(Outcome::Dead {
                        at,
                        event: event.id.clone(),
                        route: route.name.clone(),
                        reason,
                    });
                }
                self.run_firings(Vec::new()).await?;
            } else {
                self.plan(route, &event).await;
            }
        }
        Ok(())
    }
}

/// Feeds `events` (each at its `received` time, in order) to freshly compiled routes on a
/// clock that starts at `start`, then lets it run to `end`; the runs and dead letters, in
/// order. Used by `switchyard test` and by `switchyard replay --dry-run`.
pub async fn run_events(
    loaded: &Loaded,
    schemas: &BTreeMap<String, DeploymentSpec>,
    start: DateTime<Utc>,
    events: Vec<Event>,
    end: DateTime<Utc>,
    scratch: &Path,
) -> Result<Vec<Outcome>, String> {
    // Fresh routes: each run starts with empty windows.
    let routes =
        crate::routes::compile_all(&loaded.path, &loaded.config).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(scratch);
    let journal: Arc<dyn Store> = Arc::new(SqliteStore::open(scratch).map_err(|e| e.to_string())?);
    let time = Arc::new(SimulatedTime::new(start));
    let (tx, firings) = tokio::sync::mpsc::channel(MAX_STEPS);
    let owned = Arc::new(crate::owned::Owned::default());
    for r in &routes {
        if let Some(st) = &r.stateful {
            st.simulate(Arc::clone(&time));
            st.set_firings(tx.clone(), Arc::clone(&owned));
            st.restore(journal.as_ref())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    // Never called: a stateful route only journals, and plans are made without Prefect.
    let prefect = switchyard_prefect::PrefectClient::new(switchyard_prefect::ClientConfig::new(
        "http://127.0.0.1:9/api",
    ))
    .map_err(|e| e.to_string())?;
    let env = RouteEnv {
        prefect,
        journal: Arc::clone(&journal),
        delivery: DeliveryPolicy::from(&loaded.config.delivery),
        interrupt: CancellationToken::new(),
        follower: None,
    };
    let mut sim = Simulation {
        routes: &routes,
        schemas,
        time,
        start,
        journal,
        env,
        firings,
        outcomes: Vec::new(),
    };
    for event in events {
        sim.advance_to(event.received.max(start)).await?;
        sim.feed(event).await?;
    }
    sim.advance_to(end).await?;
    Ok(sim.outcomes)
}

/// Runs one test against freshly compiled routes; the runs and dead letters, in order.
pub async fn run_test(
    loaded: &Loaded,
    schemas: &BTreeMap<String, DeploymentSpec>,
    number: usize,
    case: &TestCase,
    scratch: &Path,
) -> Result<Vec<Outcome>, String> {
    let start: DateTime<Utc> = EPOCH.parse().map_err(|e| format!("{e}"))?;
    let sources = loaded.config.source_names();
    let mut last = Duration::ZERO;
    let mut events = Vec::with_capacity(case.events.len());
    for (i, e) in case.events.iter().enumerate() {
        if !sources.contains(&e.source.as_str()) {
            return Err(format!(
                "events[{i}]: no source {:?} in the config (it has {})",
                e.source,
                sources.join(", ")
            ));
        }
        if e.at < last {
            return Err(format!(
                "events[{i}]: at {} comes before the event before it",
                clock(e.at)
            ));
        }
        last = e.at;
        let when = start + chrono::Duration::from_std(e.at).map_err(|e| e.to_string())?;
        let mut b = Event::builder(&e.source, &e.name, e.payload.clone())
            .id(e
                .id
                .clone()
                .unwrap_or_else(|| format!("{}-{}", number + 1, i + 1)))
            .occurred(when);
        for (k, v) in &e.labels {
            b = b.label(k, v);
        }
        let mut event = b.build();
        event.received = when;
        events.push(event);
    }
    let end = last + case.advance.unwrap_or_default();
    let end = start + chrono::Duration::from_std(end).map_err(|e| e.to_string())?;
    run_events(loaded, schemas, start, events, end, scratch).await
}

/// Whether `outcomes` are the runs `case` expects: `None` if so, else the report's lines.
pub fn verdict(case: &TestCase, outcomes: &[Outcome]) -> Option<Vec<String>> {
    let runs: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Ran { .. }))
        .collect();
    let same = runs.len() == case.expect_runs.len()
        && case.expect_runs.iter().zip(&runs).all(|(e, o)| e.fits(o));
    if same {
        return None;
    }
    let mut lines = vec!["    expected:".to_string()];
    if case.expect_runs.is_empty() {
        lines.push("      (no run)".into());
    }
    for (i, e) in case.expect_runs.iter().enumerate() {
        let mark = if runs.get(i).is_some_and(|o| e.fits(o)) {
            "="
        } else {
            "-"
        };
        lines.push(format!("    {mark} {}", e.show()));
    }
    lines.push("    decided:".into());
    if outcomes.is_empty() {
        lines.push("      (nothing)".into());
    }
    let mut n = 0;
    for o in outcomes {
        let mark = match o {
            Outcome::Ran { .. } => {
                let fits = case.expect_runs.get(n).is_some_and(|e| e.fits(o));
                n += 1;
                if fits { "=" } else { "+" }
            }
            Outcome::Dead { .. } => "!",
        };
        lines.push(format!("    {mark} {}", o.show()));
    }
    Some(lines)
}

/// `switchyard test CONFIG TESTS...`.
pub async fn main(config: &Path, files: &[PathBuf]) -> ExitCode {
    let loaded = match crate::routes::load(config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let scratch_dir = std::env::temp_dir().join(format!(
        "switchyard-test-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    if let Err(e) = std::fs::create_dir_all(&scratch_dir) {
        eprintln!("error: cannot make a scratch directory: {e}");
        return ExitCode::from(2);
    }
    let started = std::time::Instant::now();
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut broken = false;
    for file in files {
        let parsed = crate::config::read(file).and_then(|text| {
            serde_path_to_error::deserialize::<_, TestsFile>(serde_norway::Deserializer::from_str(
                &text,
            ))
            .map_err(|e| {
                crate::config::ConfigError::file(file, format!("at `{}`: {}", e.path(), e.inner()))
            })
        });
        let tests = match parsed {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e}");
                broken = true;
                continue;
            }
        };
        for (i, case) in tests.tests.iter().enumerate() {
            let scratch = scratch_dir.join(format!("{i}.db"));
            match run_test(&loaded, &tests.deployments, i, case, &scratch).await {
                Ok(outcomes) => match verdict(case, &outcomes) {
                    None => {
                        passed += 1;
                        say!("ok      {}", case.name);
                    }
                    Some(lines) => {
                        failed += 1;
                        say!("FAILED  {}", case.name);
                        for l in lines {
                            say!("{l}");
                        }
                    }
                },
                Err(e) => {
                    failed += 1;
                    say!("FAILED  {}\n    cannot run it: {e}", case.name);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch_dir);
    say!(
        "{passed} passed, {failed} failed ({} ms)",
        started.elapsed().as_millis()
    );
    if broken {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_subset_of_the_parameters_matches() {
        let actual = json!({"customer": 7, "n": {"a": 1, "b": 2}, "ok": true});
        assert!(matches(&json!({"customer": 7}), &actual));
        assert!(matches(&json!({"customer": "7", "ok": "true"}), &actual));
        assert!(matches(&json!({"n": {"b": 2}}), &actual));
        assert!(!matches(&json!({"customer": 8}), &actual));
        assert!(!matches(&json!({"missing": 1}), &actual));
        assert!(!matches(&json!({"n": {"b": 3}}), &actual));
    }
}
