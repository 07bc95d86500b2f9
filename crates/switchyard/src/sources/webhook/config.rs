//! The `webhook` source's settings.

use serde::Deserialize;

/// A webhook source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Source name: the hook is `POST /hooks/<name>`.
    pub name: String,
    /// Event name (default `<name>.received`; a `ce-type` header overrides it).
    pub event: Option<String>,
    /// What the body is: `body` (default: any JSON, the payload) or `prefect_event` (a Prefect
    /// event as `POST /api/events` takes one: `event` is the name, `resource` the labels).
    #[serde(default)]
    pub format: WebhookFormat,
}

/// A webhook body's form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// Any JSON: the payload.
    #[default]
    Body,
    /// A Prefect event: `{"id"?, "occurred"?, "event", "resource", "payload"?, "related"?}`.
    PrefectEvent,
}
