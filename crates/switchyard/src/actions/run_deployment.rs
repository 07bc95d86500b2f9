//! `run_deployment`: create a flow run of a deployment with parameters rendered from the
//! event, idempotently.

use serde_json::Value;
use switchyard_core::Event;
use switchyard_prefect::{DeploymentRef, FlowRunCreate, PrefectClient};

use super::{ActionError, RunCreated};
use crate::config::RunDeploymentConfig;
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

    /// Renders and creates the run. The idempotency key is
    /// `<deployment id>:<route>:<event id>`, so a redelivered event returns the run it
    /// already started (Prefect scopes keys per flow, hence the deployment id in it).
    pub async fn execute(
        &self,
        route: &str,
        event: &Event,
        ctx: &minijinja::Value,
        prefect: &PrefectClient,
    ) -> Result<RunCreated, ActionError> {
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
        let body = FlowRunCreate {
            parameters,
            tags,
            idempotency_key: None,
            name,
        };
        if let Some(rate) = &self.rate {
            rate.ready().await;
        }
        let _slot = match &self.in_flight {
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        // Checked here, so a mismatch is a dead letter in the schema's words, not a 409.
        let deployment = prefect.resolve(&reference).await?;
        if deployment.enforce_parameter_schema
            && let Some(schema) = &deployment.parameter_openapi_schema
        {
            let problems =
                super::schema::violations(schema, &Value::Object(body.parameters.clone()));
            if !problems.is_empty() {
                return Err(ActionError::Schema(problems.join("; ")));
            }
        }
        let key = format!("{route}:{}", event.id);
        let (deployment, created) = prefect
            .run_deployment(&reference, &body, Some(&key))
            .await?;
        Ok(RunCreated {
            deployment: reference.to_string(),
            deployment_id: deployment.id,
            flow_run_id: created.run.id,
            flow_run_name: created.run.name,
            replayed: created.replayed,
        })
    }
}
