use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::PrefectError;

/// Which deployment: by id, or by exact flow and deployment names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeploymentRef {
    /// A deployment id.
    Id(Uuid),
    /// Exact names; `"Test Flow"` never matches `"Test Flow with Params"`.
    Name {
        /// The flow's name.
        flow: String,
        /// The deployment's name.
        deployment: String,
    },
}

impl DeploymentRef {
    /// A reference by names.
    pub fn name(flow: impl Into<String>, deployment: impl Into<String>) -> Self {
        Self::Name {
            flow: flow.into(),
            deployment: deployment.into(),
        }
    }
}

impl FromStr for DeploymentRef {
    type Err = PrefectError;

    /// Parses a UUID, or `"Flow Name/deployment-name"` (Prefect forbids `/` in both names).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(id) = Uuid::parse_str(s) {
            return Ok(Self::Id(id));
        }
        match s.split_once('/') {
            Some((flow, dep))
                if !flow.trim().is_empty() && !dep.trim().is_empty() && !dep.contains('/') =>
            {
                Ok(Self::name(flow, dep))
            }
            _ => Err(PrefectError::InvalidReference(s.to_string())),
        }
    }
}

impl fmt::Display for DeploymentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Name { flow, deployment } => write!(f, "{flow}/{deployment}"),
        }
    }
}

/// A flow, as the API returns it (fields the router uses).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Flow {
    /// Flow id.
    pub id: Uuid,
    /// Flow name.
    pub name: String,
}

/// A deployment, as the API returns it (fields the router uses).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Deployment {
    /// Deployment id.
    pub id: Uuid,
    /// Deployment name.
    pub name: String,
    /// Its flow's id.
    pub flow_id: Uuid,
    /// Default parameters, merged under the ones a run is created with.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// JSON schema of the flow's parameters.
    #[serde(default)]
    pub parameter_openapi_schema: Option<Value>,
    /// Whether the server validates run parameters against the schema.
    #[serde(default)]
    pub enforce_parameter_schema: bool,
    /// Deployment tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Work pool, if any.
    #[serde(default)]
    pub work_pool_name: Option<String>,
}

/// Body of `POST /deployments/` (an upsert by flow and name).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeploymentCreate {
    /// Deployment name.
    pub name: String,
    /// Flow id.
    pub flow_id: Uuid,
    /// Work pool for workers to pick runs from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_pool_name: Option<String>,
    /// `module.py:function` entrypoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Directory holding the flow code, for a process worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Default parameters.
    pub parameters: Map<String, Value>,
    /// Parameter JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_openapi_schema: Option<Value>,
    /// Whether to validate run parameters.
    pub enforce_parameter_schema: bool,
    /// Tags.
    pub tags: Vec<String>,
}

/// Body of `POST /deployments/{id}/create_flow_run`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlowRunCreate {
    /// Parameters, merged over the deployment's defaults by the server.
    pub parameters: Map<String, Value>,
    /// Tags, added to the deployment's.
    pub tags: Vec<String>,
    /// Same key, same run: a repeat returns the existing run (HTTP 200). Unique per *flow*,
    /// so include the deployment in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Run name; the server invents one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Prefect 3 flow-run labels (string values), added to the flow's and deployment's.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub labels: Map<String, Value>,
}

/// A flow run (fields the router uses).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FlowRun {
    /// Run id.
    pub id: Uuid,
    /// Run name.
    pub name: String,
    /// Its deployment.
    #[serde(default)]
    pub deployment_id: Option<Uuid>,
    /// Its flow.
    pub flow_id: Uuid,
    /// Parameters as stored.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Idempotency key it was created with.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Labels (`prefect.flow.id`, `prefect.deployment.id`, and those sent at creation).
    #[serde(default)]
    pub labels: Map<String, Value>,
    /// `SCHEDULED`, `PENDING`, `RUNNING`, `COMPLETED`, ...
    #[serde(default)]
    pub state_type: Option<String>,
    /// Display name of the state.
    #[serde(default)]
    pub state_name: Option<String>,
    /// When it started running (RFC 3339), once it has.
    #[serde(default)]
    pub start_time: Option<String>,
    /// When it ended (RFC 3339), once it has.
    #[serde(default)]
    pub end_time: Option<String>,
}

/// The state types after which a flow run does not change again.
pub const TERMINAL_STATES: [&str; 4] = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"];

impl FlowRun {
    /// Whether the run has ended: Completed, Failed, Crashed or Cancelled.
    pub fn is_terminal(&self) -> bool {
        self.state_type
            .as_deref()
            .is_some_and(|t| TERMINAL_STATES.contains(&t))
    }
}

/// The result of `create_flow_run`.
#[derive(Debug, Clone)]
pub struct CreatedRun {
    /// The run.
    pub run: FlowRun,
    /// True when the idempotency key matched an existing run (HTTP 200): nothing new was
    /// created.
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let id = "0bc436f1-d7c3-48db-a748-251d9c8c4ca4";
        assert_eq!(
            id.parse::<DeploymentRef>().unwrap(),
            DeploymentRef::Id(Uuid::parse_str(id).unwrap())
        );
        assert_eq!(
            "Test Flow/integration-test"
                .parse::<DeploymentRef>()
                .unwrap(),
            DeploymentRef::name("Test Flow", "integration-test")
        );
        for bad in ["", "no-slash", "/dep", "flow/", "a/b/c"] {
            assert!(bad.parse::<DeploymentRef>().is_err(), "{bad:?}");
        }
    }
}
