//! Routes: which events (sources, `when`), what to do with them (an action), and how a
//! failure ends (retried while transient, then a dead letter with the reason).

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::Event;
use switchyard_prefect::{PrefectClient, RetryPolicy};

use crate::topic::Topic;
use tokio_util::sync::CancellationToken;

use crate::actions::{Action, RunCreated};
use crate::config::{ConfigError, DeliveryConfig, RouteConfig};
use crate::journal::{FollowedRun, JournalError, Settlement, Store};
pub use crate::outcome::{Failure, RouteOutcome, skipped_routes};
use crate::outcome::{Skips, WouldRun};
use crate::template::{self, Predicate};
use crate::triggers::{AbsorbError, Absorbed, Machine, Stateful, firing_context, firing_source};

/// A loaded configuration with its routes compiled: what `run`, `check` and replay work from.
#[derive(Debug)]
pub struct Loaded {
    /// Where it came from.
    pub path: std::path::PathBuf,
    /// The settings.
    pub config: crate::config::Config,
    /// Compiled routes, in file order.
    pub routes: Vec<Arc<Route>>,
    /// Whether it was the original prefect-event-router's form.
    pub legacy: bool,
}

/// Reads, interpolates, parses and validates a config file, and compiles its routes.
pub fn load(path: &std::path::Path) -> Result<Loaded, ConfigError> {
    let text = crate::config::read(path)?;
    load_str(path, &text, |name| std::env::var(name).ok())
}

impl Loaded {
    /// The same config with every route in shadow mode (`run --shadow`).
    pub fn into_shadow(mut self) -> Result<Self, ConfigError> {
        for r in &mut self.config.routes {
            r.mode = crate::config::RouteMode::Shadow;
        }
        self.routes = compile_all(&self.path, &self.config)?;
        Ok(self)
    }
}

/// [`load`] for text already read, with an explicit environment (tests).
pub fn load_str(
    path: &std::path::Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let parsed = crate::config::parse_str(path, text, env)?;
    let routes = compile_all(&parsed.path, &parsed.config)?;
    Ok(Loaded {
        path: parsed.path,
        config: parsed.config,
        routes,
        legacy: parsed.legacy,
    })
}

/// Compiles every route of a validated config; an error names the route's key.
pub fn compile_all(
    path: &std::path::Path,
    config: &crate::config::Config,
) -> Result<Vec<Arc<Route>>, ConfigError> {
    // Templates compiled here evaluate under this config's budget.
    template::set_budget(config.templates.budget());
    let all: Vec<String> = config
        .source_names()
        .into_iter()
        .map(String::from)
        .collect();
    config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let sources = if r.from.is_empty() { &all } else { &r.from };
            Route::compile(r, sources)
                .map(Arc::new)
                .map_err(|(key, message)| {
                    ConfigError::at(path, format!("routes[{i}].{key}"), message)
                })
        })
        .collect()
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Route name.
    pub name: String,
    /// Source names it listens to (resolved: never empty).
    pub sources: Vec<String>,
    /// Optional predicate.
    pub when: Option<Predicate>,
    /// The action.
    pub action: Action,
    /// The trigger or batch, when the route is stateful.
    pub stateful: Option<Arc<Stateful>>,
    /// A shadow route records would-runs and never creates a run.
    pub shadow: bool,
    /// `settle_on: finished`: the event is handled once its run has ended.
    pub finish: Option<FinishPolicy>,
    /// `max_backlog`: new runs wait while the deployment has that many waiting.
    pub backlog: Option<Backlog>,
    /// `concurrency`: the key's template and the limit.
    pub concurrency: Option<(Arc<template::TextTemplate>, Arc<crate::per_key::PerKey>)>,
}

/// The longest concurrency key, in bytes.
pub const MAX_CONCURRENCY_KEY: usize = 1024;

/// How often a held route counts its deployment's backlog again.
const BACKLOG_CHECK: Duration = Duration::from_secs(1);

/// `max_backlog`: a route's new runs wait while its deployment has `max` runs Scheduled
/// (Late included) or Pending. One count a second at most, shared by every event waiting;
/// runs being created count too, so events let through together never overshoot.
#[derive(Debug)]
pub struct Backlog {
    max: u64,
    /// The count last read, and when.
    seen: tokio::sync::Mutex<Option<(tokio::time::Instant, u64)>>,
    /// Runs let through whose creation has not returned yet (not in the count yet).
    creating: Arc<std::sync::atomic::AtomicU64>,
    held: std::sync::atomic::AtomicBool,
}

/// A run let through by [`Backlog::admit`], counted until its creation returns.
struct Admitted(Arc<std::sync::atomic::AtomicU64>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Backlog {
    fn new(max: u64) -> Self {
        Self {
            max,
            seen: tokio::sync::Mutex::new(None),
            creating: Arc::default(),
            held: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Waits until the deployment's backlog is below `max` (or cannot be counted: Prefect's
    /// answer to the create then says more); `None` when `interrupt` comes first.
    async fn admit(
        &self,
        route: &str,
        deployment: &switchyard_prefect::DeploymentRef,
        prefect: &PrefectClient,
        interrupt: &CancellationToken,
    ) -> Option<Admitted> {
        use std::sync::atomic::Ordering;
        loop {
            {
                let mut seen = self.seen.lock().await;
                let fresh = seen.filter(|(at, _)| at.elapsed() < BACKLOG_CHECK);
                let counted = match fresh {
                    Some((_, n)) => Some(n),
                    None => match backlog(deployment, prefect).await {
                        Ok(n) => {
                            *seen = Some((tokio::time::Instant::now(), n));
                            Some(n)
                        }
                        Err(e) => {
                            tracing::warn!(route, error = %e, "cannot count the deployment's backlog; not holding");
                            None
                        }
                    },
                };
                let creating = self.creating.load(Ordering::SeqCst);
                match counted {
                    Some(n) if n.saturating_add(creating) >= self.max => {
                        if !self.held.swap(true, Ordering::SeqCst) {
                            crate::metrics::route_held(route, true);
                            tracing::warn!(
                                route,
                                backlog = n,
                                creating,
                                max_backlog = self.max,
                                "the deployment's backlog is at max_backlog; holding new runs"
                            );
                        }
                    }
                    _ => {
                        self.creating.fetch_add(1, Ordering::SeqCst);
                        if self.held.swap(false, Ordering::SeqCst) {
                            crate::metrics::route_held(route, false);
                            tracing::info!(
                                route,
                                backlog = counted,
                                max_backlog = self.max,
                                "the deployment's backlog is below max_backlog; starting runs again"
                            );
                        }
                        return Some(Admitted(Arc::clone(&self.creating)));
                    }
                }
            }
            tokio::select! {
                _ = interrupt.cancelled() => return None,
                _ = tokio::time::sleep(BACKLOG_CHECK) => {}
            }
        }
    }
}

/// Runs of `deployment` waiting: Scheduled (Late is a Scheduled state) or Pending.
async fn backlog(
    deployment: &switchyard_prefect::DeploymentRef,
    prefect: &PrefectClient,
) -> Result<u64, switchyard_prefect::PrefectError> {
    let d = prefect.resolve(deployment).await?;
    prefect
        .count_flow_runs(&serde_json::json!({
            "flow_runs": {
                "deployment_id": {"any_": [d.id]},
                "state": {"type": {"any_": ["SCHEDULED", "PENDING"]}},
            }
        }))
        .await
}

/// How a `settle_on: finished` route waits for its runs (see `RouteConfig::settle_on`).
#[derive(Debug, Clone, Copy)]
pub struct FinishPolicy {
    /// What a run that did not complete leads to.
    pub on_failure: crate::config::OnFailure,
    /// Most runs per event with `retry`.
    pub max_runs: u32,
    /// Longest wait for a run to end, from its creation.
    pub timeout: Duration,
}

/// Why a route could not settle an event; the event stays pending and is resumed later.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The journal could not record the decision.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Shutdown interrupted a retry.
    #[error("interrupted by shutdown while waiting to retry")]
    Interrupted,
}

/// What a route will do for an event, decided before anything outside is touched.
#[derive(Debug)]
pub enum Plan {
    /// Not applicable, and why.
    Skip(String),
    /// Run the action as rendered.
    Run(crate::actions::Rendered),
}

/// What one attempt decided, before it is recorded (only these two: a failure is a
/// [`Failure`], and a dead letter is the caller's decision after it).
#[derive(Debug, Clone)]
pub enum Decision {
    /// Not applicable.
    Skip(String),
    /// A run exists.
    Ran(RunCreated),
    /// A shadow route would have run.
    WouldRun(WouldRun),
}

/// Why [`Route::attempt_held`] did not decide.
enum Held {
    /// The attempt failed.
    Failed(Failure),
    /// Shutdown came while the route held the run.
    Interrupted,
}

/// What [`Route::start`] ended with.
enum Started {
    /// A run exists (recorded).
    Run(RunCreated),
    /// Anything else (recorded).
    Other(RouteOutcome),
}

/// An action's failure as an attempt's.
fn failed(e: crate::actions::ActionError) -> Failure {
    Failure {
        retryable: e.is_retryable(),
        message: e.to_string(),
    }
}

/// How long a transient failure is retried before it becomes a dead letter.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// Attempts per route and event, the first included.
    pub max_attempts: u32,
    /// No retry is started once the event is this old.
    pub max_age: Duration,
    /// Backoff between attempts (exponential, jittered).
    pub backoff: RetryPolicy,
}

impl From<&DeliveryConfig> for DeliveryPolicy {
    fn from(c: &DeliveryConfig) -> Self {
        Self {
            max_attempts: c.max_attempts.get(),
            max_age: c.max_age,
            backoff: RetryPolicy {
                max_retries: c.max_attempts.get(),
                base_delay: c.backoff,
                max_delay: c.max_backoff,
                jitter: 0.2,
            },
        }
    }
}

/// What a route needs to run.
#[derive(Clone)]
pub struct RouteEnv {
    /// Prefect.
    pub prefect: PrefectClient,
    /// The journal.
    pub journal: Arc<dyn Store>,
    /// Retries.
    pub delivery: DeliveryPolicy,
    /// Cancelled at shutdown: a route waiting to retry stops waiting.
    pub interrupt: CancellationToken,
    /// What follows runs to their end (for `settle_on: finished`).
    pub follower: Option<Arc<crate::follow::Follower>>,
}

/// The routes in force and what they run with, swapped whole by a reload: every event is
/// routed by one `Routing` (read once, when the engine hands it to the routes), so a reload
/// never splits an event between two configs.
pub struct Routing {
    /// Counts reloads: 1 at start, one more for each config swapped in.
    pub generation: u64,
    /// Compiled routes, in file order.
    pub routes: Vec<Arc<Route>>,
    /// What they run with.
    pub env: RouteEnv,
    /// The sources' settings (what the admin server shows).
    pub sources: Vec<crate::config::SourceConfig>,
    /// Each route's [`Route::topics`], in the order of `routes`.
    topics: Vec<Vec<String>>,
}

impl Routing {
    /// The routing of `routes`.
    pub fn new(
        generation: u64,
        routes: Vec<Arc<Route>>,
        env: RouteEnv,
        sources: Vec<crate::config::SourceConfig>,
    ) -> Self {
        let topics = routes.iter().map(|r| r.topics()).collect();
        Self {
            generation,
            routes,
            env,
            sources,
            topics,
        }
    }

    /// The routes `event` goes to (as [`Route::receives`] decides, with the topics computed
    /// once per route instead of once per event).
    pub fn receivers<'a>(&'a self, event: &Event) -> impl Iterator<Item = &'a Arc<Route>> + 'a {
        let keys = crate::topic::keys_of(event);
        self.routes
            .iter()
            .zip(&self.topics)
            .filter(move |(_, topics)| listens(topics, &keys))
            .map(|(r, _)| r)
    }

    /// What the routes in force will do with `event`, as far as it is known before it is
    /// journaled: every receiving route skips it (`Ok(Some(skips))`, `(route, reason)`; none
    /// when no route receives it), some route acts on it or a stateful one absorbs it
    /// (`Ok(None)`), or that is known once the `when` of some routes is evaluated
    /// (`Err((skips so far, those routes))`, for [`Routing::evaluate_skips`]). Nothing is
    /// evaluated here: only constant `when`s are read.
    pub fn foresee(&self, event: &Event) -> Result<Option<Skips>, (Skips, Vec<Arc<Route>>)> {
        let mut skips = Vec::new();
        let mut maybe = Vec::new();
        for r in self.receivers(event) {
            match (&r.stateful, &r.when) {
                (Some(_), _) | (None, None) => return Ok(None),
                (None, Some(when)) => match when.constant() {
                    Some(true) => return Ok(None),
                    Some(false) => skips.push((r.name.clone(), when_false(when))),
                    None => maybe.push(Arc::clone(r)),
                },
            }
        }
        if maybe.is_empty() {
            Ok(Some(skips))
        } else {
            Err((skips, maybe))
        }
    }

    /// The rest of [`Routing::foresee`]: the `when` of each of `routes` evaluated for `event`
    /// on the template threads, never on the async runtime. `Some` with every skip when all
    /// are false; `None` when one holds or fails (the route would dead-letter the event, so it
    /// is journaled and routed).
    pub async fn evaluate_skips(
        mut skips: Skips,
        routes: Vec<Arc<Route>>,
        event: Arc<Event>,
    ) -> Option<Skips> {
        template::sandbox(move || {
            for r in &routes {
                let when = r.when.as_ref()?;
                if r.when_holds(&event) != Ok(false) {
                    return None;
                }
                skips.push((r.name.clone(), when_false(when)));
            }
            Some(skips)
        })
        .await
        .ok()
        .flatten()
    }

    /// The route called `name`, if there is one.
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// Why a route whose `when` is false skips an event (the same words however it was decided).
fn when_false(when: &Predicate) -> String {
    format!("`when` {:?} is false", when.source())
}

/// Whether a route subscribed to `topics` gets an event with these keys
/// ([`crate::topic::keys_of`]).
fn listens(topics: &[String], keys: &[String]) -> bool {
    topics.iter().any(|t| keys.contains(t))
}

/// The [`Routing`] in force, shared by the engine, the trigger runners and the admin server.
pub struct Live(std::sync::RwLock<Arc<Routing>>);

impl Live {
    /// Starting with `routing`.
    pub fn new(routing: Routing) -> Self {
        Self(std::sync::RwLock::new(Arc::new(routing)))
    }

    /// The routing in force now.
    pub fn current(&self) -> Arc<Routing> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts `routing` in force from the next event on; returns the one it replaces.
    pub fn replace(&self, routing: Routing) -> Arc<Routing> {
        let mut now = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *now, Arc::new(routing))
    }
}

impl Route {
    /// Compiles a route; an error is `(key inside the route, message)`.
    pub fn compile(cfg: &RouteConfig, sources: &[String]) -> Result<Self, (String, String)> {
        let when = cfg
            .when
            .as_deref()
            .map(Predicate::compile)
            .transpose()
            .map_err(|e| ("when".to_string(), e))?;
        let action = Action::compile(&cfg.action).map_err(|(k, e)| (format!("action.{k}"), e))?;
        let concurrency = cfg
            .concurrency
            .as_ref()
            .map(|c| {
                template::TextTemplate::compile(&c.key)
                    .map(|t| (Arc::new(t), crate::per_key::PerKey::new(&cfg.name, c.limit)))
                    .map_err(|e| ("concurrency.key".to_string(), e))
            })
            .transpose()?;
        if cfg.max_backlog.is_some() && action.static_deployment().is_none() {
            return Err((
                "max_backlog".into(),
                "needs a fixed deployment, not one rendered from the event".into(),
            ));
        }
        let stateful = Machine::compile(cfg.trigger.as_ref(), cfg.batch.as_ref())?
            .map(|m| Arc::new(Stateful::new(&cfg.name, m)));
        Ok(Self {
            name: cfg.name.clone(),
            sources: sources.to_vec(),
            when,
            action,
            stateful,
            shadow: cfg.mode == crate::config::RouteMode::Shadow,
            backlog: cfg.max_backlog.map(Backlog::new),
            concurrency,
            finish: (cfg.settle_on == crate::config::SettleOn::Finished
                && cfg.mode != crate::config::RouteMode::Shadow)
                .then_some(FinishPolicy {
                    on_failure: cfg.on_failure,
                    max_runs: cfg.max_runs.max(1),
                    timeout: cfg.finish_timeout,
                }),
        })
    }

    /// The topics the route's collector subscribes to: its sources — or, when the route can
    /// only apply to exact event names (a trigger's `expect`/`after`, or a `when` that tests
    /// only `event.name`), just those names from its sources — and its own firings. Events of
    /// other names never reach the route: matching costs nothing for rules that cannot apply,
    /// and the journal records no decision of such a route for them.
    pub fn subscriptions(&self) -> Vec<Topic> {
        let names = self
            .stateful
            .as_ref()
            .and_then(|s| s.exact_names())
            .or_else(|| self.when.as_ref().and_then(Predicate::exact_names));
        let mut t: Vec<Topic> = match names {
            Some(names) => self
                .sources
                .iter()
                .flat_map(|s| {
                    names.iter().map(move |n| Topic::Named {
                        source: s.clone(),
                        name: n.clone(),
                    })
                })
                .collect(),
            None => self.sources.iter().cloned().map(Topic::Source).collect(),
        };
        if self.stateful.is_some() {
            t.push(Topic::Source(firing_source(&self.name)));
        }
        t
    }

    /// [`Route::subscriptions`] as the engine's keys.
    pub fn topics(&self) -> Vec<String> {
        self.subscriptions().iter().map(Topic::key).collect()
    }

    /// What the route's fixed deployment's parameter schema says about the parameters the
    /// route sets (nothing for a deployment rendered per event, or one without a schema).
    pub async fn schema_problems(
        &self,
        prefect: &PrefectClient,
    ) -> Result<Vec<String>, switchyard_prefect::PrefectError> {
        let Some(dep) = self.action.static_deployment() else {
            return Ok(Vec::new());
        };
        let d = prefect.resolve(dep).await?;
        Ok(d.parameter_openapi_schema
            .as_ref()
            .map(|s| {
                crate::actions::schema::static_problems(s, self.action.configured_parameters())
            })
            .unwrap_or_default())
    }

    fn is_firing(&self, event: &Event) -> bool {
        self.stateful.is_some() && event.source == firing_source(&self.name)
    }

    /// Evaluates `when` and renders the action: synchronous and bounded by the template
    /// budget ([`crate::template`]); [`Route::attempt`] runs it on the evaluation pool.
    pub fn plan(&self, event: &Event) -> Result<Plan, Failure> {
        // A firing runs the action with `event`, `events` and `trigger`; `when` and the
        // trigger already decided.
        let firing = self.is_firing(event);
        let ctx = if firing {
            firing_context(event)
        } else {
            template::context(event)
        };
        if let Some(when) = self.when.as_ref().filter(|_| !firing) {
            match when.eval(&ctx) {
                Ok(true) => {}
                Ok(false) => {
                    return Ok(Plan::Skip(when_false(when)));
                }
                Err(message) => {
                    return Err(Failure {
                        message,
                        retryable: false,
                    });
                }
            }
        }
        self.action
            .render(&self.name, &ctx)
            .map(Plan::Run)
            .map_err(failed)
    }

    /// [`Route::plan`] on the evaluation pool, off the async runtime (a route switched off
    /// with `when: "false"` is skipped here, with no context built and no hop to the pool).
    pub async fn plan_off_runtime(self: &Arc<Self>, event: &Arc<Event>) -> Result<Plan, Failure> {
        if let Some(when) = &self.when
            && when.constant() == Some(false)
            && !self.is_firing(event)
        {
            return Ok(Plan::Skip(when_false(when)));
        }
        let (route, ev) = (Arc::clone(self), Arc::clone(event));
        template::sandbox(move || route.plan(&ev))
            .await
            .map_err(|message| Failure {
                message,
                retryable: false,
            })?
    }

    /// Whether the engine delivers `event` to this route (see [`Route::subscriptions`]).
    pub fn receives(&self, event: &Event) -> bool {
        listens(&self.topics(), &crate::topic::keys_of(event))
    }

    /// One attempt: evaluate `when`, run the action (the route's `run`th run for the
    /// event: 1 but for a route retrying failed runs). Nothing is recorded.
    pub async fn attempt(
        self: &Arc<Self>,
        event: &Arc<Event>,
        prefect: &PrefectClient,
        run: u32,
    ) -> Result<Decision, Failure> {
        self.attempt_held(event, prefect, run, None)
            .await
            .map(|(d, _)| d)
            .map_err(|e| match e {
                Held::Failed(f) => f,
                Held::Interrupted => Failure {
                    message: "interrupted".into(),
                    retryable: true,
                },
            })
    }

    /// [`Route::attempt`], waiting first while the deployment's backlog is at `max_backlog`
    /// when `interrupt` is given (a live event; a replay is not held).
    async fn attempt_held(
        self: &Arc<Self>,
        event: &Arc<Event>,
        prefect: &PrefectClient,
        run: u32,
        live: Option<&RouteEnv>,
    ) -> Result<(Decision, Option<crate::per_key::Slot>), Held> {
        match self.plan_off_runtime(event).await.map_err(Held::Failed)? {
            Plan::Skip(reason) => Ok((Decision::Skip(reason), None)),
            Plan::Run(rendered) if self.shadow => self
                .action
                .would_run(&self.name, event, rendered, prefect)
                .await
                .map(|w| (Decision::WouldRun(w), None))
                .map_err(|e| Held::Failed(failed(e))),
            Plan::Run(rendered) => {
                let slot = match (&self.concurrency, live) {
                    (Some((key, limit)), Some(env)) => self.slot(key, limit, event, env).await?,
                    _ => None,
                };
                let interrupt = live.map(|e| &e.interrupt);
                let _admitted = match (&self.backlog, interrupt, self.action.static_deployment()) {
                    (Some(b), Some(stop), Some(d)) => Some(
                        b.admit(&self.name, d, prefect, stop)
                            .await
                            .ok_or(Held::Interrupted)?,
                    ),
                    _ => None,
                };
                let mut created = self
                    .action
                    .execute(&self.name, event, rendered, prefect, run)
                    .await
                    .map_err(|e| Held::Failed(failed(e)))?;
                created.concurrency_key = slot.as_ref().map(|s| s.key().to_string());
                Ok((Decision::Ran(created), slot))
            }
        }
    }

    /// Waits for a place under the event's concurrency key.
    async fn slot(
        &self,
        key: &Arc<template::TextTemplate>,
        limit: &Arc<crate::per_key::PerKey>,
        event: &Arc<Event>,
        env: &RouteEnv,
    ) -> Result<Option<crate::per_key::Slot>, Held> {
        let Some(follower) = env.follower.as_ref().filter(|f| f.enabled()) else {
            return Ok(None);
        };
        let (tpl, ev) = (Arc::clone(key), Arc::clone(event));
        let rendered = template::sandbox(move || tpl.render(&template::context(&ev)))
            .await
            .and_then(|r| r)
            .map_err(|e| {
                Held::Failed(Failure {
                    message: format!("cannot render concurrency.key: {e}"),
                    retryable: false,
                })
            })?;
        if rendered.len() > MAX_CONCURRENCY_KEY {
            return Err(Held::Failed(Failure {
                message: format!(
                    "concurrency.key rendered to {} bytes; at most {MAX_CONCURRENCY_KEY}",
                    rendered.len()
                ),
                retryable: false,
            }));
        }
        use crate::per_key::Refused;
        match limit
            .acquire(
                &rendered,
                event.received,
                &event.id,
                &env.journal,
                follower,
                &env.interrupt,
            )
            .await
        {
            Ok(slot) => Ok(Some(slot)),
            Err(Refused::Interrupted) => Err(Held::Interrupted),
            Err(Refused::Journal(e)) => Err(Held::Failed(Failure {
                message: format!("cannot read the key's runs from the journal: {e}"),
                retryable: true,
            })),
        }
    }

    /// Whether `when` holds for the event (a route without one always applies).
    fn when_holds(&self, event: &Event) -> Result<bool, String> {
        match &self.when {
            Some(when) => when.eval(&template::context(event)),
            None => Ok(true),
        }
    }

    /// Settles the route for one event: skips, runs (retrying transient failures), or
    /// dead-letters, and records the decision in the journal before returning it.
    /// `settled` lists the routes that already have a final decision for the event (it was
    /// resumed or redelivered).
    pub async fn handle(
        self: &Arc<Self>,
        event: &Arc<Event>,
        settled: &[String],
        env: &RouteEnv,
    ) -> Result<RouteOutcome, RouteError> {
        let outcome = self.decide(event, settled, env).await;
        if let Ok(o) = &outcome {
            crate::tap::decided(event, &self.name, o.decision(), || match o {
                RouteOutcome::Skipped { reason } => (Some(reason.clone()), None),
                RouteOutcome::RunCreated(r) => (
                    Some(format!("{} ({})", r.flow_run_name, r.deployment)),
                    Some(r.flow_run_id.to_string()),
                ),
                RouteOutcome::WouldRun(w) => (
                    Some(format!(
                        "would run {} (key {})",
                        w.deployment, w.idempotency_key
                    )),
                    None,
                ),
                RouteOutcome::DeadLettered { reason } => (Some(reason.clone()), None),
                RouteOutcome::Absorbed { note } => (Some(note.clone()), None),
                RouteOutcome::AlreadySettled => (None, None),
            });
        }
        outcome
    }

    async fn decide(
        self: &Arc<Self>,
        event: &Arc<Event>,
        settled: &[String],
        env: &RouteEnv,
    ) -> Result<RouteOutcome, RouteError> {
        if settled.iter().any(|r| r == &self.name) {
            if let Some(policy) = &self.finish {
                // Resumed or redelivered while its run was running: wait on as before.
                return self.until_finished(event, env, policy, None).await;
            }
            tracing::debug!(event_id = %event.id, route = %self.name, "route already settled for this event");
            return Ok(RouteOutcome::AlreadySettled);
        }
        if let Some(stateful) = self.stateful.as_ref().filter(|_| !self.is_firing(event)) {
            return self.absorb(stateful, event, env).await;
        }
        match self.start(event, env, 1).await? {
            Started::Run(run) => match &self.finish {
                Some(policy) => self.until_finished(event, env, policy, Some(run)).await,
                None => Ok(RouteOutcome::RunCreated(run)),
            },
            Started::Other(outcome) => Ok(outcome),
        }
    }

    /// Decides and records the route's `run`th run for the event, retrying transient
    /// failures (a skip, a would-run and a dead letter are recorded as well).
    async fn start(
        self: &Arc<Self>,
        event: &Arc<Event>,
        env: &RouteEnv,
        run_number: u32,
    ) -> Result<Started, RouteError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (attempt_result, slot) = match self
                .attempt_held(event, &env.prefect, run_number, Some(env))
                .await
            {
                Err(Held::Interrupted) => return Err(RouteError::Interrupted),
                Err(Held::Failed(f)) => (Err(f), None),
                Ok((d, slot)) => (Ok(d), slot),
            };
            match attempt_result {
                Ok(Decision::Skip(reason)) => return self.skip(event, reason).map(Started::Other),
                Ok(Decision::Ran(run)) => {
                    env.journal
                        .settle(&event.id, &self.name, &Settlement::Ran(run.clone()))
                        .await?;
                    // Recorded: the run holds its key's place until it ends.
                    if let (Some(slot), Some(follower)) = (slot, &env.follower) {
                        slot.bind(&run.flow_run_id.to_string(), follower).await;
                    }
                    if !run.replayed {
                        let since = (chrono::Utc::now() - event.received)
                            .to_std()
                            .unwrap_or_default();
                        crate::metrics::run_created(&self.name, since);
                    }
                    tracing::info!(
                        event_id = %event.id, route = %self.name, deployment = %run.deployment,
                        flow_run_id = %run.flow_run_id, flow_run_name = %run.flow_run_name, replayed = run.replayed,
                        run = run_number,
                        "{}", if run.replayed { "flow run already existed for this event" } else { "flow run started" }
                    );
                    return Ok(Started::Run(run));
                }
                Ok(Decision::WouldRun(w)) => {
                    env.journal
                        .settle(&event.id, &self.name, &Settlement::WouldRun(w.clone()))
                        .await?;
                    tracing::info!(
                        event_id = %event.id, route = %self.name, deployment = %w.deployment,
                        idempotency_key = %w.idempotency_key, parameters = %w.parameters,
                        "shadow route: would start a flow run (none created)"
                    );
                    return Ok(Started::Other(RouteOutcome::WouldRun(w)));
                }
                Err(f) => {
                    let age = (chrono::Utc::now() - event.received)
                        .to_std()
                        .unwrap_or_default();
                    let again = f.retryable
                        && attempt < env.delivery.max_attempts
                        && age < env.delivery.max_age;
                    if !again {
                        return self
                            .dead_letter(event, env, f, attempt)
                            .await
                            .map(Started::Other);
                    }
                    env.journal
                        .attempt_failed(&event.id, &self.name, attempt, &f.message, true)
                        .await?;
                    let delay = env.delivery.backoff.delay(attempt - 1, None);
                    tracing::warn!(
                        event_id = %event.id, route = %self.name, attempt, retry_in_ms = delay.as_millis() as u64,
                        error = %f.message, "route failed, will retry"
                    );
                    tokio::select! {
                        _ = env.interrupt.cancelled() => return Err(RouteError::Interrupted),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// `settle_on: finished`: waits for the route's last run for the event to end, and acts
    /// on how (see `RouteConfig::on_failure`). `created`: the run this delivery created, if
    /// it did. What is waited on is read from the journal, so a restart waits on the same run
    /// and never starts one twice.
    async fn until_finished(
        self: &Arc<Self>,
        event: &Arc<Event>,
        env: &RouteEnv,
        policy: &FinishPolicy,
        mut created: Option<RunCreated>,
    ) -> Result<RouteOutcome, RouteError> {
        let done = |created: Option<RunCreated>| {
            Ok(created.map_or(RouteOutcome::AlreadySettled, RouteOutcome::RunCreated))
        };
        let Some(follower) = env.follower.as_ref().filter(|f| f.enabled()) else {
            return done(created);
        };
        loop {
            let Some(detail) = env.journal.event(&event.id).await? else {
                return done(created);
            };
            let mine = |kind: &str| {
                detail
                    .decisions
                    .iter()
                    .any(|d| d.route == self.name && d.kind == kind)
            };
            if mine("dead_lettered") {
                return done(created);
            }
            let runs: Vec<&FollowedRun> = detail
                .followed
                .iter()
                .filter(|r| r.route == self.name)
                .collect();
            // Settled without a run (a skip): nothing to wait for.
            let Some(last) = runs.last().map(|r| (*r).clone()) else {
                return done(created);
            };
            let count = u32::try_from(runs.len()).unwrap_or(u32::MAX);
            let ended = match (last.ended_at, uuid::Uuid::parse_str(&last.flow_run_id)) {
                (None, Ok(id)) => {
                    let left = (last.created_at
                        + chrono::Duration::from_std(policy.timeout).unwrap_or_default()
                        - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default();
                    tokio::select! {
                        _ = env.interrupt.cancelled() => return Err(RouteError::Interrupted),
                        run = follower.ended(id, left) => run.unwrap_or(last),
                    }
                }
                _ => last,
            };
            if ended.ended_at.is_some() && ended.state_type == "COMPLETED" {
                tracing::info!(event_id = %event.id, route = %self.name, flow_run_id = %ended.flow_run_id, "flow run completed; event handled");
                return done(created);
            }
            if ended.ended_at.is_none() && env.interrupt.is_cancelled() {
                return Err(RouteError::Interrupted);
            }
            let why = match ended.ended_at {
                Some(_) => format!(
                    "flow run {} ({}) ended {}",
                    ended.flow_run_id, ended.flow_run_name, ended.state_name
                ),
                None => format!(
                    "flow run {} ({}) did not end within {} (it was {})",
                    ended.flow_run_id,
                    ended.flow_run_name,
                    humantime_serde::re::humantime::format_duration(policy.timeout),
                    ended.state_name
                ),
            };
            use crate::config::OnFailure;
            match policy.on_failure {
                OnFailure::Accept => {
                    tracing::warn!(event_id = %event.id, route = %self.name, reason = %why, "flow run did not complete; accepted (on_failure: accept)");
                    return done(created);
                }
                OnFailure::Retry if ended.ended_at.is_some() && count < policy.max_runs => {
                    env.journal
                        .attempt_failed(&event.id, &self.name, count, &why, true)
                        .await?;
                    let delay = env.delivery.backoff.delay(count - 1, None);
                    tracing::warn!(
                        event_id = %event.id, route = %self.name, runs = count, max_runs = policy.max_runs,
                        retry_in_ms = delay.as_millis() as u64, reason = %why, "flow run did not complete; starting another"
                    );
                    tokio::select! {
                        _ = env.interrupt.cancelled() => return Err(RouteError::Interrupted),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    match self.start(event, env, count + 1).await? {
                        Started::Run(run) => created = Some(run),
                        Started::Other(outcome) => return Ok(outcome),
                    }
                }
                _ => {
                    let why = if policy.on_failure == OnFailure::Retry && ended.ended_at.is_some() {
                        format!("{why}; {count} run(s), max_runs {}", policy.max_runs)
                    } else {
                        why
                    };
                    let f = Failure {
                        message: why,
                        retryable: false,
                    };
                    return self.dead_letter(event, env, f, count).await;
                }
            }
        }
    }

    /// Feeds an event to the route's trigger or batch (after `when`).
    async fn absorb(
        self: &Arc<Self>,
        stateful: &Arc<Stateful>,
        event: &Arc<Event>,
        env: &RouteEnv,
    ) -> Result<RouteOutcome, RouteError> {
        if let Some(when) = &self.when {
            let (route, ev) = (Arc::clone(self), Arc::clone(event));
            let holds = template::sandbox(move || route.when_holds(&ev))
                .await
                .and_then(|r| r);
            match holds {
                Ok(true) => {}
                Ok(false) => {
                    return self.skip(event, when_false(when));
                }
                Err(message) => {
                    let f = Failure {
                        message,
                        retryable: false,
                    };
                    return self.dead_letter(event, env, f, 1).await;
                }
            }
        }
        match stateful.absorb(event, env.journal.as_ref()).await {
            Ok(Absorbed::Unmatched(reason)) => self.skip(event, reason),
            Ok(Absorbed::Recorded(note, firings)) => {
                tracing::info!(event_id = %event.id, route = %self.name, %note, "event absorbed by trigger");
                stateful.run_firings(firings).await;
                Ok(RouteOutcome::Absorbed { note })
            }
            Err(AbsorbError::Event(message)) => {
                let f = Failure {
                    message,
                    retryable: false,
                };
                self.dead_letter(event, env, f, 1).await
            }
            Err(AbsorbError::Journal(e)) => Err(e.into()),
        }
    }

    /// A skip is not written here: whoever finishes the event records it with the event's end
    /// ([`Store::finish_skipped`], see [`skipped_routes`]).
    fn skip(&self, event: &Event, reason: String) -> Result<RouteOutcome, RouteError> {
        tracing::info!(event_id = %event.id, route = %self.name, %reason, "route skipped");
        Ok(RouteOutcome::Skipped { reason })
    }

    async fn dead_letter(
        &self,
        event: &Event,
        env: &RouteEnv,
        f: Failure,
        attempts: u32,
    ) -> Result<RouteOutcome, RouteError> {
        let settlement = Settlement::DeadLettered {
            reason: f.message.clone(),
            retryable: f.retryable,
            attempts,
        };
        env.journal
            .settle(&event.id, &self.name, &settlement)
            .await?;
        tracing::error!(
            event_id = %event.id, route = %self.name, retryable = f.retryable, attempts, error = %f.message,
            "route failed; event dead-lettered"
        );
        Ok(RouteOutcome::DeadLettered { reason: f.message })
    }
}

#[cfg(test)]
mod wants_tests {
    use super::*;
    use serde_json::json;

    /// Routes from `routes` (YAML) over sources `a` and `b`, as `journal: routed` sees them.
    fn routing(routes: &str) -> Routing {
        let text = format!(
            "sources: [{{type: stdin, name: a}}, {{type: webhook, name: b}}]\nroutes:\n{routes}"
        );
        let loaded = load_str(std::path::Path::new("wants.yaml"), &text, |_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = switchyard_testkit::TempDir::new("wants");
        let journal = crate::journal::SqliteStore::open(&dir.path().join("j.db")).unwrap();
        let env = RouteEnv {
            prefect: PrefectClient::new(switchyard_prefect::ClientConfig::new(
                "http://127.0.0.1:9/api",
            ))
            .unwrap(),
            journal: Arc::new(journal),
            delivery: DeliveryPolicy::from(&loaded.config.delivery),
            interrupt: CancellationToken::new(),
            follower: None,
        };
        Routing::new(1, loaded.routes, env, loaded.config.sources)
    }

    fn event(source: &str, n: i64) -> Arc<Event> {
        Arc::new(Event::builder(source, "x", json!({"n": n})).build())
    }

    /// The whole answer, as the pipeline gets it: the skips when every route skips.
    async fn foresee(r: &Routing, event: Arc<Event>) -> Option<Skips> {
        match r.foresee(&event) {
            Ok(answer) => answer,
            Err((skips, routes)) => Routing::evaluate_skips(skips, routes, event).await,
        }
    }

    fn skip(route: &str, when: &str) -> (String, String) {
        (route.to_string(), format!("`when` {when:?} is false"))
    }

    #[tokio::test]
    async fn skips_are_foreseen_at_once_when_nothing_must_be_evaluated() {
        let r = routing(
            "  - {name: off, from: [a, b], when: 'false', action: {type: run_deployment, deployment: f/d}}\n  - {name: payload, from: [b], when: 'event.payload.n > 2', action: {type: run_deployment, deployment: f/d}}\n",
        );
        // Source a: only a constant-false route: skipped, without evaluating.
        assert_eq!(
            r.foresee(&event("a", 5)).ok(),
            Some(Some(vec![skip("off", "false")]))
        );
        // Source b: the payload decides, on the template threads; the skips keep the order
        // of the routes, with the reasons the routes themselves give.
        assert!(r.foresee(&event("b", 5)).is_err());
        assert_eq!(foresee(&r, event("b", 5)).await, None);
        assert_eq!(
            foresee(&r, event("b", 1)).await,
            Some(vec![
                skip("off", "false"),
                skip("payload", "event.payload.n > 2")
            ])
        );
        let route = r.route("payload").unwrap();
        let planned = route.plan(&event("b", 1)).map_err(|f| f.message);
        assert!(
            matches!(&planned, Ok(Plan::Skip(why)) if *why == skip("payload", "event.payload.n > 2").1),
            "the route skips with the same reason"
        );
        // A source no route listens to: nothing to skip.
        let only_a = routing(
            "  - {name: all, from: [a], action: {type: run_deployment, deployment: f/d}}\n",
        );
        assert_eq!(only_a.foresee(&event("b", 1)).ok(), Some(Some(vec![])));
        assert_eq!(only_a.foresee(&event("a", 1)).ok(), Some(None));
        // A stateful route absorbs what it receives; a failing `when` wants the event (its
        // dead letter is journaled).
        let stateful = routing(
            "  - {name: t, from: [a], trigger: {type: event, threshold: 2, within: 60}, action: {type: run_deployment, deployment: f/d}}\n  - {name: broken, from: [b], when: 'event.payload.n // 0 > 1', action: {type: run_deployment, deployment: f/d}}\n",
        );
        assert_eq!(stateful.foresee(&event("a", 1)).ok(), Some(None));
        assert_eq!(foresee(&stateful, event("b", 1)).await, None);
        let broken = stateful.route("broken").unwrap();
        assert!(
            broken.when_holds(&event("b", 1)).is_err(),
            "the `when` fails"
        );
    }
}
