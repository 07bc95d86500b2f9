//! Kafka (rdkafka, vendored librdkafka): a consumer group with at-least-once offsets.
//!
//! Auto-commit is on but offsets are *stored* by hand (`enable.auto.offset.store=false`): for
//! each partition the stored offset is the lowest one whose event is not settled yet, so a
//! commit never passes an event that is still in flight, even though events finish out of
//! order. After a crash or a rebalance the group resumes from there; events already settled
//! are recognised by their id, `<source>:<topic>:<partition>:<offset>`, and acknowledged
//! without a second run. Key and headers ride along as labels.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use switchyard_core::Event;
use tokio_util::sync::CancellationToken;

use super::KafkaConfig;
use crate::pipeline::Accepts;
use crate::sources::{Dispatcher, Disposition, reconnecting, undecodable};

/// Offsets in flight per partition.
#[derive(Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
}

type Tracker = Arc<Mutex<HashMap<(String, i32), Partition>>>;

/// Consumes until `stop`.
pub async fn run(cfg: KafkaConfig, dispatch: Dispatcher, stop: CancellationToken) {
    let accepts = Accepts::new(&dispatch, &cfg.name);
    reconnecting(&cfg.name, &stop, || {
        session(&cfg, &dispatch, &stop, &accepts)
    })
    .await;
    accepts.close().await;
}

fn consumer(cfg: &KafkaConfig) -> Result<StreamConsumer, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            if cfg.start_latest {
                "latest"
            } else {
                "earliest"
            },
        )
        .set(
            "session.timeout.ms",
            cfg.session_timeout.as_millis().to_string(),
        );
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c.create()
        .map_err(|e| format!("invalid Kafka settings: {e}"))
}

async fn session(
    cfg: &KafkaConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
    accepts: &Accepts,
) -> Result<(), String> {
    let consumer = Arc::new(consumer(cfg)?);
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
    tracing::info!(source = %cfg.name, group = %cfg.group, topics = ?cfg.topics, "consuming Kafka");
    let tracker: Tracker = Arc::default();
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = consumer.recv() => m.map_err(|e| format!("Kafka receive failed: {e}"))?,
        };
        let (topic, partition, offset) = (msg.topic().to_string(), msg.partition(), msg.offset());
        let id = format!("{}:{topic}:{partition}:{offset}", cfg.name);
        let body = msg.payload().unwrap_or_default().to_vec();
        let name = cfg.event.clone().unwrap_or_else(|| topic.clone());
        let mut labels = vec![
            ("kafka.topic".to_string(), topic.clone()),
            ("kafka.partition".into(), partition.to_string()),
        ];
        if let Some(key) = msg.key() {
            labels.push((
                "kafka.key".into(),
                String::from_utf8_lossy(key).into_owned(),
            ));
        }
        if let Some(headers) = msg.headers() {
            for h in headers.iter() {
                if let Some(v) = h.value {
                    labels.push((
                        format!("kafka.header.{}", h.key),
                        String::from_utf8_lossy(v).into_owned(),
                    ));
                }
            }
        }
        drop(msg);
        let make = |payload| {
            let mut b = Event::builder(&cfg.name, &name, payload).id(&id);
            for (k, v) in &labels {
                b = b.label(k, v);
            }
            b.build()
        };
        {
            let mut t = tracker.lock().unwrap_or_else(PoisonError::into_inner);
            let p = t.entry((topic.clone(), partition)).or_default();
            p.in_flight.insert(offset);
            p.next = p.next.max(offset + 1);
        }
        let settle = {
            let (tracker, consumer, topic) =
                (Arc::clone(&tracker), Arc::clone(&consumer), topic.clone());
            move |done: bool| {
                let mut t = tracker.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(p) = t.get_mut(&(topic.clone(), partition)) else {
                    return;
                };
                if !done {
                    return; // stays in flight: the stored offset cannot pass it
                }
                p.in_flight.remove(&offset);
                let commit = p.in_flight.first().copied().unwrap_or(p.next);
                let mut list = TopicPartitionList::new();
                if list
                    .add_partition_offset(&topic, partition, Offset::Offset(commit))
                    .is_ok()
                {
                    // Fails harmlessly for a partition this consumer no longer owns.
                    let _ = consumer.store_offsets(&list);
                }
            }
        };
        match cfg.format.decode(&body) {
            Err(reason) => {
                dispatch
                    .reject(make(undecodable(&body)), &reason)
                    .await
                    .map_err(|e| e.to_string())?;
                settle(true);
            }
            Ok(payload) => {
                // Offsets are tracked per event, so the order accepts end in does not matter;
                // an event not accepted is never passed by the stored offset, so the group
                // reads it again after a restart.
                accepts
                    .submit(make(payload), move |receipt| async move {
                        let done = matches!(
                            receipt.outcome().await,
                            Disposition::Settled { .. } | Disposition::AlreadySettled
                        );
                        settle(done);
                    })
                    .await?;
            }
        }
    }
}
