//! The `amqp` source's settings.

use serde::Deserialize;

use crate::codec::PayloadFormat;

/// An AMQP 0.9.1 source: manual acks, bounded prefetch; a message that does not decode is
/// dead-lettered in the journal and rejected without requeue (so a queue with a
/// dead-letter exchange gets it too).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// Source name.
    pub name: String,
    /// `amqp://user:pass@host:port/vhost` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    #[serde(default = "default_amqp_url")]
    pub url: String,
    /// Queue to consume.
    pub queue: String,
    /// Declare the queue (durable) if it does not exist (default true).
    #[serde(default = "default_true")]
    pub declare: bool,
    /// Unacknowledged deliveries at once (default 64).
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// How the body decodes (default `json`).
    #[serde(default)]
    pub format: PayloadFormat,
    /// Event name (default: the routing key).
    pub event: Option<String>,
    /// A message with a `reply_to` property gets its outcome published there (to the default
    /// exchange, with its `correlation_id`), once its runs have ended or this long after it
    /// was acknowledged, whichever is first (default `10m`; `1s` to `1d`). The body is the
    /// JSON a webhook's `respond: finished` answers with.
    #[serde(default = "default_reply_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub reply_timeout: std::time::Duration,
}

fn default_reply_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(600)
}

fn default_amqp_url() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".into()
}

fn default_true() -> bool {
    true
}

fn default_prefetch() -> u16 {
    64
}
