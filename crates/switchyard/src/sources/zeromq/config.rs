//! The `zeromq` source's settings.

use serde::Deserialize;

use crate::codec::PayloadFormat;

/// A ZeroMQ source.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZmqConfig {
    /// Source name.
    pub name: String,
    /// `tcp://host:port`.
    pub endpoint: String,
    /// `sub` or `pull`.
    pub socket: ZmqSocket,
    /// Bind the endpoint instead of connecting to it (default false).
    #[serde(default)]
    pub bind: bool,
    /// SUB prefixes (default: everything).
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// How the body decodes (default `json`).
    #[serde(default)]
    pub format: PayloadFormat,
    /// Event name (default: the topic frame, else `<name>.message`).
    pub event: Option<String>,
}

/// ZeroMQ socket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ZmqSocket {
    /// Subscriber.
    Sub,
    /// Pull (pipeline).
    Pull,
}
