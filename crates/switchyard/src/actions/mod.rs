//! Actions: what a route does to the outside world. Each failure says whether it is
//! retryable.

mod run_deployment;
pub mod schema;

use switchyard_core::Event;
use switchyard_prefect::{PrefectClient, PrefectError};

use crate::config::ActionConfig;

pub use crate::outcome::RunCreated;
pub use run_deployment::{MAX_PARAMETER_DEPTH, Rendered, RunDeployment, json_depth};

/// A compiled action.
#[derive(Debug)]
pub enum Action {
    /// Create a flow run.
    RunDeployment(RunDeployment),
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A template could not be rendered for this event.
    #[error("cannot render {field}: {message}")]
    Template {
        /// Which setting.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The parameters did not render to an object.
    #[error("parameters must render to a JSON object, got {0}")]
    ParametersNotObject(String),
    /// The parameters nest deeper than [`MAX_PARAMETER_DEPTH`].
    #[error(
        "parameters nest {0} levels deep; at most {MAX_PARAMETER_DEPTH} can be sent to Prefect"
    )]
    TooDeep(usize),
    /// The rendered deployment is not a reference.
    #[error("{0}")]
    InvalidDeployment(String),
    /// The rendered parameters do not satisfy the deployment's parameter schema.
    #[error("parameters do not match the deployment's schema: {0}")]
    Schema(String),
    /// Prefect refused or could not be reached.
    #[error(transparent)]
    Prefect(#[from] PrefectError),
}

impl ActionError {
    /// Whether a later attempt may succeed (Prefect was unavailable); template, schema and
    /// unknown-deployment failures are permanent.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Prefect(e) if e.is_retryable())
    }
}

impl Action {
    /// Compiles an action; an error is `(key inside the action, message)`.
    pub fn compile(cfg: &ActionConfig) -> Result<Self, (String, String)> {
        match cfg {
            ActionConfig::RunDeployment(c) => RunDeployment::compile(c).map(Self::RunDeployment),
        }
    }

    /// Renders what the action will do for one event (synchronous, within the template
    /// budget; see [`crate::template::sandbox`]).
    pub fn render(&self, route: &str, ctx: &minijinja::Value) -> Result<Rendered, ActionError> {
        match self {
            Self::RunDeployment(a) => a.render(route, ctx),
        }
    }

    /// Does what [`Action::render`] described: the route's `run`th run for the event.
    pub async fn execute(
        &self,
        route: &str,
        event: &Event,
        rendered: Rendered,
        prefect: &PrefectClient,
        run: u32,
    ) -> Result<RunCreated, ActionError> {
        match self {
            Self::RunDeployment(a) => a.create(route, event, rendered, prefect, run).await,
        }
    }

    /// What [`Action::execute`] would do, checked, without doing it (a shadow route).
    pub async fn would_run(
        &self,
        route: &str,
        event: &Event,
        rendered: Rendered,
        prefect: &PrefectClient,
    ) -> Result<crate::outcome::WouldRun, ActionError> {
        match self {
            Self::RunDeployment(a) => a.would_run(route, event, rendered, prefect).await,
        }
    }

    /// The deployment reference when it does not depend on the event.
    pub fn static_deployment(&self) -> Option<&switchyard_prefect::DeploymentRef> {
        match self {
            Self::RunDeployment(a) => a.static_deployment(),
        }
    }

    /// The configured parameters (templates unrendered), for static checks.
    pub fn configured_parameters(&self) -> &serde_json::Value {
        match self {
            Self::RunDeployment(a) => a.configured_parameters(),
        }
    }
}
