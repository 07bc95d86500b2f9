//! The `redis_streams` source's settings.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use crate::codec::{JournalMode, PayloadFormat};

/// A Redis Streams source: `XREADGROUP` through a consumer group, `XACK` once the event is
/// settled, entries left pending by a dead consumer reclaimed after `claim_idle`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamsConfig {
    /// Source name.
    pub name: String,
    /// `redis://[user:pass@]host:port[/db]` (default `redis://127.0.0.1:6379`).
    #[serde(default = "default_redis_url")]
    pub url: String,
    /// The stream key.
    pub stream: String,
    /// Consumer group (created with MKSTREAM if missing; default `switchyard`).
    #[serde(default = "default_group")]
    pub group: String,
    /// This instance's consumer name; keep it stable across restarts so its pending entries
    /// are resumed (default: the source name).
    pub consumer: Option<String>,
    /// Where a newly created group starts: `earliest` (default: every entry already in the
    /// stream) or `latest` (only entries added after).
    #[serde(default)]
    pub start: StreamStart,
    /// Entries per read (default 64).
    #[serde(default = "default_batch")]
    pub batch: NonZeroUsize,
    /// Pending entries idle this long are claimed from their consumer (default `60s`).
    #[serde(default = "default_claim_idle", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub claim_idle: Duration,
    /// Field holding the body (default `payload`); without it, all fields form the payload.
    #[serde(default = "default_payload_field")]
    pub payload_field: String,
    /// How the body decodes (default `json`).
    #[serde(default)]
    pub format: PayloadFormat,
    /// Event name (default `<name>.message`).
    pub event: Option<String>,
    /// `all` (default): every message is journaled before it is acknowledged; `routed`:
    /// only messages some route wants, the others acknowledged at once without a journal
    /// write (the broker's log is their record; the README's "Broker sources" has the trade-off).
    #[serde(default)]
    pub journal: JournalMode,
}

/// Where a new consumer group starts.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StreamStart {
    /// The first entry in the stream.
    #[default]
    Earliest,
    /// Entries added from now on.
    Latest,
}

fn default_redis_url() -> String {
    "redis://127.0.0.1:6379".into()
}

fn default_batch() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN)
}

fn default_claim_idle() -> Duration {
    Duration::from_secs(60)
}

fn default_payload_field() -> String {
    "payload".into()
}

fn default_group() -> String {
    "switchyard".into()
}
