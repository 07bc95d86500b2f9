//! `run_deployment`: create a flow run of a deployment with parameters rendered from the
//! event, idempotently.

use serde_json::Value;
use switchyard_core::Event;
use switchyard_prefect::{DeploymentRef, FlowRunCreate, PrefectClient};

use super::{ActionError, RunCreated};
use crate::config::RunDeploymentConfig;
use crate::outcome::WouldRun;
use crate::template::{TextTemplate, ValueTemplate};

/// The compiled action.
#[derive(Debug)]
pub struct RunDeployment {
    deployment: Target,
    /// Caps for this route alone (the Prefect client applies the global ones).
    in_flight: Option<tokio::sync::Semaphore>,
    rate: Option<switchyard_prefect::RateLimiter>,
    parameters: ValueTemplate,
    configured: Value,
    tags: Vec<String>,
    flow_run_name: Option<TextTemplate>,
}

#[derive(Debug)]
enum Target {
    Static(DeploymentRef),
    Templated(TextTemplate),
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

impl RunDeployment {
    /// Compiles the templates and checks what can be checked without Prefect.
    pub fn compile(cfg: &RunDeploymentConfig) -> Result<Self, (String, String)> {
        let deployment = if is_template(&cfg.deployment) {
            Target::Templated(
                TextTemplate::compile(&cfg.deployment).map_err(|e| ("deployment".into(), e))?,
            )
        } else {
            Target::Static(cfg.deployment.parse().map_err(
                |e: switchyard_prefect::PrefectError| ("deployment".into(), e.to_string()),
            )?)
        };
        let parameters = match &cfg.parameters {
            Value::Object(_) => ValueTemplate::compile(&cfg.parameters),
            Value::String(s) if is_template(s) => ValueTemplate::compile(&cfg.parameters),
            other => {
                return Err((
                    "parameters".into(),
                    format!("expected a map of parameters or a template string rendering to one, got {other}"),
                ));
            }
        }
        .map_err(|(p, e)| (format!("parameters{p}"), e))?;
        let flow_run_name = cfg
            .flow_run_name
            .as_deref()
            .map(TextTemplate::compile)
            .transpose()
            .map_err(|e| ("flow_run_name".to_string(), e))?;
        let rate = match cfg.rate_limit {
            None => None,
            Some(r) => Some(
                switchyard_prefect::RateLimiter::per_second(r).ok_or_else(|| {
                    (
                        "rate_limit".to_string(),
                        format!("expected a positive number of runs per second, got {r}"),
                    )
                })?,
            ),
        };
        Ok(Self {
            in_flight: cfg
                .max_in_flight
                .map(|n| tokio::sync::Semaphore::new(n.get())),
            rate,
            deployment,
            parameters,
            configured: cfg.parameters.clone(),
            tags: cfg.tags.clone(),
            flow_run_name,
        })
    }

    /// The parameters as configured.
    pub fn configured_parameters(&self) -> &Value {
        &self.configured
    }

    /// The deployment when it does not depend on the event.
    pub fn static_deployment(&self) -> Option<&DeploymentRef> {
        match &self.deployment {
            Target::Static(r) => Some(r),
            Target::Templated(_) => None,
        }
    }

    /// Renders what the run will be: deployment, parameters, name and tags. Synchronous and
    /// bounded by the template budget; the router calls it on the evaluation pool.
    pub fn render(&self, route: &str, ctx: &minijinja::Value) -> Result<Rendered, ActionError> {
        let reference = match &self.deployment {
            Target::Static(r) => r.clone(),
            Target::Templated(t) => {
                let rendered = t.render(ctx).map_err(|message| ActionError::Template {
                    field: "deployment",
                    message,
                })?;
                rendered
                    .parse()
                    .map_err(|e: switchyard_prefect::PrefectError| {
                        ActionError::InvalidDeployment(format!(
                            "deployment rendered to {rendered:?}: {e}"
                        ))
                    })?
            }
        };
        let parameters =
            match self
                .parameters
                .render(ctx)
                .map_err(|message| ActionError::Template {
                    field: "parameters",
                    message,
                })? {
                Value::Object(map) => map,
                other => return Err(ActionError::ParametersNotObject(other.to_string())),
            };
        let depth = json_depth(&Value::Object(parameters.clone()));
        if depth > MAX_PARAMETER_DEPTH {
            return Err(ActionError::TooDeep(depth));
        }
        let name = self
            .flow_run_name
            .as_ref()
            .map(|t| t.render(ctx))
            .transpose()
            .map_err(|message| ActionError::Template {
                field: "flow_run_name",
                message,
            })?;
        let mut tags = vec![
            "switchyard".to_string(),
            format!("switchyard.route:{route}"),
        ];
        tags.extend(self.tags.iter().cloned());
        Ok(Rendered {
            reference,
            body: FlowRunCreate {
                parameters,
                tags,
                idempotency_key: None,
                name,
                labels: Default::default(),
            },
        })
    }

    /// Resolves the deployment and checks the parameters against its schema (a mismatch is
    /// a dead letter in the schema's words, not a 409 from Prefect).
    async fn checked(
        reference: &DeploymentRef,
        body: &FlowRunCreate,
        prefect: &PrefectClient,
    ) -> Result<std::sync::Arc<switchyard_prefect::Deployment>, ActionError> {
        let deployment = prefect.resolve(reference).await?;
        if deployment.enforce_parameter_schema
            && let Some(schema) = &deployment.parameter_openapi_schema
        {
            let problems =
                super::schema::violations(schema, &Value::Object(body.parameters.clone()));
            if !problems.is_empty() {
                return Err(ActionError::Schema(problems.join("; ")));
            }
        }
        Ok(deployment)
    }

    /// The idempotency key of the run a route starts for an event: `<route>:<event id>`
    /// (Prefect scopes keys per flow, so a redelivered event finds the run it started), and
    /// `<route>:<event id>#run<n>` for the `n`th run of a route that retries failed runs.
    fn key(route: &str, event: &Event, run: u32) -> String {
        if run <= 1 {
            format!("{route}:{}", event.id)
        } else {
            format!("{route}:{}#run{run}", event.id)
        }
    }

    /// Creates the run [`RunDeployment::render`] described, the route's `run`th for the
    /// event (1 but for a route retrying failed runs); a redelivered event returns the run it
    /// already started (see [`RunDeployment::key`]).
    pub async fn create(
        &self,
        route: &str,
        event: &Event,
        rendered: Rendered,
        prefect: &PrefectClient,
        run: u32,
    ) -> Result<RunCreated, ActionError> {
        let Rendered {
            reference,
            mut body,
        } = rendered;
        // Where the run came from, searchable in Prefect's UI and API.
        for (k, v) in [
            ("switchyard.event.id", event.id.as_str()),
            ("switchyard.route", route),
            ("switchyard.source", event.source.as_str()),
        ] {
            body.labels.insert(k.into(), Value::String(v.into()));
        }
        if let Some(rate) = &self.rate {
            rate.ready().await;
        }
        let _slot = match &self.in_flight {
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        Self::checked(&reference, &body, prefect).await?;
        let key = Self::key(route, event, run);
        let (deployment, created) = prefect
            .run_deployment(&reference, &body, Some(&key))
            .await?;
        Ok(RunCreated {
            deployment: reference.to_string(),
            deployment_id: deployment.id,
            flow_run_id: created.run.id,
            flow_run_name: created.run.name,
            replayed: created.replayed,
            concurrency_key: None,
        })
    }

    /// What [`RunDeployment::create`] would create, checked the same way (the deployment
    /// exists, the parameters fit its schema), without creating it: a shadow route's run.
    /// Only reads Prefect, so neither the route's rate nor its in-flight cap applies.
    pub async fn would_run(
        &self,
        route: &str,
        event: &Event,
        rendered: Rendered,
        prefect: &PrefectClient,
    ) -> Result<WouldRun, ActionError> {
        let Rendered { reference, body } = rendered;
        let deployment = Self::checked(&reference, &body, prefect).await?;
        Ok(WouldRun {
            deployment: reference.to_string(),
            deployment_id: deployment.id,
            parameters: Value::Object(body.parameters),
            idempotency_key: Self::key(route, event, 1),
            flow_run_name: body.name,
        })
    }
}

/// A run, rendered and not yet created.
#[derive(Debug, Clone)]
pub struct Rendered {
    reference: DeploymentRef,
    body: FlowRunCreate,
}

impl Rendered {
    /// The deployment, as configured or rendered.
    pub fn deployment(&self) -> String {
        self.reference.to_string()
    }

    /// The parameters.
    pub fn parameters(&self) -> &serde_json::Map<String, Value> {
        &self.body.parameters
    }

    /// The run name, when the route sets one.
    pub fn flow_run_name(&self) -> Option<&str> {
        self.body.name.as_deref()
    }
}

/// Deepest parameters sent to Prefect. Prefect echoes the parameters in its answer, one level
/// deeper, and a JSON reader stops at 128 levels: deeper parameters would create a run whose
/// answer cannot be read. No flow needs more than this.
pub const MAX_PARAMETER_DEPTH: usize = 64;

/// Nesting depth of a JSON value (a scalar is 1), without recursion.
pub fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}
