//! NATS: JetStream through a durable pull consumer (at least once), or core NATS subjects (at
//! most once — core NATS keeps nothing, so a message that arrives while Switchyard is down or
//! that it cannot journal is gone).
//!
//! JetStream messages are acknowledged once their event is settled in the journal; an event
//! left unfinished (shutdown) is nak'd with a delay so it comes back after the restart. The
//! event id is `<source>:<stream>:<stream sequence>`, stable across redeliveries.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use futures::stream::SelectAll;

use super::{NatsConfig, NatsMode};
use crate::codec::PayloadFormat;
use crate::sources::runtime::{Ack, Acker, Body, Connector, Delivery, Draft, Session};

async fn connect(cfg: &NatsConfig) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name(format!("switchyard {}", cfg.name))
        .connect(cfg.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", crate::secrets::url(&cfg.url)))
}

fn draft(cfg: &NatsConfig, subject: &str) -> Draft {
    Draft::named(cfg.event.clone().unwrap_or_else(|| subject.to_string()))
        .label("nats.subject", subject)
}

impl Connector for NatsConfig {
    type Session = NatsSession;

    fn format(&self) -> PayloadFormat {
        self.format
    }
    fn journal(&self) -> crate::codec::JournalMode {
        self.journal
    }

    async fn connect(&self) -> Result<NatsSession, String> {
        match self.mode {
            NatsMode::Jetstream => jetstream(self).await,
            NatsMode::Core => core(self).await,
        }
    }
}

async fn jetstream(cfg: &NatsConfig) -> Result<NatsSession, String> {
    let js = jetstream::new(connect(cfg).await?);
    let stream_name = cfg.stream.clone().unwrap_or_default();
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: cfg.subjects.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot open stream {stream_name}: {e}"))?;
    let durable = cfg
        .durable
        .clone()
        .unwrap_or_else(|| format!("switchyard-{}", cfg.name));
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: cfg.ack_wait,
                max_ack_pending: cfg.max_ack_pending.get() as i64,
                filter_subject: cfg.filter_subject.clone().unwrap_or_default(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot open consumer {durable}: {e}"))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot pull messages: {e}"))?;
    tracing::info!(source = %cfg.name, stream = %stream_name, %durable, "consuming JetStream");
    Ok(NatsSession {
        cfg: cfg.clone(),
        read: Read::Jetstream {
            stream: stream_name,
            messages: Box::new(messages),
        },
    })
}

async fn core(cfg: &NatsConfig) -> Result<NatsSession, String> {
    let client = connect(cfg).await?;
    let mut subs = Vec::new();
    for subject in &cfg.subjects {
        subs.push(
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?,
        );
    }
    tracing::info!(source = %cfg.name, subjects = ?cfg.subjects, "subscribed to core NATS (at most once)");
    Ok(NatsSession {
        cfg: cfg.clone(),
        read: Read::Core(futures::stream::select_all(subs)),
    })
}

/// One NATS connection: a JetStream pull consumer, or core subscriptions.
pub struct NatsSession {
    cfg: NatsConfig,
    read: Read,
}

enum Read {
    Jetstream {
        stream: String,
        messages: Box<jetstream::consumer::pull::Stream>,
    },
    Core(SelectAll<async_nats::Subscriber>),
}

impl Session for NatsSession {
    type Acker = NatsAck;

    async fn next(&mut self) -> Result<Delivery<NatsAck>, String> {
        let cfg = &self.cfg;
        match &mut self.read {
            Read::Jetstream { stream, messages } => {
                let msg = match messages.next().await {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(format!("pull failed: {e}")),
                    None => return Err("the message stream ended".into()),
                };
                let seq = msg
                    .info()
                    .map(|i| i.stream_sequence)
                    .map_err(|e| format!("message without JetStream info: {e}"))?;
                Ok(Delivery {
                    body: Body::Encoded(msg.payload.to_vec()),
                    draft: draft(cfg, msg.subject.as_str())
                        .id(format!("{}:{stream}:{seq}", cfg.name)),
                    poison: None,
                    ack: NatsAck::Jetstream {
                        msg: Box::new(msg),
                        retry_in: cfg.ack_wait.min(Duration::from_secs(5)),
                    },
                })
            }
            Read::Core(subs) => {
                let msg = subs.next().await.ok_or("the subscription ended")?;
                Ok(Delivery {
                    body: Body::Encoded(msg.payload.to_vec()),
                    draft: draft(cfg, msg.subject.as_str()),
                    poison: None,
                    ack: NatsAck::Core,
                })
            }
        }
    }
}

/// JetStream: ack a settled or dead-lettered message, nak an unfinished one with a delay so it
/// comes back after the restart. Core NATS: nothing to acknowledge.
pub enum NatsAck {
    /// A JetStream message.
    Jetstream {
        /// The message.
        msg: Box<jetstream::Message>,
        /// The nak's delay.
        retry_in: Duration,
    },
    /// A core NATS message.
    Core,
}

impl Acker for NatsAck {
    async fn settle(self, ack: Ack) -> Result<(), String> {
        let Self::Jetstream { msg, retry_in } = self else {
            return Ok(());
        };
        let kind = match ack {
            Ack::Done | Ack::Dead => AckKind::Ack,
            Ack::Retry => AckKind::Nak(Some(retry_in)),
        };
        msg.ack_with(kind)
            .await
            .map_err(|e| format!("JetStream ack failed: {e}"))
    }
}
