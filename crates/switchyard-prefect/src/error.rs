/// What went wrong talking to Prefect.
#[derive(Debug, thiserror::Error)]
pub enum PrefectError {
    /// The deployment reference is neither a UUID nor `"flow/deployment"`.
    #[error(
        "invalid deployment reference {0:?}: expected a deployment id or \"Flow Name/deployment-name\""
    )]
    InvalidReference(String),
    /// No such deployment (HTTP 404).
    #[error("deployment {reference} not found")]
    DeploymentNotFound {
        /// What was asked for.
        reference: String,
    },
    /// The server rejected the parameters against the deployment's schema (HTTP 409).
    #[error("Prefect rejected the flow run: {detail}")]
    Rejected {
        /// The server's explanation.
        detail: String,
    },
    /// The request was malformed (HTTP 422); a bug on this side.
    #[error("Prefect could not process the request (HTTP 422): {detail}")]
    Unprocessable {
        /// The server's explanation.
        detail: String,
    },
    /// Credentials missing or wrong (HTTP 401/403).
    #[error(
        "Prefect refused the credentials (HTTP {status}): {detail}; set PREFECT_API_AUTH_STRING or PREFECT_API_KEY"
    )]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// The server's explanation.
        detail: String,
    },
    /// A transient failure outlasted every retry.
    #[error("Prefect unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// Any other HTTP status.
    #[error("Prefect answered HTTP {status}: {detail}")]
    Http {
        /// The status.
        status: u16,
        /// The body.
        detail: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from Prefect for {what}: {source}")]
    Decode {
        /// Which call.
        what: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The client could not be built or the request could not be sent for a reason that
    /// retrying will not fix (bad URL, TLS setup).
    #[error("Prefect client error: {0}")]
    Client(String),
}

impl PrefectError {
    /// Whether trying again later may succeed: true for an exhausted transient failure (the
    /// server was down or overloaded), false for answers that will not change (unknown
    /// deployment, schema rejection, malformed request).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
