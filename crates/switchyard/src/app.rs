//! Wires a loaded configuration into a running router: the Prefect client, the engine with one
//! collector per route, the sources, and an orderly shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchyard_core::engine::{Collector, CollectorQueue, Payload, ShutdownMode};
use switchyard_prefect::{ClientConfig, PrefectClient, RetryPolicy};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Loaded, PrefectConfig, SourceConfig};
use crate::journal::{Retention, SqliteStore, Store};
use crate::routes::{DeliveryPolicy, Route, RouteEnv, RouteOutcome, skipped_routes};
use crate::sources::{self, Dispatcher, Inbound};

/// How `run` behaves beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Shut down once every source has finished (stdin reached end of input and there is no
    /// webhook), instead of waiting for a signal.
    pub exit_when_sources_end: bool,
    /// Journal file, overriding `journal.path`.
    pub journal: Option<PathBuf>,
}

/// The Prefect client for a config: the file's values, else the `PREFECT_*` environment.
pub fn prefect_client(cfg: &PrefectConfig) -> anyhow::Result<PrefectClient> {
    let mut c = ClientConfig::from_env();
    if let Some(url) = &cfg.api_url {
        c.api_url = url.clone();
    }
    if cfg.api_key.is_some() {
        c.api_key = cfg.api_key.clone();
    }
    if cfg.auth_string.is_some() {
        c.auth_string = cfg.auth_string.clone();
    }
    c.max_in_flight = cfg.max_in_flight.get();
    c.rate_limit = cfg.rate_limit;
    c.timeout = cfg.request_timeout;
    c.retry = RetryPolicy {
        max_retries: cfg.max_retries,
        ..RetryPolicy::default()
    };
    PrefectClient::new(c).context("cannot set up the Prefect client")
}

fn collector(route: Arc<Route>, env: RouteEnv) -> Collector<Inbound, RouteOutcome> {
    let topics = route.topics();
    let name = route.name.clone();
    Collector::new(name, move |payload: Arc<Payload<Inbound>>, _ctx| {
        let route = Arc::clone(&route);
        let env = env.clone();
        async move { route.handle(payload.value(), &env).await.map_err(Box::new) }
    })
    .with_topics(topics)
}

/// Runs until `shutdown` resolves (or the sources end, see [`RunOptions`]), then stops the
/// sources and drains the queue under `engine.shutdown_timeout`. Events still unfinished then
/// stay pending in the journal and are resumed by the next start.
pub async fn run(
    loaded: Loaded,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Stopped> {
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
    let prefect = prefect_client(&config.prefect)?;
    tracing::info!(
        config = %path.display(), legacy, prefect = %crate::secrets::url(prefect.api_url().as_str()), journal = %journal_path.display(),
        sources = config.sources.len(), routes = routes.len(), "switchyard starting"
    );
    let interrupt = CancellationToken::new();
    let env = RouteEnv {
        prefect,
        journal: Arc::clone(&journal),
        delivery: DeliveryPolicy::from(&config.delivery),
        interrupt: interrupt.clone(),
    };
    // At start-up, each fixed deployment's parameter schema is checked against what the
    // route sets (in the background: a Prefect that is down must not stop the router).
    for route in &routes {
        let (route, prefect) = (Arc::clone(route), env.prefect.clone());
        tokio::spawn(async move {
            let Some(dep) = route.action.static_deployment() else {
                return;
            };
            match prefect.resolve(dep).await {
                Ok(d) => {
                    let problems = d
                        .parameter_openapi_schema
                        .as_ref()
                        .map(|s| {
                            crate::actions::schema::static_problems(
                                s,
                                route.action.configured_parameters(),
                            )
                        })
                        .unwrap_or_default();
                    for p in problems {
                        tracing::warn!(route = %route.name, deployment = %dep, problem = %p, "route parameters do not fit the deployment's schema");
                    }
                }
                Err(e) => {
                    tracing::warn!(route = %route.name, deployment = %dep, error = %e, "cannot check the deployment at start-up")
                }
            }
        });
    }
    let collectors = routes
        .iter()
        .map(|r| collector(Arc::clone(r), env.clone()))
        .collect();
    let engine = &config.engine;
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
    );

    let stop = CancellationToken::new();
    let mut background = JoinSet::new();
    // Stateful routes: restore their buckets, run their clocks, and run their firings (in a
    // task of their own, never through the engine queue, so a full queue cannot stall them).
    for route in &routes {
        let Some(stateful) = route.stateful.clone() else {
            continue;
        };
        let restored = stateful
            .restore(journal.as_ref())
            .await
            .with_context(|| format!("cannot restore the trigger state of route {}", route.name))?;
        tracing::info!(route = %route.name, buckets = restored, "trigger state restored");
        let (tx, mut rx) = tokio::sync::mpsc::channel::<switchyard_core::Event>(256);
        stateful.set_firings(tx, Arc::clone(dispatch.owned()));
        background.spawn(Arc::clone(&stateful).run_clock(Arc::clone(&journal), stop.clone()));
        let (route, env, journal, stop, owned) = (
            Arc::clone(route),
            env.clone(),
            Arc::clone(&journal),
            stop.clone(),
            Arc::clone(dispatch.owned()),
        );
        background.spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = rx.recv() => match e { Some(e) => e, None => return },
                };
                let id = event.id.clone();
                let inbound = Inbound { event: Arc::new(event), settled: Vec::new() };
                match route.handle(&inbound, &env).await {
                    Ok(outcome) => {
                        let skipped = skipped_routes([(route.name.as_str(), &outcome)]);
                        if let Err(e) = journal.finish_skipped(&id, skipped).await {
                            tracing::error!(event_id = %id, error = %e, "cannot record the end of the firing; it will be resumed");
                        }
                    }
                    Err(e) => tracing::warn!(event_id = %id, error = %e, "firing not finished; it stays pending and is resumed later"),
                }
                owned.release(&id);
            }
        });
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
        background.spawn(async move {
            for p in pending {
                if d.resume(p.event, p.settled).await.is_err() {
                    break;
                }
            }
        });
    }
    // The sweep: a pending event that no task holds (its end could not be written, a retry
    // was interrupted) is resumed while running, not only at the next start.
    let (d, s) = (dispatch.clone(), stop.clone());
    let (sweep_every, sweep_after) = (config.journal.sweep_interval, config.journal.sweep_after);
    background.spawn(async move {
        let mut every = tokio::time::interval(sweep_every);
        every.tick().await;
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = every.tick() => match d.sweep(sweep_after, 1000).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(events = n, "sweep resumed pending events that had no owner"),
                    Err(e) => tracing::warn!(error = %e, "sweep of pending events failed"),
                },
            }
        }
    });
    // The journal's integrity: still its file, still taking writes.
    let (j, s, check_every) = (
        Arc::clone(&journal),
        stop.clone(),
        config.journal.check_interval,
    );
    background.spawn(async move {
        let mut every = tokio::time::interval(check_every);
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = every.tick() => { j.check().await; }
            }
        }
    });
    let retention = Retention {
        max_age: config.journal.retention.max_age,
        max_events: config.journal.retention.max_events,
    };
    let (j, s) = (Arc::clone(&journal), stop.clone());
    background.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = every.tick() => match j.prune(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "journal retention: finished events pruned"),
                    Err(e) => tracing::warn!(error = %e, "journal retention failed"),
                },
            }
        }
    });

    let mut sources = JoinSet::new();
    let mut hooks = Vec::new();
    for source in &config.sources {
        match source {
            SourceConfig::Stdin(cfg) => {
                let (cfg, d, s) = (cfg.clone(), dispatch.clone(), stop.clone());
                sources
                    .spawn(async move { sources::stdin::run(cfg, std::io::stdin(), d, s).await });
            }
            SourceConfig::Webhook(cfg) => hooks.push(cfg.clone()),
            #[cfg(feature = "redis-streams")]
            SourceConfig::RedisStreams(cfg) => {
                sources.spawn(sources::redis_streams::run(
                    cfg.clone(),
                    dispatch.clone(),
                    stop.clone(),
                ));
            }
            #[cfg(feature = "nats")]
            SourceConfig::Nats(cfg) => {
                sources.spawn(sources::nats::run(
                    cfg.clone(),
                    dispatch.clone(),
                    stop.clone(),
                ));
            }
            #[cfg(feature = "amqp")]
            SourceConfig::Amqp(cfg) => {
                sources.spawn(sources::amqp::run(
                    cfg.clone(),
                    dispatch.clone(),
                    stop.clone(),
                ));
            }
            #[cfg(feature = "mqtt")]
            SourceConfig::Mqtt(cfg) => {
                sources.spawn(sources::mqtt::run(
                    cfg.clone(),
                    dispatch.clone(),
                    stop.clone(),
                ));
            }
            #[cfg(feature = "kafka")]
            SourceConfig::Kafka(cfg) => {
                sources.spawn(sources::kafka::run(
                    cfg.clone(),
                    dispatch.clone(),
                    stop.clone(),
                ));
            }
            #[cfg(feature = "azure")]
            SourceConfig::AzureQueue(cfg) => {
                sources.spawn(sources::azure::run(
                    cfg.clone(),
                    dispatch.clone(),
                    stop.clone(),
                ));
            }
            #[cfg(feature = "zeromq")]
            SourceConfig::Zeromq(cfg) => {
                sources.spawn(sources::zeromq::run(
                    cfg.clone(),
                    dispatch.clone(),
                    stop.clone(),
                ));
            }
            // Rejected when the config is loaded (the feature is missing from this build).
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    let serving_http = !hooks.is_empty();
    if serving_http {
        let addr = config.http.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (http.listen)"))?;
        let names: Vec<String> = hooks.iter().map(|h| format!("/hooks/{}", h.name)).collect();
        tracing::info!(listen = %listener.local_addr().unwrap_or(addr), hooks = ?names, "webhook server listening");
        let app = sources::webhook::app(hooks, dispatch.clone(), config.http.max_body_bytes.get());
        let s = stop.clone();
        sources.spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "webhook server failed");
            }
        });
    }
    drop(dispatch);

    let wait_for_end = opts.exit_when_sources_end && !serving_http;
    tokio::pin!(shutdown);
    if wait_for_end {
        tokio::select! {
            _ = &mut shutdown => tracing::info!("shutdown requested"),
            _ = async { while sources.join_next().await.is_some() {} } => tracing::info!("all sources finished"),
        }
    } else {
        shutdown.await;
        tracing::info!("shutdown requested");
    }
    stop.cancel();
    // Routes waiting to retry stop waiting: their events stay pending in the journal.
    interrupt.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), async {
        while sources.join_next().await.is_some() {}
        while background.join_next().await.is_some() {}
    })
    .await;
    if stopped.is_err() {
        tracing::warn!("sources did not stop within 10s; aborting them");
        sources.abort_all();
        background.abort_all();
    }
    let pending = queue.metrics();
    tracing::info!(queued = pending.qsize, in_flight = pending.busy, timeout = ?engine.shutdown_timeout, "draining");
    let report = queue
        .shutdown(ShutdownMode::Drain {
            timeout: engine.shutdown_timeout,
        })
        .await;
    finishers.close();
    finishers.wait().await;
    let pending = journal.pending().await.map(|p| p.len()).unwrap_or(0);
    if pending > 0 {
        tracing::warn!(
            events = pending,
            "events left pending in the journal; they resume on the next start"
        );
    }
    tracing::info!(events = report.finished, "switchyard stopped");
    Ok(Stopped {
        finished: report.finished,
        pending,
        journal_fault: journal.check().await,
    })
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Events the engine finished.
    pub finished: u64,
    /// Events left pending in the journal (resumed by the next start).
    pub pending: usize,
    /// Why the journal could not take writes at the end, if it could not.
    pub journal_fault: Option<String>,
}

/// Resolves SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
