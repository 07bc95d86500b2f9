//! The `mqtt` source's settings.

use serde::Deserialize;

use crate::codec::PayloadFormat;

/// An MQTT source.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Source name.
    pub name: String,
    /// `mqtt://host[:port]` (default `mqtt://127.0.0.1:1883`).
    #[serde(default = "default_mqtt_url")]
    pub url: String,
    /// Topic filters (wildcards `+` and `#` allowed).
    pub topics: Vec<String>,
    /// Client id; keep it fixed so the broker keeps the session (default `switchyard-<name>`).
    pub client_id: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// JSON pointer to a stable id in the payload (e.g. `/id`), so redeliveries are recognised.
    pub id_field: Option<String>,
    /// How the body decodes (default `json`).
    #[serde(default)]
    pub format: PayloadFormat,
    /// Event name (default: the topic).
    pub event: Option<String>,
}

fn default_mqtt_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
