//! What became of an event, in words every layer shares: the journal stores these, routes
//! return them, sources map them onto their acknowledgements.

use serde::Serialize;
use uuid::Uuid;

/// A flow run that exists for an event.
#[derive(Debug, Clone, Serialize)]
pub struct RunCreated {
    /// The deployment as configured or rendered (`Flow/deployment` or an id).
    pub deployment: String,
    /// Its id.
    pub deployment_id: Uuid,
    /// The run.
    pub flow_run_id: Uuid,
    /// Its name.
    pub flow_run_name: String,
    /// True when Prefect returned an existing run for the idempotency key.
    pub replayed: bool,
}
