//! AMQP 0.9.1 (RabbitMQ): manual acknowledgement with a bounded prefetch.
//!
//! A delivery is acked once its event is settled in the journal; an unfinished one is nack'd
//! with requeue (and anything unacknowledged is requeued by the broker if the connection
//! drops). A body that does not decode is dead-lettered in the journal and rejected without
//! requeue, so a queue with a dead-letter exchange receives it as well.
//!
//! The event id is `<source>:<message-id>` when the publisher sets `message_id` (set it: that
//! is what makes a redelivery the same event); otherwise a name derived from the queue, routing
//! key and body, so an identical redelivered message is still recognised.

use futures::StreamExt;
use lapin::Acker as Delivered;
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, Consumer};
use uuid::Uuid;

use super::AmqpConfig;
use crate::codec::PayloadFormat;
use crate::sources::runtime::{Ack, Acker, Body, Connector, Delivery, Draft, Session};

fn event_id(cfg: &AmqpConfig, delivery: &AmqpDelivery) -> String {
    match delivery.properties.message_id() {
        Some(id) if !id.as_str().is_empty() => format!("{}:{}", cfg.name, id.as_str()),
        _ => {
            let mut key = Vec::with_capacity(delivery.data.len() + 64);
            key.extend_from_slice(cfg.queue.as_bytes());
            key.push(0);
            key.extend_from_slice(delivery.routing_key.as_str().as_bytes());
            key.push(0);
            key.extend_from_slice(&delivery.data);
            format!(
                "{}:body-{}",
                cfg.name,
                Uuid::new_v5(&Uuid::NAMESPACE_OID, &key)
            )
        }
    }
}

impl Connector for AmqpConfig {
    type Session = AmqpSession;

    fn format(&self) -> PayloadFormat {
        self.format
    }

    async fn connect(&self) -> Result<AmqpSession, String> {
        let conn = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(|e| format!("cannot connect to AMQP broker: {e}"))?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| format!("cannot set prefetch: {e}"))?;
        if self.declare {
            let options = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .queue_declare(self.queue.as_str().into(), options, FieldTable::default())
                .await
                .map_err(|e| format!("cannot declare queue {}: {e}", self.queue))?;
        }
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                format!("switchyard-{}", self.name).as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("cannot consume {}: {e}", self.queue))?;
        tracing::info!(source = %self.name, queue = %self.queue, prefetch = self.prefetch, "consuming AMQP queue");
        Ok(AmqpSession {
            cfg: self.clone(),
            conn,
            channel,
            consumer,
        })
    }

    fn reply_timeout(&self) -> std::time::Duration {
        self.reply_timeout
    }
}

/// One AMQP connection with its consumer.
pub struct AmqpSession {
    cfg: AmqpConfig,
    conn: Connection,
    /// The consumer's channel, which replies are published on.
    channel: lapin::Channel,
    consumer: Consumer,
}

impl Session for AmqpSession {
    type Acker = AmqpAck;

    async fn next(&mut self) -> Result<Delivery<AmqpAck>, String> {
        let delivery = match self.consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(format!("consume failed: {e}")),
            None => return Err("the broker ended the consumer".into()),
        };
        let cfg = &self.cfg;
        let id = event_id(cfg, &delivery);
        if delivery.redelivered {
            tracing::info!(source = %cfg.name, event_id = %id, "message redelivered by the broker");
        }
        let routing_key = delivery.routing_key.as_str().to_string();
        let reply = delivery
            .properties
            .reply_to()
            .as_ref()
            .filter(|to| !to.as_str().is_empty())
            .map(|to| AmqpReply {
                channel: self.channel.clone(),
                to: to.as_str().to_string(),
                correlation_id: delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.as_str().to_string()),
            });
        let draft = Draft::named(cfg.event.clone().unwrap_or_else(|| routing_key.clone()))
            .id(id)
            .label("amqp.queue", &cfg.queue)
            .label("amqp.routing_key", routing_key);
        Ok(Delivery {
            body: Body::Encoded(delivery.data),
            draft,
            poison: None,
            ack: AmqpAck(delivery.acker, reply),
        })
    }

    async fn close(self) {
        let _ = self
            .conn
            .close(200, "switchyard shutting down".into())
            .await;
    }
}

/// Acks a settled delivery, nacks an unfinished one with requeue, rejects a dead-lettered one
/// without requeue (so a queue's own dead-letter exchange receives it as well).
pub struct AmqpAck(Delivered, Option<AmqpReply>);

/// Where a message's `reply_to` asks its outcome to go.
struct AmqpReply {
    channel: lapin::Channel,
    to: String,
    correlation_id: Option<String>,
}

impl crate::sources::runtime::Reply for AmqpReply {
    fn send(
        self: Box<Self>,
        body: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let mut props =
                lapin::BasicProperties::default().with_content_type("application/json".into());
            if let Some(c) = &self.correlation_id {
                props = props.with_correlation_id(c.as_str().into());
            }
            self.channel
                .basic_publish(
                    "".into(),
                    self.to.as_str().into(),
                    lapin::options::BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot publish the reply to {}: {e}", self.to))
        })
    }
}

impl Acker for AmqpAck {
    fn reply(&mut self) -> Option<Box<dyn crate::sources::runtime::Reply>> {
        self.1
            .take()
            .map(|r| Box::new(r) as Box<dyn crate::sources::runtime::Reply>)
    }

    async fn settle(self, ack: Ack) -> Result<(), String> {
        let done = match ack {
            Ack::Done => self.0.ack(BasicAckOptions::default()).await,
            Ack::Retry => {
                self.0
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await
            }
            Ack::Dead => self.0.reject(BasicRejectOptions { requeue: false }).await,
        };
        done.map(|_| ())
            .map_err(|e| format!("AMQP acknowledgement failed: {e}"))
    }
}
