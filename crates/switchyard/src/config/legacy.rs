//! The original prefect-event-router's configuration, accepted unchanged:
//!
//! ```json
//! {"threads": [{"publisher_type": "StdInput"}], "settings": {}}
//! ```
//!
//! An `AzureStorageQueue` thread becomes an Azure queue source reading the same message form
//! (see [`azure_thread`] for its credentials). Each `StdInput` thread becomes a stdin source reading the original message form
//! `{"flow_name": "...", "deployment_name": "...", "payload": {...}}`, and one route runs
//! exactly that deployment (names match exactly) with `payload` as its parameters. Prefect is
//! reached through `PREFECT_API_URL` / `PREFECT_API_KEY` as before.

use std::num::NonZeroUsize;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    ActionConfig, Config, ConfigError, DeliveryConfig, EngineConfig, HttpConfig, JournalConfig,
    PrefectConfig, RouteConfig, RunDeploymentConfig, SourceConfig, parse,
};
use crate::sources::azure::{AzureQueueConfig, MessageEncoding};
use crate::sources::stdin::{StdinConfig, StdinFormat};

/// The publisher types the original router knew.
pub const PUBLISHER_TYPES: [&str; 2] = ["StdInput", "AzureStorageQueue"];

/// The original prefect-event-router's config: `{"threads": [...], "settings": {}}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LegacyConfig {
    /// One source per thread.
    threads: Vec<LegacyThread>,
    /// Accepted for compatibility; the original's settings have no effect here.
    #[serde(default)]
    #[allow(dead_code)]
    settings: Option<Map<String, Value>>,
}

/// A thread: `{"publisher_type": "StdInput"}`, or `{"publisher_type":
/// "AzureStorageQueue", "storage_account": ..., "queue_name": ...}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct LegacyThread {
    /// `StdInput` or `AzureStorageQueue`.
    #[schemars(with = "LegacyPublisher")]
    publisher_type: String,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// The publisher types, for the schema.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
enum LegacyPublisher {
    /// Messages on standard input.
    StdInput,
    /// Messages on an Azure Storage Queue.
    AzureStorageQueue,
}

/// An `AzureStorageQueue` thread: `storage_account` and `queue_name` as before. The original
/// authenticated with `DefaultAzureCredential`; here credentials come from the environment:
/// `AZURE_STORAGE_CONNECTION_STRING`, else `AZURE_STORAGE_SAS_TOKEN`, else `AZURE_STORAGE_KEY`,
/// else an Entra ID token in `AZURE_STORAGE_TOKEN`. `AZURE_STORAGE_QUEUE_ENDPOINT` overrides
/// `https://<storage_account>.queue.core.windows.net` (e.g. for Azurite).
fn azure_thread(path: &Path, i: usize, t: &LegacyThread) -> Result<AzureQueueConfig, ConfigError> {
    let text = |key: &str| -> Result<String, ConfigError> {
        match t.rest.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(other) => Err(ConfigError::at(
                path,
                format!("threads[{i}].{key}"),
                format!("expected a non-empty string, got {other}"),
            )),
            None => Err(ConfigError::at(
                path,
                format!("threads[{i}].{key}"),
                "expected a string (AzureStorageQueue needs storage_account and queue_name)",
            )),
        }
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let connection_string = env("AZURE_STORAGE_CONNECTION_STRING");
    let cfg = AzureQueueConfig {
        name: format!("azure-{i}"),
        queue_url: None,
        account: Some(text("storage_account")?),
        queue: Some(text("queue_name")?),
        endpoint: env("AZURE_STORAGE_QUEUE_ENDPOINT"),
        sas: env("AZURE_STORAGE_SAS_TOKEN"),
        account_key: env("AZURE_STORAGE_KEY"),
        token_env: (connection_string.is_none() && env("AZURE_STORAGE_TOKEN").is_some())
            .then(|| "AZURE_STORAGE_TOKEN".to_string()),
        connection_string,
        create_queue: false,
        visibility_timeout: std::time::Duration::from_secs(300),
        max_dequeue_count: 5,
        batch: NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN),
        max_poll_interval: std::time::Duration::from_secs(5),
        message_encoding: MessageEncoding::Plain,
        format: crate::codec::PayloadFormat::Json,
        event: Some("prefect-event-router.message".into()),
    };
    crate::sources::azure::target::target(&cfg).map_err(|(key, message)| {
        ConfigError::at(path, format!("threads[{i}] ({key})"), message)
    })?;
    Ok(cfg)
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
                sources.push(SourceConfig::AzureQueue(azure_thread(path, i, t)?))
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
        templates: Default::default(),
        admin: Default::default(),
        prefect: PrefectConfig::default(),
        engine: EngineConfig::default(),
        http: HttpConfig::default(),
        sources,
        routes: vec![RouteConfig {
            name: LEGACY_ROUTE.into(),
            from: Vec::new(),
            when: None,
            trigger: None,
            batch: None,
            mode: Default::default(),
            settle_on: Default::default(),
            on_failure: Default::default(),
            max_runs: 3,
            finish_timeout: std::time::Duration::from_secs(3600),
            max_backlog: None,
            concurrency: None,
            action: ActionConfig::RunDeployment(RunDeploymentConfig {
                deployment: "{{ event.payload.flow_name }}/{{ event.payload.deployment_name }}"
                    .into(),
                // As the original router: no `payload` means no parameters.
                parameters: Value::String(
                    "{{ event.payload.payload if event.payload.payload is defined else {} }}"
                        .into(),
                ),
                tags: vec!["prefect-event-router".into()],
                flow_run_name: None,
                max_in_flight: None,
                rate_limit: None,
            }),
        }],
    })
}
