//! Sources: where events come from.
//!
//! A source turns what it receives into events and hands them to the pipeline's
//! [`Dispatcher`] (see [`crate::pipeline`] for what accepting means); the returned
//! [`Receipt`] resolves once every route has settled the event durably — the moment an
//! acknowledging source commits its offset or acks its message. Sources know nothing of
//! routes, triggers or actions.

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis-streams")]
pub mod redis_streams;
pub mod stdin;
pub mod webhook;
#[cfg(feature = "zeromq")]
pub mod zeromq;

pub use crate::codec::{PayloadFormat, Undecoded, parse_json, undecodable};
pub use crate::pipeline::{Dispatcher, Disposition, Receipt, Refused};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::SourceConfig;

/// The connector registry: starts the source a config describes, until `stop`. Webhooks are
/// served together by one HTTP server ([`webhook::serve`]) and are not started here.
pub fn spawn(
    cfg: &SourceConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
    set: &mut JoinSet<()>,
) {
    let (d, s) = (dispatch.clone(), stop.clone());
    match cfg {
        SourceConfig::Stdin(c) => {
            let c = c.clone();
            set.spawn(async move { stdin::run(c, std::io::stdin(), d, s).await });
        }
        SourceConfig::Webhook(_) => {}
        #[cfg(feature = "redis-streams")]
        SourceConfig::RedisStreams(c) => drop(set.spawn(redis_streams::run(c.clone(), d, s))),
        #[cfg(feature = "nats")]
        SourceConfig::Nats(c) => drop(set.spawn(nats::run(c.clone(), d, s))),
        #[cfg(feature = "amqp")]
        SourceConfig::Amqp(c) => drop(set.spawn(amqp::run(c.clone(), d, s))),
        #[cfg(feature = "mqtt")]
        SourceConfig::Mqtt(c) => drop(set.spawn(mqtt::run(c.clone(), d, s))),
        #[cfg(feature = "kafka")]
        SourceConfig::Kafka(c) => drop(set.spawn(kafka::run(c.clone(), d, s))),
        #[cfg(feature = "azure")]
        SourceConfig::AzureQueue(c) => drop(set.spawn(azure::run(c.clone(), d, s))),
        #[cfg(feature = "zeromq")]
        SourceConfig::Zeromq(c) => drop(set.spawn(zeromq::run(c.clone(), d, s))),
        // Rejected when the config is loaded (the feature is missing from this build).
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

/// Runs `session` until it returns `Ok` (shutdown) — after an error, waits with exponential
/// backoff (0.5 s doubling to 30 s) and starts a new session. A session that ran for a while
/// resets the backoff.
pub async fn reconnecting<F, Fut>(
    source: &str,
    stop: &tokio_util::sync::CancellationToken,
    mut session: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        let started = tokio::time::Instant::now();
        match session().await {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() > std::time::Duration::from_secs(30) {
                    backoff = std::time::Duration::from_millis(500);
                }
                tracing::warn!(source, error = %e, retry_in_ms = backoff.as_millis() as u64, "source disconnected; reconnecting");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}
