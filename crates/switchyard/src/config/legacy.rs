//! The original prefect-event-router's configuration, accepted unchanged:
//!
//! ```json
//! {"threads": [{"publisher_type": "StdInput"}], "settings": {}}
//! ```
//!
//! Each `StdInput` thread becomes a stdin source reading the original message form
//! `{"flow_name": "...", "deployment_name": "...", "payload": {...}}`, and one route runs
//! exactly that deployment (names match exactly) with `payload` as its parameters. Prefect is
//! reached through `PREFECT_API_URL` / `PREFECT_API_KEY` as before.

use std::num::NonZeroUsize;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    ActionConfig, Config, ConfigError, DeliveryConfig, EngineConfig, HttpConfig, JournalConfig,
    PrefectConfig, RouteConfig, RunDeploymentConfig, SourceConfig, StdinConfig, StdinFormat, parse,
};

/// The publisher types the original router knew.
pub const PUBLISHER_TYPES: [&str; 2] = ["StdInput", "AzureStorageQueue"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyConfig {
    threads: Vec<LegacyThread>,
    /// Accepted for compatibility; the original's settings have no effect here.
    #[serde(default)]
    #[allow(dead_code)]
    settings: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct LegacyThread {
    publisher_type: String,
    #[serde(flatten)]
    #[allow(dead_code)]
    rest: Map<String, Value>,
}

/// One original message.
#[derive(Debug, Clone, Deserialize)]
pub struct LegacyMessage {
    /// Exact flow name.
    pub flow_name: String,
    /// Exact deployment name.
    pub deployment_name: String,
    /// Flow run parameters.
    #[serde(default)]
    pub payload: Map<String, Value>,
}

/// The route the legacy form runs.
pub const LEGACY_ROUTE: &str = "prefect-event-router";

pub(super) fn translate(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let legacy: LegacyConfig = parse(path, text)?;
    if legacy.threads.is_empty() {
        return Err(ConfigError::at(
            path,
            "threads",
            "expected at least one thread",
        ));
    }
    let mut sources = Vec::new();
    for (i, t) in legacy.threads.iter().enumerate() {
        match t.publisher_type.as_str() {
            "StdInput" if sources.is_empty() => sources.push(SourceConfig::Stdin(StdinConfig {
                name: "stdin".into(),
                format: StdinFormat::PrefectEventRouter,
                event: Some("prefect-event-router.message".into()),
                max_line_bytes: NonZeroUsize::new(1 << 20).unwrap_or(NonZeroUsize::MIN),
            })),
            "StdInput" => {
                return Err(ConfigError::at(
                    path,
                    format!("threads[{i}].publisher_type"),
                    "only one StdInput thread can read standard input",
                ));
            }
            "AzureStorageQueue" => {
                return Err(ConfigError::at(
                    path,
                    format!("threads[{i}].publisher_type"),
                    "AzureStorageQueue is recognised, but the Azure Storage Queue source is not available in this build yet; supported now: StdInput",
                ));
            }
            other => {
                return Err(ConfigError::at(
                    path,
                    format!("threads[{i}].publisher_type"),
                    format!(
                        "unknown publisher_type {other:?}; expected one of: {}",
                        PUBLISHER_TYPES.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(Config {
        journal: JournalConfig::default(),
        delivery: DeliveryConfig::default(),
        prefect: PrefectConfig::default(),
        engine: EngineConfig::default(),
        http: HttpConfig::default(),
        sources,
        routes: vec![RouteConfig {
            name: LEGACY_ROUTE.into(),
            from: Vec::new(),
            when: None,
            action: ActionConfig::RunDeployment(RunDeploymentConfig {
                deployment: "{{ event.payload.flow_name }}/{{ event.payload.deployment_name }}"
                    .into(),
                parameters: Value::String("{{ event.payload.payload }}".into()),
                tags: vec!["prefect-event-router".into()],
                flow_run_name: None,
                max_in_flight: None,
                rate_limit: None,
            }),
        }],
    })
}
