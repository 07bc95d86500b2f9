//! The `azure` source's settings.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use crate::codec::PayloadFormat;

/// An Azure Storage Queue source: messages are received with a visibility timeout (renewed
/// while the event is in flight) and deleted only once the event is settled; a message
/// dequeued more than `max_dequeue_count` times is dead-lettered and deleted.
///
/// The queue is named either by `queue_url`, by `connection_string` + `queue`, or by
/// `account` + `queue` (endpoint `https://<account>.queue.core.windows.net` unless `endpoint`
/// is given). Authentication, first that applies: a SAS (`sas`, or `SharedAccessSignature` in
/// the connection string, or already in `queue_url`); an account key (`account_key` or
/// `AccountKey`), from which Switchyard signs a short-lived account SAS itself; an Entra ID
/// access token read from the environment variable `token_env` (https only).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureQueueConfig {
    /// Source name.
    pub name: String,
    /// Full queue URL, e.g. `https://acct.queue.core.windows.net/orders` (may carry a SAS).
    pub queue_url: Option<String>,
    /// An Azure Storage connection string (`AccountName=...;AccountKey=...;QueueEndpoint=...`).
    pub connection_string: Option<String>,
    /// Storage account name.
    pub account: Option<String>,
    /// Queue name.
    pub queue: Option<String>,
    /// Queue service endpoint (default `https://<account>.queue.core.windows.net`).
    pub endpoint: Option<String>,
    /// A shared access signature (the query string, with or without a leading `?`).
    pub sas: Option<String>,
    /// The storage account key (base64), used to sign account SAS tokens.
    pub account_key: Option<String>,
    /// Name of an environment variable holding an Entra ID access token for
    /// `https://storage.azure.com/` (re-read before each request that needs one).
    pub token_env: Option<String>,
    /// Create the queue if it does not exist (default false).
    #[serde(default)]
    pub create_queue: bool,
    /// How long a received message stays invisible to other consumers; renewed at half this
    /// interval while its event is in flight (default `5m`, at least `1s`).
    #[serde(default = "default_visibility_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub visibility_timeout: Duration,
    /// A message received more often than this is dead-lettered and deleted (default 5).
    #[serde(default = "default_max_dequeue_count")]
    pub max_dequeue_count: u32,
    /// Messages per receive call, 1 to 32 (default 16).
    #[serde(default = "default_azure_batch")]
    pub batch: NonZeroUsize,
    /// Longest wait between polls of an empty queue: the wait starts at 100 ms and doubles
    /// while the queue stays empty (default `5s`).
    #[serde(default = "default_max_poll_interval", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub max_poll_interval: Duration,
    /// How the message text is encoded: `plain` (default) or `base64` (what Azure Functions
    /// and some SDKs write).
    #[serde(default)]
    pub message_encoding: MessageEncoding,
    /// How the body decodes (default `json`).
    #[serde(default)]
    pub format: PayloadFormat,
    /// Event name (default `<name>.message`).
    pub event: Option<String>,
}

/// How an Azure queue message's text is encoded.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MessageEncoding {
    /// The text is the body.
    #[default]
    Plain,
    /// The text is the base64 of the body.
    Base64,
}

fn default_visibility_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_max_dequeue_count() -> u32 {
    5
}

fn default_azure_batch() -> NonZeroUsize {
    NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN)
}

fn default_max_poll_interval() -> Duration {
    Duration::from_secs(5)
}
