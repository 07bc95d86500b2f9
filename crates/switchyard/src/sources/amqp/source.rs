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
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use switchyard_core::Event;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::AmqpConfig;
use crate::pipeline::Accepts;
use crate::sources::{Dispatcher, Disposition, reconnecting, undecodable};

/// Consumes the queue until `stop`.
pub async fn run(cfg: AmqpConfig, dispatch: Dispatcher, stop: CancellationToken) {
    let accepts = Accepts::new(&dispatch, &cfg.name);
    reconnecting(&cfg.name, &stop, || {
        session(&cfg, &dispatch, &stop, &accepts)
    })
    .await;
    accepts.close().await;
}

fn event_id(cfg: &AmqpConfig, delivery: &lapin::message::Delivery) -> String {
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

async fn session(
    cfg: &AmqpConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
    accepts: &Accepts,
) -> Result<(), String> {
    let conn = Connection::connect(&cfg.url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect to AMQP broker: {e}"))?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    channel
        .basic_qos(cfg.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| format!("cannot set prefetch: {e}"))?;
    if cfg.declare {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(cfg.queue.as_str().into(), options, FieldTable::default())
            .await
            .map_err(|e| format!("cannot declare queue {}: {e}", cfg.queue))?;
    }
    let mut consumer = channel
        .basic_consume(
            cfg.queue.as_str().into(),
            format!("switchyard-{}", cfg.name).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot consume {}: {e}", cfg.queue))?;
    tracing::info!(source = %cfg.name, queue = %cfg.queue, prefetch = cfg.prefetch, "consuming AMQP queue");
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => {
                let _ = conn.close(200, "switchyard shutting down".into()).await;
                return Ok(());
            }
            d = consumer.next() => d,
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(format!("consume failed: {e}")),
            None => return Err("the broker ended the consumer".into()),
        };
        let id = event_id(cfg, &delivery);
        let routing_key = delivery.routing_key.as_str().to_string();
        let name = cfg.event.clone().unwrap_or_else(|| routing_key.clone());
        let make = |payload| {
            Event::builder(&cfg.name, &name, payload)
                .id(&id)
                .label("amqp.queue", &cfg.queue)
                .label("amqp.routing_key", &routing_key)
                .build()
        };
        match cfg.format.decode(&delivery.data) {
            Err(reason) => {
                dispatch
                    .reject(make(undecodable(&delivery.data)), &reason)
                    .await
                    .map_err(|e| e.to_string())?;
                delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                    .map_err(|e| format!("reject failed: {e}"))?;
            }
            Ok(payload) => {
                if delivery.redelivered {
                    tracing::info!(source = %cfg.name, event_id = %id, "message redelivered by the broker");
                }
                accepts
                    .submit(make(payload), move |receipt| async move {
                        let done = match receipt.outcome().await {
                            Disposition::Settled { .. } | Disposition::AlreadySettled => {
                                delivery.acker.ack(BasicAckOptions::default()).await
                            }
                            Disposition::Unfinished => {
                                delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
                            }
                        };
                        if let Err(e) = done {
                            tracing::warn!(event_id = %id, error = %e, "AMQP ack failed; the broker will redeliver");
                        }
                    })
                    .await?;
            }
        }
    }
}
