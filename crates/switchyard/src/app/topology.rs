//! The running router: what [`Topology::start`] builds from a config, and the order
//! [`Topology::stop`] takes it down in (sources and jobs, then the queue, then the tasks that
//! finish events).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use switchyard_core::engine::{Collector, CollectorQueue, Payload, ShutdownMode};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{RunOptions, Stopped, jobs, prefect_client_until};
use crate::config::{Config, SourceConfig};
use crate::journal::{Retention, SqliteStore, Store};
use crate::pipeline::{Dispatcher, Inbound};
use crate::routes::{DeliveryPolicy, Loaded, Route, RouteEnv, RouteOutcome};
use crate::sources;

pub(super) struct Topology {
    config: Config,
    journal: Arc<dyn Store>,
    queue: CollectorQueue<Inbound, RouteOutcome>,
    finishers: TaskTracker,
    /// One token stops sources, jobs, and routes waiting to retry.
    stop: CancellationToken,
    /// Ends the Prefect client's waits between its quick retries, once the drain is over (an
    /// event whose call is being retried may still finish within the drain).
    prefect_cancel: CancellationToken,
    jobs: JoinSet<()>,
    sources: JoinSet<()>,
    serving_http: bool,
}

fn collector(route: Arc<Route>, env: RouteEnv) -> Collector<Inbound, RouteOutcome> {
    let (topics, name) = (route.topics(), route.name.clone());
    Collector::new(name, move |payload: Arc<Payload<Inbound>>, _ctx| {
        let (route, env) = (Arc::clone(&route), env.clone());
        async move {
            let inbound = payload.value();
            let outcome = route.handle(&inbound.event, &inbound.settled, &env).await;
            outcome.map_err(Box::new)
        }
    })
    .with_topics(topics)
}

impl Topology {
    /// Opens the journal, builds the engine with one collector per route, starts the jobs,
    /// resumes what the journal holds pending, and starts the sources.
    pub(super) async fn start(loaded: Loaded, opts: &RunOptions) -> anyhow::Result<Self> {
        let Loaded {
            path,
            config,
            routes,
            legacy,
        } = loaded;
        let journal_path = opts
            .journal
            .clone()
            .unwrap_or_else(|| config.journal.path.clone());
        crate::template::set_sandbox_threads(config.templates.threads);
        let journal: Arc<dyn Store> = Arc::new(SqliteStore::open(&journal_path)?);
        let stop = CancellationToken::new();
        let prefect_cancel = CancellationToken::new();
        let prefect = prefect_client_until(&config.prefect, prefect_cancel.clone())?;
        tracing::info!(
            config = %path.display(), legacy, prefect = %crate::secrets::url(prefect.api_url().as_str()), journal = %journal_path.display(),
            sources = config.sources.len(), routes = routes.len(), "switchyard starting"
        );
        let shadow: Vec<&str> = routes
            .iter()
            .filter(|r| r.shadow)
            .map(|r| r.name.as_str())
            .collect();
        if !shadow.is_empty() {
            tracing::warn!(routes = ?shadow, "shadow routes record what they would run and create no flow run");
        }
        let env = RouteEnv {
            prefect,
            journal: Arc::clone(&journal),
            delivery: DeliveryPolicy::from(&config.delivery),
            interrupt: stop.clone(),
        };
        let engine = &config.engine;
        let collectors = routes
            .iter()
            .map(|r| collector(Arc::clone(r), env.clone()))
            .collect();
        let queue = CollectorQueue::builder(collectors)
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
        .with_accepts_in_flight(engine.accepts_in_flight.get());
        let mut me = Self {
            journal,
            queue,
            finishers,
            stop,
            prefect_cancel,
            jobs: JoinSet::new(),
            sources: JoinSet::new(),
            serving_http: false,
            config,
        };
        me.start_jobs(&routes, &env, &dispatch).await?;
        me.start_sources(&dispatch).await?;
        if me.config.admin.enabled {
            let admin = crate::observe::Admin {
                journal: Arc::clone(&me.journal),
                dispatch: dispatch.clone(),
                prefect: env.prefect.clone(),
                routes: routes.clone(),
                sources: me.config.sources.clone(),
                token: me.config.admin.effective_token(),
            };
            crate::observe::serve(&me.config.admin, admin, me.stop.clone(), &mut me.jobs)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        Ok(me)
    }

    async fn start_jobs(
        &mut self,
        routes: &[Arc<Route>],
        env: &RouteEnv,
        dispatch: &Dispatcher,
    ) -> anyhow::Result<()> {
        let (stop, journal) = (&self.stop, &self.journal);
        let check = jobs::SchemaCheck {
            routes: routes.to_vec(),
            prefect: env.prefect.clone(),
        };
        self.jobs.spawn(check.run(stop.clone()));
        for route in routes {
            let Some(stateful) = route.stateful.clone() else {
                continue;
            };
            let restored = stateful.restore(journal.as_ref()).await.with_context(|| {
                format!("cannot restore the trigger state of route {}", route.name)
            })?;
            tracing::info!(route = %route.name, buckets = restored, "trigger state restored");
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            stateful.set_firings(tx, Arc::clone(dispatch.owned()));
            self.jobs
                .spawn(Arc::clone(&stateful).run_clock(Arc::clone(journal), stop.clone()));
            let firings = jobs::Firings {
                route: Arc::clone(route),
                env: env.clone(),
                dispatch: dispatch.clone(),
                rx,
            };
            self.jobs.spawn(firings.run(stop.clone()));
        }
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
        Ok(())
    }

    async fn start_sources(&mut self, dispatch: &Dispatcher) -> anyhow::Result<()> {
        for source in &self.config.sources {
            sources::spawn(source, dispatch, &self.stop, &mut self.sources);
        }
        let hooks: Vec<_> = self
            .config
            .sources
            .iter()
            .filter_map(|s| match s {
                SourceConfig::Webhook(h) => Some(h.clone()),
                _ => None,
            })
            .collect();
        self.serving_http = !hooks.is_empty();
        if self.serving_http {
            let (http, stop) = (&self.config.http, self.stop.clone());
            sources::webhook::serve(hooks, dispatch.clone(), http, stop, &mut self.sources)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    /// Until `shutdown` resolves, or (with `exit_when_sources_end`, and no webhook to serve)
    /// every source has finished.
    pub(super) async fn wait(
        &mut self,
        shutdown: impl Future<Output = ()>,
        exit_when_sources_end: bool,
    ) {
        if exit_when_sources_end && !self.serving_http {
            let sources = &mut self.sources;
            tokio::select! {
                _ = shutdown => tracing::info!("shutdown requested"),
                _ = async { while sources.join_next().await.is_some() {} } => tracing::info!("all sources finished"),
            }
        } else {
            shutdown.await;
            tracing::info!("shutdown requested");
        }
    }

    /// Stops sources and jobs, drains the queue, waits for the finishing tasks, and reports
    /// what was left pending.
    pub(super) async fn stop(mut self) -> Stopped {
        self.stop.cancel();
        let engine = &self.config.engine;
        let (sources, jobs) = (&mut self.sources, &mut self.jobs);
        let stopped = tokio::time::timeout(engine.source_stop_timeout, async {
            while sources.join_next().await.is_some() {}
            while jobs.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(timeout = ?engine.source_stop_timeout, "sources did not stop in time (engine.source_stop_timeout); aborting them");
            self.sources.abort_all();
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
