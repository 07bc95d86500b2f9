//! The `stdin` source's settings.

use serde::Deserialize;
use std::num::NonZeroUsize;

/// How stdin lines are read.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StdinFormat {
    /// Each line is any JSON value; it becomes the event payload.
    #[default]
    Json,
    /// Each line is an original prefect-event-router message
    /// `{"flow_name", "deployment_name", "payload"}`; others are rejected.
    PrefectEventRouter,
}

impl StdinFormat {
    /// The name the config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::PrefectEventRouter => "prefect_event_router",
        }
    }
}

/// A stdin source.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Source name.
    pub name: String,
    /// Line format (default `json`).
    #[serde(default)]
    pub format: StdinFormat,
    /// Event name given to each line (default `<name>.line`).
    pub event: Option<String>,
    /// Longest accepted line in bytes (default 1 MiB); longer lines are reported and skipped.
    #[serde(default = "default_max_body")]
    pub max_line_bytes: NonZeroUsize,
}

fn default_max_body() -> NonZeroUsize {
    NonZeroUsize::new(1 << 20).unwrap_or(NonZeroUsize::MIN)
}
