//! The `kafka` source's settings.

use std::time::Duration;

use serde::Deserialize;

use crate::codec::{JournalMode, PayloadFormat};

/// A Kafka source.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Source name.
    pub name: String,
    /// `host:port[,host:port...]` (default `127.0.0.1:9092`).
    #[serde(default = "default_kafka_brokers")]
    pub brokers: String,
    /// Topics.
    pub topics: Vec<String>,
    /// Consumer group (default `switchyard`); instances in one group split the partitions.
    #[serde(default = "default_group")]
    pub group: String,
    /// Start a new group at the end of the topics instead of the beginning (default false).
    #[serde(default)]
    pub start_latest: bool,
    /// Group session timeout (default `10s`; Kafka's minimum is 6s).
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub session_timeout: Duration,
    /// Extra librdkafka settings (e.g. `security.protocol`, `sasl.mechanism`). Switchyard
    /// prefetches less than librdkafka's defaults (`fetch.max.bytes` and
    /// `max.partition.fetch.bytes` 1 MB, `queued.max.messages.kbytes` 4096); set them here to
    /// change that.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// How the body decodes (default `json`).
    #[serde(default)]
    pub format: PayloadFormat,
    /// Event name (default: the topic).
    pub event: Option<String>,
    /// `all` (default): every message is journaled before it is acknowledged; `routed`:
    /// only messages some route wants, the others acknowledged at once without a journal
    /// write (the broker's log is their record; the README's "Broker sources" has the trade-off).
    #[serde(default)]
    pub journal: JournalMode,
}

fn default_kafka_brokers() -> String {
    "127.0.0.1:9092".into()
}

fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_group() -> String {
    "switchyard".into()
}
