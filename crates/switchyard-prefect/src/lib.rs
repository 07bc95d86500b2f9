//! # switchyard-prefect
//!
//! A typed async client for the parts of the Prefect 3 REST API an event router needs:
//! resolving deployments by `"Flow Name/deployment-name"` (cached) or id, creating flow runs
//! with parameters, tags, a name and an idempotency key, and reading runs back.
//!
//! Every answer is classified ([`PrefectError::is_retryable`]): 201 is a new run, 200 an
//! idempotent replay of an existing one, 404 an unknown deployment, 409 a parameter-schema
//! rejection, 422 a malformed request; 408/429/502/503/504 and connection failures are
//! transient and retried with exponential backoff and jitter, honouring `Retry-After`.
//! Calls that write are limited to a few in flight, because a SQLite-backed Prefect answers
//! 503 to concurrent writers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard_prefect::PrefectError> {
//! use switchyard_prefect::{ClientConfig, FlowRunCreate, PrefectClient};
//! let client = PrefectClient::new(ClientConfig::from_env())?;
//! let deployment = client.resolve(&"Test Flow/integration-test".parse()?).await?;
//! let run = client
//!     .create_flow_run(&deployment.id, &FlowRunCreate {
//!         parameters: serde_json::json!({"name": "alice"}).as_object().cloned().unwrap_or_default(),
//!         idempotency_key: Some(format!("{}:evt-1", deployment.id)),
//!         ..Default::default()
//!     })
//!     .await?;
//! println!("{} {} (replayed: {})", run.run.id, run.run.name, run.replayed);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod error;
mod limit;
mod retry;
mod types;

pub use client::{ClientConfig, MAX_RUNS_PER_READ, Observer, PrefectClient};
pub use error::PrefectError;
pub use limit::{AdaptiveLimit, LimitPermit, RateLimiter};
pub use retry::RetryPolicy;
pub use types::{
    CreatedRun, Deployment, DeploymentCreate, DeploymentRef, Flow, FlowRun, FlowRunCreate,
    TERMINAL_STATES,
};
