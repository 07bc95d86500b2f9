//! Routes: which events (sources, `when`), and what to do with them (an action).

use serde::Serialize;
use switchyard_core::Event;
use switchyard_prefect::PrefectClient;

use crate::actions::{Action, ActionError, RunCreated};
use crate::config::RouteConfig;
use crate::template::{self, Predicate};

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
}

/// What a route did with an event.
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
}

/// Why a route failed on an event.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// `when` could not be evaluated (e.g. comparing text with a number).
    #[error("{0}")]
    Predicate(String),
    /// The action failed.
    #[error(transparent)]
    Action(#[from] ActionError),
}

impl RouteError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Predicate(_) => false,
            Self::Action(a) => a.is_retryable(),
        }
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
        Ok(Self {
            name: cfg.name.clone(),
            sources: sources.to_vec(),
            when,
            action,
        })
    }

    /// Applies the route to one event, logging the decision and its result.
    pub async fn handle(
        &self,
        event: &Event,
        prefect: &PrefectClient,
    ) -> Result<RouteOutcome, RouteError> {
        let ctx = template::context(event);
        if let Some(when) = &self.when {
            match when.eval(&ctx) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(event_id = %event.id, route = %self.name, when = when.source(), "route skipped: `when` is false");
                    return Ok(RouteOutcome::Skipped {
                        reason: format!("`when` {:?} is false", when.source()),
                    });
                }
                Err(e) => {
                    tracing::error!(event_id = %event.id, route = %self.name, error = %e, "route failed");
                    return Err(RouteError::Predicate(e));
                }
            }
        }
        match self.action.execute(&self.name, event, &ctx, prefect).await {
            Ok(run) => {
                tracing::info!(
                    event_id = %event.id, route = %self.name, deployment = %run.deployment,
                    flow_run_id = %run.flow_run_id, flow_run_name = %run.flow_run_name, replayed = run.replayed,
                    "{}", if run.replayed { "flow run already existed for this event" } else { "flow run started" }
                );
                Ok(RouteOutcome::RunCreated(run))
            }
            Err(e) => {
                tracing::error!(event_id = %event.id, route = %self.name, retryable = e.is_retryable(), error = %e, "route failed");
                Err(e.into())
            }
        }
    }
}
