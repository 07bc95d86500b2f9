//! The router's background jobs, each a small type with `run(stop)`: the journal's retention,
//! its integrity check, the sweep of pending events no task holds, a stateful route's firing
//! runner, and the start-up check of each deployment's parameter schema.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::journal::{Retention, Store};
use crate::pipeline::{self, Dispatcher};
use crate::routes::{Live, Route};

/// Runs `work` every `every` until `stop` (the first run one period after start).
async fn every<F, Fut>(every: Duration, stop: CancellationToken, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => work().await,
        }
    }
}

/// Deletes finished events past the retention, every minute.
pub struct RetentionJob {
    /// The journal.
    pub journal: Arc<dyn Store>,
    /// What to keep.
    pub retention: Retention,
}

impl RetentionJob {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        every(Duration::from_secs(60), stop, || async {
            match self.journal.prune(self.retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "journal retention: finished events pruned"),
                Err(e) => tracing::warn!(error = %e, "journal retention failed"),
            }
        })
        .await;
    }
}

/// Checks that the journal is still its file and still takes writes (see [`Store::check`]).
pub struct JournalWatch {
    /// The journal.
    pub journal: Arc<dyn Store>,
    /// How often.
    pub interval: Duration,
}

impl JournalWatch {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        every(self.interval, stop, || async {
            self.journal.check().await;
        })
        .await;
    }
}

/// Resumes pending events that no task holds (see [`Dispatcher::sweep`]).
pub struct Sweep {
    /// The pipeline.
    pub dispatch: Dispatcher,
    /// How often.
    pub interval: Duration,
    /// How old a pending event must be.
    pub after: Duration,
}

impl Sweep {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        every(self.interval, stop, || async {
            match self.dispatch.sweep(self.after, 1000).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(events = n, "sweep resumed pending events that had no owner")
                }
                Err(e) => tracing::warn!(error = %e, "sweep of pending events failed"),
            }
        })
        .await;
    }
}

/// Runs a stateful route's firings as they come (in a task of its own, never through the
/// engine queue, so a full queue cannot stall them), and finishes each the way every event is
/// finished ([`pipeline::finish`]). Each firing runs with the route as the routing in force
/// has it (a reload that keeps the trigger may change the action).
pub struct Firings {
    /// The route's name.
    pub route: String,
    /// The routing in force.
    pub live: Arc<Live>,
    /// The pipeline (for its registry of events in hand).
    pub dispatch: Dispatcher,
    /// Firings to run.
    pub rx: mpsc::Receiver<Event>,
}

impl Firings {
    /// Lets go of the firings not yet run (journaled, they stay pending for the sweep).
    fn let_go(mut self) {
        self.rx.close();
        while let Ok(f) = self.rx.try_recv() {
            self.dispatch.owned().release(&f.id);
        }
    }

    /// Runs until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return self.let_go(),
                e = self.rx.recv() => match e { Some(e) => e, None => return },
            };
            let id = event.id.clone();
            let routing = self.live.current();
            let Some(route) = routing.route(&self.route) else {
                tracing::warn!(route = %self.route, event_id = %id, "firing of a route the config no longer has; the sweep ends it");
                self.dispatch.owned().release(&id);
                continue;
            };
            let outcome = route.handle(&Arc::new(event), &[], &routing.env).await;
            let settled = match &outcome {
                Ok(o) => Some(vec![(route.name.as_str(), o)]),
                Err(e) => {
                    tracing::warn!(event_id = %id, error = %e, "firing not finished; it stays pending and is resumed later");
                    None
                }
            };
            pipeline::finish(
                routing.env.journal.as_ref(),
                self.dispatch.owned(),
                &id,
                settled,
            )
            .await;
        }
    }
}

/// At start-up, checks each fixed deployment's parameter schema against what its route sets
/// (in the background: a Prefect that is down must not stop the router).
pub struct SchemaCheck {
    /// The routes.
    pub routes: Vec<Arc<Route>>,
    /// Prefect.
    pub prefect: switchyard_prefect::PrefectClient,
}

impl SchemaCheck {
    /// Runs once (or until `stop`).
    pub async fn run(self, stop: CancellationToken) {
        let check = async {
            for route in &self.routes {
                let Some(dep) = route.action.static_deployment() else {
                    continue;
                };
                match route.schema_problems(&self.prefect).await {
                    Ok(problems) => {
                        for p in problems {
                            tracing::warn!(route = %route.name, deployment = %dep, problem = %p, "route parameters do not fit the deployment's schema");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(route = %route.name, deployment = %dep, error = %e, "cannot check the deployment at start-up")
                    }
                }
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = check => {}
        }
    }
}
