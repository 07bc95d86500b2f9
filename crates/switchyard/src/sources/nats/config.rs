//! The `nats` source's settings.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use crate::codec::{JournalMode, PayloadFormat};

/// A NATS source: JetStream (durable pull consumer, explicit ack, nak with delay) or core NATS
/// subjects (at most once: nothing is redelivered).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Source name.
    pub name: String,
    /// Server URL (default `nats://127.0.0.1:4222`).
    #[serde(default = "default_nats_url")]
    pub url: String,
    /// `jetstream` (default) or `core`.
    #[serde(default)]
    pub mode: NatsMode,
    /// JetStream stream name (required for `jetstream`).
    pub stream: Option<String>,
    /// Subjects: the stream's subjects when it is created, or the core subscriptions.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Only these messages of the stream (JetStream filter subject).
    pub filter_subject: Option<String>,
    /// Durable consumer name (default `switchyard-<name>`).
    pub durable: Option<String>,
    /// Redelivery after this long without an ack (default `30s`).
    #[serde(default = "default_ack_wait", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub ack_wait: Duration,
    /// Unacknowledged messages at once (default 256).
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: NonZeroUsize,
    /// How the body decodes (default `json`).
    #[serde(default)]
    pub format: PayloadFormat,
    /// Event name (default: the subject).
    pub event: Option<String>,
    /// `all` (default): every message is journaled before it is acknowledged; `routed`:
    /// only messages some route wants, the others acknowledged at once without a journal
    /// write (the broker's log is their record; the README's "Broker sources" has the trade-off).
    #[serde(default)]
    pub journal: JournalMode,
}

/// NATS delivery.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NatsMode {
    /// JetStream, at least once.
    #[default]
    Jetstream,
    /// Core NATS, at most once.
    Core,
}

fn default_nats_url() -> String {
    "nats://127.0.0.1:4222".into()
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_max_ack_pending() -> NonZeroUsize {
    NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN)
}
