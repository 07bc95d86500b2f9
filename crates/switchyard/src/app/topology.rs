//! The running router: what [`Topology::start`] builds from a config, what
//! [`Topology::reload`] changes in it, and the order [`Topology::stop`] takes it down in
//! (sources and jobs, then the queue, then the tasks that finish events).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use switchyard_core::engine::{BoxError, Collector, CollectorQueue, Payload, ShutdownMode};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::reload::{self, FileWatch};
use super::{RunOptions, Stopped, jobs, prefect_client_until};
use crate::config::{Config, SourceConfig};
use crate::journal::{Retention, Store};
use crate::observe::{ReloadResult, Reloaded};
use crate::outcome::Routed;
use crate::pipeline::{Dispatcher, Inbound};
use crate::routes::{DeliveryPolicy, Live, Loaded, Route, RouteEnv, Routing};
use crate::sources::{self, webhook::Hooks};

pub(super) struct Topology {
    path: PathBuf,
    shadow: bool,
    config: Config,
    live: Arc<Live>,
    journal: Arc<dyn Store>,
    queue: CollectorQueue<Inbound, Routed>,
    dispatch: Dispatcher,
    finishers: TaskTracker,
    /// One token stops sources, jobs, and routes waiting to retry.
    stop: CancellationToken,
    /// Ends the Prefect client's waits between its quick retries, once the drain is over (an
    /// event whose call is being retried may still finish within the drain).
    prefect_cancel: CancellationToken,
    jobs: JoinSet<()>,
    /// Every source but the webhooks, by name.
    sources: BTreeMap<String, Running>,
    /// The webhook server's hooks, once it serves.
    hooks: Option<Hooks>,
    webhook_server: JoinSet<()>,
    /// Each stateful route's clock and firing runner, by route name.
    triggers: BTreeMap<String, CancellationToken>,
    reload_tx: mpsc::Sender<oneshot::Sender<Reloaded>>,
    reload_rx: mpsc::Receiver<oneshot::Sender<Reloaded>>,
}

/// A source's tasks, stopped on their own when a reload changes or removes it.
struct Running {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// The engine's one collector: every event is routed by the [`Routing`] in force when the
/// engine hands it over, read once, so a reload never splits an event between two configs.
/// The routes that receive it handle it at once; one that cannot settle it (shutdown, the
/// journal) leaves the event pending.
fn router(live: Arc<Live>) -> Collector<Inbound, Routed> {
    Collector::new("routes", move |payload: Arc<Payload<Inbound>>, _ctx| {
        let live = Arc::clone(&live);
        async move {
            let routing = live.current();
            let inbound = payload.value();
            let handling = routing.receivers(&inbound.event).map(|route| async {
                let outcome = route
                    .handle(&inbound.event, &inbound.settled, &routing.env)
                    .await;
                outcome.map(|o| (route.name.clone(), o))
            });
            futures::future::join_all(handling)
                .await
                .into_iter()
                .collect::<Result<Routed, _>>()
                .map_err(|e| Box::new(e) as BoxError)
        }
    })
}

/// Why the wait loop woke.
enum Wake {
    Shutdown,
    SourcesEnded,
    Reload(&'static str, Option<oneshot::Sender<Reloaded>>),
}

impl Topology {
    /// Opens the journal, builds the engine, starts the jobs, resumes what the journal holds
    /// pending, and starts the sources.
    pub(super) async fn start(loaded: Loaded, opts: &RunOptions) -> anyhow::Result<Self> {
        let Loaded {
            path,
            config,
            routes,
            legacy,
        } = loaded;
        let location = super::journal_location(&config.journal, opts.journal.as_deref())
            .map_err(anyhow::Error::msg)?;
        crate::template::set_sandbox_threads(config.templates.threads);
        let journal: Arc<dyn Store> = location.open(true).await?;
        let stop = CancellationToken::new();
        let prefect_cancel = CancellationToken::new();
        let prefect = prefect_client_until(&config.prefect, prefect_cancel.clone())?;
        tracing::info!(
            config = %path.display(), legacy, prefect = %crate::secrets::url(prefect.api_url().as_str()), journal = %journal.describe(),
            sources = config.sources.len(), routes = routes.len(), "switchyard starting"
        );
        warn_shadow(&routes);
        let follower = crate::follow::Follower::new(
            Arc::clone(&journal),
            prefect.clone(),
            config.prefect.follow.clone(),
        );
        let env = RouteEnv {
            prefect,
            journal: Arc::clone(&journal),
            delivery: DeliveryPolicy::from(&config.delivery),
            interrupt: stop.clone(),
            follower: Some(Arc::clone(&follower)),
        };
        let live = Arc::new(Live::new(Routing::new(
            1,
            routes.clone(),
            env.clone(),
            config.sources.clone(),
        )));
        let engine = &config.engine;
        let queue = CollectorQueue::builder(vec![router(Arc::clone(&live))])
            .name("switchyard")
            .capacity(engine.queue_capacity.get())
            .min_consumers(engine.min_consumers.get())
            .max_consumers(engine.max_consumers.get())
            .build()
            .context("cannot build the event queue")?;
        queue
            .start()
            .await
            .context("cannot start the event queue")?;
        let finishers = TaskTracker::new();
        let dispatch = Dispatcher::new(
            queue.get_publisher(),
            Arc::clone(&journal),
            finishers.clone(),
        )
        .with_accepts_in_flight(engine.accepts_in_flight.get())
        .with_wanted(Arc::new(LiveWants(Arc::clone(&live))))
        .with_follower(Arc::clone(&follower));
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let mut me = Self {
            path,
            shadow: opts.shadow,
            journal,
            live,
            queue,
            dispatch,
            finishers,
            stop,
            prefect_cancel,
            jobs: JoinSet::new(),
            sources: BTreeMap::new(),
            hooks: None,
            webhook_server: JoinSet::new(),
            triggers: BTreeMap::new(),
            reload_tx,
            reload_rx,
            config,
        };
        me.start_jobs(&routes, &env).await?;
        let all: Vec<SourceConfig> = me.config.sources.clone();
        for source in all.iter().filter(|s| !s.is_webhook()) {
            me.start_source(source);
        }
        me.serve_hooks(webhooks(&all)).await?;
        if me.config.admin.enabled {
            let admin = crate::observe::Admin {
                journal: Arc::clone(&me.journal),
                dispatch: me.dispatch.clone(),
                live: Arc::clone(&me.live),
                reload: me.reload_tx.clone(),
                token: me.config.admin.effective_token(),
            };
            crate::observe::serve(&me.config.admin, admin, me.stop.clone(), &mut me.jobs)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        Ok(me)
    }

    async fn start_jobs(&mut self, routes: &[Arc<Route>], env: &RouteEnv) -> anyhow::Result<()> {
        let check = jobs::SchemaCheck {
            routes: routes.to_vec(),
            prefect: env.prefect.clone(),
        };
        self.jobs.spawn(check.run(self.stop.clone()));
        for route in routes {
            self.start_trigger(route, false).await?;
        }
        let (stop, journal, dispatch) = (&self.stop, &self.journal, &self.dispatch);
        let pending = journal
            .pending()
            .await
            .context("cannot read pending events from the journal")?;
        if !pending.is_empty() {
            tracing::info!(
                events = pending.len(),
                "resuming events accepted before the last stop"
            );
            let d = dispatch.clone();
            self.jobs.spawn(async move {
                for p in pending {
                    if d.resume(p.event, p.settled).await.is_err() {
                        break;
                    }
                }
            });
        }
        let j = &self.config.journal;
        let sweep = jobs::Sweep {
            dispatch: dispatch.clone(),
            interval: j.sweep_interval,
            after: j.sweep_after,
        };
        self.jobs.spawn(sweep.run(stop.clone()));
        let watch = jobs::JournalWatch {
            journal: Arc::clone(journal),
            interval: j.check_interval,
        };
        self.jobs.spawn(watch.run(stop.clone()));
        let retention = jobs::RetentionJob {
            journal: Arc::clone(journal),
            retention: Retention {
                max_age: j.retention.max_age,
                max_events: j.retention.max_events,
            },
        };
        self.jobs.spawn(retention.run(stop.clone()));
        if let Some(follower) = dispatch.follower() {
            self.jobs.spawn(Arc::clone(follower).run(stop.clone()));
        }
        Ok(())
    }

    /// Starts a stateful route's clock and firing runner, with its state restored from the
    /// journal, or (`afresh`: a reload changed its trigger) with the stored state dropped.
    async fn start_trigger(&mut self, route: &Arc<Route>, afresh: bool) -> anyhow::Result<()> {
        let Some(stateful) = route.stateful.clone() else {
            return Ok(());
        };
        let journal = self.journal.as_ref();
        if afresh {
            let dropped = stateful.start_afresh(journal).await.with_context(|| {
                format!("cannot reset the trigger state of route {}", route.name)
            })?;
            tracing::info!(route = %route.name, buckets = dropped, "trigger changed: its state was dropped");
        } else {
            let restored = stateful.restore(journal).await.with_context(|| {
                format!("cannot restore the trigger state of route {}", route.name)
            })?;
            tracing::info!(route = %route.name, buckets = restored, "trigger state restored");
        }
        let (tx, rx) = mpsc::channel(256);
        stateful.set_firings(tx, Arc::clone(self.dispatch.owned()));
        let stop = self.stop.child_token();
        self.jobs
            .spawn(Arc::clone(&stateful).run_clock(Arc::clone(&self.journal), stop.clone()));
        let firings = jobs::Firings {
            route: route.name.clone(),
            live: Arc::clone(&self.live),
            dispatch: self.dispatch.clone(),
            rx,
        };
        self.jobs.spawn(firings.run(stop.clone()));
        if let Some(old) = self.triggers.insert(route.name.clone(), stop) {
            old.cancel();
        }
        Ok(())
    }

    fn start_source(&mut self, cfg: &SourceConfig) {
        let stop = self.stop.child_token();
        let mut tasks = JoinSet::new();
        sources::spawn(cfg, &self.dispatch, &stop, &mut tasks);
        self.sources
            .insert(cfg.name().to_string(), Running { stop, tasks });
    }

    /// Stops a source and waits (up to `engine.source_stop_timeout`) for what it has in flight
    /// to be acknowledged.
    async fn stop_source(&mut self, name: &str) {
        let Some(mut running) = self.sources.remove(name) else {
            return;
        };
        running.stop.cancel();
        let timeout = self.config.engine.source_stop_timeout;
        let tasks = &mut running.tasks;
        if tokio::time::timeout(timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(source = %name, ?timeout, "source did not stop in time (engine.source_stop_timeout); aborting it");
            running.tasks.abort_all();
        }
    }

    /// Serves `hooks` (the webhook server starts with the first of them).
    async fn serve_hooks(
        &mut self,
        hooks: Vec<crate::sources::webhook::WebhookConfig>,
    ) -> anyhow::Result<()> {
        if let Some(served) = &self.hooks {
            served.replace(hooks);
            return Ok(());
        }
        if hooks.is_empty() {
            return Ok(());
        }
        let (http, stop) = (&self.config.http, self.stop.clone());
        let served = sources::webhook::serve(
            hooks,
            self.dispatch.clone(),
            http,
            stop,
            &mut self.webhook_server,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        self.hooks = Some(served);
        Ok(())
    }

    /// Until `shutdown` resolves, or (with `exit_when_sources_end`, and no webhook to serve)
    /// every source has finished; reloading the config on SIGHUP, on `POST /api/v1/reload`
    /// and (with `watch`) when the file changes.
    pub(super) async fn wait(&mut self, shutdown: impl Future<Output = ()>, opts: &RunOptions) {
        tokio::pin!(shutdown);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /api/v1/reload");
                None
            }
        };
        let mut watch = opts.watch.then(|| FileWatch::new(&self.path));
        loop {
            let ends = opts.exit_when_sources_end && self.hooks.is_none();
            let (sources, reloads) = (&mut self.sources, &mut self.reload_rx);
            let wake = tokio::select! {
                _ = &mut shutdown => Wake::Shutdown,
                _ = all_ended(sources), if ends => Wake::SourcesEnded,
                Some(()) = async { hangup.as_mut()?.recv().await } => Wake::Reload("SIGHUP", None),
                () = async { match watch.as_mut() { Some(w) => w.changed().await, None => std::future::pending().await } } => Wake::Reload("file changed", None),
                Some(reply) = reloads.recv() => Wake::Reload("admin API", Some(reply)),
            };
            match wake {
                Wake::Shutdown => {
                    tracing::info!("shutdown requested");
                    return;
                }
                Wake::SourcesEnded => {
                    tracing::info!("all sources finished");
                    return;
                }
                Wake::Reload(cause, reply) => {
                    let done = self.reload(cause).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(done);
                    }
                }
            }
        }
    }

    /// Loads the config file again and, if it passes every check `run` makes at start, puts
    /// it in force (see [`reload`] for what changes how). A config that fails leaves the
    /// running one as it is.
    pub(super) async fn reload(&mut self, cause: &'static str) -> Reloaded {
        let generation = self.live.current().generation;
        let done = match self.try_reload(generation).await {
            Ok(changes) if changes.is_empty() => {
                tracing::info!(cause, generation, "config reload: nothing changed");
                Reloaded {
                    result: ReloadResult::Unchanged,
                    generation,
                    changes,
                    error: None,
                }
            }
            Ok(changes) => {
                let generation = generation.saturating_add(1);
                tracing::info!(cause, generation, changes = ?changes, "config reloaded");
                Reloaded {
                    result: ReloadResult::Applied,
                    generation,
                    changes,
                    error: None,
                }
            }
            Err(e) => {
                // Loading set the template budget of the config that failed.
                crate::template::set_budget(self.config.templates.budget());
                let error = crate::secrets::redact(&format!("{e:#}")).into_owned();
                tracing::error!(cause, error = %error, "config reload failed; the running config is kept");
                Reloaded {
                    result: ReloadResult::Failed,
                    generation,
                    changes: Vec::new(),
                    error: Some(error),
                }
            }
        };
        crate::metrics::config_reloaded(done.result.label());
        done
    }

    async fn try_reload(&mut self, generation: u64) -> anyhow::Result<Vec<String>> {
        let path = self.path.clone();
        let shadow = self.shadow;
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = crate::routes::load(&path)?;
            if shadow {
                loaded.into_shadow()
            } else {
                Ok(loaded)
            }
        })
        .await
        .context("the config loader stopped")??;
        if loaded.config == self.config {
            return Ok(Vec::new());
        }
        reload::needs_restart(&self.config, &loaded.config)?;
        let hooks = webhooks(&loaded.config.sources);
        sources::webhook::check_secrets(&hooks).map_err(anyhow::Error::msg)?;
        let old = self.live.current();
        let plan = reload::plan(&self.config, &old, &loaded.config, loaded.routes);
        let prefect = if loaded.config.prefect == self.config.prefect {
            old.env.prefect.clone()
        } else {
            let client = prefect_client_until(&loaded.config.prefect, self.prefect_cancel.clone())?;
            if let Some(follower) = self.dispatch.follower() {
                follower.use_prefect(client.clone());
            }
            client
        };
        let env = RouteEnv {
            prefect,
            journal: Arc::clone(&self.journal),
            delivery: DeliveryPolicy::from(&loaded.config.delivery),
            interrupt: self.stop.clone(),
            follower: self.dispatch.follower().cloned(),
        };
        // Webhooks that are new need the server: start it before anything changes, so a
        // failure to listen leaves the running config whole.
        // `None` once the server has been started with them.
        let hooks = if self.hooks.is_none() && !hooks.is_empty() {
            self.serve_hooks(hooks).await?;
            None
        } else {
            Some(hooks)
        };
        let mut changes = plan.changes;
        if loaded.config.prefect != self.config.prefect {
            changes.push("prefect: settings changed".into());
        }
        if loaded.config.delivery != self.config.delivery {
            changes.push("delivery: settings changed".into());
        }
        warn_shadow(&plan.routes);
        // The swap: from the next event on, every event is routed by the new routes.
        self.live.replace(Routing::new(
            generation.saturating_add(1),
            plan.routes.clone(),
            env.clone(),
            loaded.config.sources.clone(),
        ));
        for name in &plan.triggers_stopped {
            if let Some(stop) = self.triggers.remove(name) {
                stop.cancel();
            }
        }
        for (route, afresh) in &plan.triggers_started {
            self.start_trigger(route, *afresh).await?;
        }
        if !plan.checked.is_empty() {
            let check = jobs::SchemaCheck {
                routes: plan.checked,
                prefect: env.prefect.clone(),
            };
            self.jobs.spawn(check.run(self.stop.clone()));
        }
        let (before, after) = (&self.config.sources, &loaded.config.sources);
        for change in reload::sources(before, after) {
            match change {
                reload::SourceChange::Stopped(name) => {
                    self.stop_source(&name).await;
                    changes.push(format!("source {name}: stopped"));
                }
                reload::SourceChange::Restarted(cfg) => {
                    self.stop_source(cfg.name()).await;
                    self.start_source(&cfg);
                    changes.push(format!("source {}: restarted", cfg.name()));
                }
                reload::SourceChange::Started(cfg) => {
                    self.start_source(&cfg);
                    changes.push(format!("source {}: started", cfg.name()));
                }
                reload::SourceChange::Webhook(line) => changes.push(line),
            }
        }
        // The hook table, unless the server was just started with it.
        if let Some(hooks) = hooks {
            self.serve_hooks(hooks).await?;
        }
        self.config = loaded.config;
        Ok(changes)
    }

    /// Stops sources and jobs, drains the queue, waits for the finishing tasks, and reports
    /// what was left pending.
    pub(super) async fn stop(mut self) -> Stopped {
        self.stop.cancel();
        let engine = &self.config.engine;
        let (sources, server, jobs) = (&mut self.sources, &mut self.webhook_server, &mut self.jobs);
        let stopped = tokio::time::timeout(engine.source_stop_timeout, async {
            all_ended(sources).await;
            while server.join_next().await.is_some() {}
            while jobs.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(timeout = ?engine.source_stop_timeout, "sources did not stop in time (engine.source_stop_timeout); aborting them");
            for running in self.sources.values_mut() {
                running.tasks.abort_all();
            }
            self.webhook_server.abort_all();
            self.jobs.abort_all();
        }
        let m = self.queue.metrics();
        tracing::info!(queued = m.qsize, in_flight = m.busy, timeout = ?engine.shutdown_timeout, "draining");
        let report = self
            .queue
            .shutdown(ShutdownMode::Drain {
                timeout: engine.shutdown_timeout,
            })
            .await;
        // Nothing waits on a Prefect retry past the drain.
        self.prefect_cancel.cancel();
        self.finishers.close();
        self.finishers.wait().await;
        let pending = self.journal.pending().await.map(|p| p.len()).unwrap_or(0);
        if pending > 0 {
            tracing::warn!(
                events = pending,
                "events left pending in the journal; they resume on the next start"
            );
        }
        tracing::info!(events = report.finished, "switchyard stopped");
        Stopped {
            finished: report.finished,
            pending,
            journal_fault: self.journal.check().await,
        }
    }
}

/// Until every source's tasks have ended (cancel-safe).
async fn all_ended(sources: &mut BTreeMap<String, Running>) {
    for running in sources.values_mut() {
        while running.tasks.join_next().await.is_some() {}
    }
}

fn webhooks(sources: &[SourceConfig]) -> Vec<crate::sources::webhook::WebhookConfig> {
    sources
        .iter()
        .filter_map(|s| match s {
            SourceConfig::Webhook(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

fn warn_shadow(routes: &[Arc<Route>]) {
    let shadow: Vec<&str> = routes
        .iter()
        .filter(|r| r.shadow)
        .map(|r| r.name.as_str())
        .collect();
    if !shadow.is_empty() {
        tracing::warn!(routes = ?shadow, "shadow routes record what they would run and create no flow run");
    }
}

/// The routes in force say what they will do with an event before it is journaled.
struct LiveWants(Arc<crate::routes::Live>);

impl crate::pipeline::Wants for LiveWants {
    fn foresee(&self, event: &switchyard_core::Event) -> crate::pipeline::Foresight {
        use crate::pipeline::Foresight;
        match self.0.current().foresee(event) {
            Ok(Some(skips)) => Foresight::Skipped(skips),
            Ok(None) => Foresight::Wanted,
            Err((skips, routes)) => {
                let evaluate = move |event: Arc<switchyard_core::Event>| -> futures::future::BoxFuture<'static, _> {
                    Box::pin(Routing::evaluate_skips(skips, routes, event))
                };
                Foresight::Evaluate(Box::new(evaluate))
            }
        }
    }
}
