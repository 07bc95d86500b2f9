//! Sources: where events come from.
//!
//! A source turns what it receives into events and hands them to the pipeline's
//! [`Dispatcher`] (see [`crate::pipeline`] for what accepting means); the returned
//! [`Receipt`] resolves once every route has settled the event durably — the moment an
//! acknowledging source commits its offset or acks its message. Sources know nothing of
//! routes, triggers or actions.

pub mod amqp;
pub mod azure;
pub mod kafka;
pub mod mqtt;
pub mod nats;
pub mod outcome;
pub mod redis_streams;
pub mod runtime;
pub mod stdin;
pub mod webhook;
pub mod zeromq;

pub use crate::codec::{PayloadFormat, parse_json, undecodable};
pub use crate::pipeline::{Dispatcher, Disposition, Receipt, Refused};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What the registry needs of a connector's settings. A connector is a folder under
/// `sources/` (its `config.rs`, and its `source.rs` behind its cargo feature) plus one line
/// in [`registry!`] below.
pub trait SourceSpec {
    /// The source's name (what routes' `from` refers to).
    fn name(&self) -> &str;
    /// What `check` prints about it (no secret).
    fn describe(&self) -> String;
    /// Settings serde cannot check: `(key, message)`.
    fn check(&self) -> Result<(), (&'static str, String)>;
    /// The cargo feature it needs, when this build lacks it.
    fn missing_feature(&self) -> Option<&'static str>;
    /// Starts it until `stop` (webhooks are served together instead, see [`webhook::serve`]).
    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>);
}

/// The connector registry: one line per connector.
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)*) => {
        /// One source, tagged by `type`.
        #[derive(Debug, Clone, PartialEq, serde::Deserialize, schemars::JsonSchema)]
        #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
        pub enum SourceConfig {
            $($(#[$doc])* $variant($ty),)*
        }

        impl SourceConfig {
            /// The connector's settings.
            pub fn spec(&self) -> &dyn SourceSpec {
                match self {
                    $(Self::$variant(c) => c,)*
                }
            }
        }
    };
}

registry! {
    /// JSON lines on standard input.
    Stdin(stdin::StdinConfig),
    /// `POST /hooks/<name>` on the HTTP server.
    Webhook(webhook::WebhookConfig),
    /// A Redis stream, read through a consumer group (feature `redis-streams`).
    RedisStreams(redis_streams::RedisStreamsConfig),
    /// NATS JetStream through a durable pull consumer, or core NATS (feature `nats`).
    Nats(nats::NatsConfig),
    /// An AMQP 0.9.1 (RabbitMQ) queue (feature `amqp`).
    Amqp(amqp::AmqpConfig),
    /// MQTT topics, QoS 1 on a persistent session (feature `mqtt`).
    Mqtt(mqtt::MqttConfig),
    /// A ZeroMQ SUB or PULL socket, at most once (feature `zeromq`).
    Zeromq(zeromq::ZmqConfig),
    /// Kafka topics through a consumer group (feature `kafka`).
    Kafka(kafka::KafkaConfig),
    /// An Azure Storage Queue (feature `azure`).
    AzureQueue(azure::AzureQueueConfig),
}

impl SourceConfig {
    /// The source's name (what routes' `from` refers to).
    pub fn name(&self) -> &str {
        self.spec().name()
    }

    /// Whether it is a webhook (served together by the HTTP server, never restarted alone).
    pub fn is_webhook(&self) -> bool {
        matches!(self, Self::Webhook(_))
    }
}

/// Starts the source a config describes, until `stop`.
pub fn spawn(
    cfg: &SourceConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
    set: &mut JoinSet<()>,
) {
    cfg.spec().spawn(dispatch, stop, set);
}

/// A URL's scheme is one of `allowed` and something follows it: `(key "url", message)`.
pub fn check_url(url: &str, allowed: &[&str]) -> Result<(), (&'static str, String)> {
    let ok = url
        .split_once("://")
        .is_some_and(|(s, rest)| allowed.contains(&s) && !rest.is_empty());
    if ok {
        return Ok(());
    }
    Err((
        "url",
        format!(
            "expected a URL starting with {}, got {:?}",
            allowed.join("://, ") + "://",
            crate::secrets::url(url)
        ),
    ))
}
