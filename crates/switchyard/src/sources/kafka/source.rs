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

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rdkafka::{ClientContext, Statistics};

use super::KafkaConfig;
use crate::codec::PayloadFormat;
use crate::sources::runtime::{Ack, Acker, Body, Connector, Delivery, Draft, Session};

/// Offsets in flight per partition.
#[derive(Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
}

type Tracker = Arc<Mutex<HashMap<(String, i32), Partition>>>;

/// How often librdkafka reports statistics, for `switchyard_source_lag` (unless the source's
/// `options` set `statistics.interval.ms`).
const STATS_INTERVAL_MS: &str = "5000";

/// Switchyard's prefetch defaults, each unless the source's `options` set it: fetches of 1 MB
/// and at most 4 MB queued per partition, instead of librdkafka's 50 MB fetches and 64 MB
/// queues. Measured on one partition (`benches/kafka_ingest.rs`, docs/benchmarks.md): peak
/// RSS 68–70 MB instead of 94–102 MB, at 80–98k instead of 74–80k events/s (the router
/// cannot use a deeper prefetch: it journals slower than librdkafka fetches).
/// `fetch.max.bytes` is left alone when `message.max.bytes` is set (librdkafka requires it to
/// be at least that).
const PREFETCH: [(&str, &str); 3] = [
    ("fetch.max.bytes", "1048576"),
    ("max.partition.fetch.bytes", "1048576"),
    ("queued.max.messages.kbytes", "4096"),
];

/// The consumer's context: turns librdkafka's statistics into the lag metric.
pub struct LagReporter {
    source: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // Partition -1 is librdkafka's internal "unassigned" queue.
                if *partition < 0 {
                    continue;
                }
                let lag = (p.consumer_lag >= 0).then_some(p.consumer_lag);
                crate::metrics::source_lag(&self.source, topic, *partition, lag);
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

type Kafka = StreamConsumer<LagReporter>;

/// Whether librdkafka takes every one of `options` (its name, and its value for that name),
/// checked as it sets them, without creating a client or reaching a broker. The answer never
/// repeats the value (it may be a password).
pub(crate) fn check_options(
    options: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let mut c = ClientConfig::new();
    for (k, v) in options {
        c.set(k, v);
    }
    match c.create_native_config() {
        Ok(_) => Ok(()),
        Err(rdkafka::error::KafkaError::ClientConfig(_, desc, key, value)) => {
            let desc = if value.is_empty() {
                desc
            } else {
                desc.replace(&value, "(the value given)")
            };
            Err(format!("librdkafka refuses {key:?}: {desc}"))
        }
        Err(e) => Err(format!("librdkafka refuses the options: {e}")),
    }
}

fn consumer(cfg: &KafkaConfig) -> Result<Kafka, String> {
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
        )
        .set("statistics.interval.ms", STATS_INTERVAL_MS);
    for (k, v) in PREFETCH {
        let own = cfg.options.contains_key(k)
            || (k == "fetch.max.bytes" && cfg.options.contains_key("message.max.bytes"));
        if !own {
            c.set(k, v);
        }
    }
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c.create_with_context(LagReporter {
        source: cfg.name.clone(),
    })
    .map_err(|e| format!("invalid Kafka settings: {e}"))
}

impl Connector for KafkaConfig {
    type Session = KafkaSession;

    fn format(&self) -> PayloadFormat {
        self.format
    }
    fn journal(&self) -> crate::codec::JournalMode {
        self.journal
    }

    async fn connect(&self) -> Result<KafkaSession, String> {
        let consumer = Arc::new(consumer(self)?);
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
        tracing::info!(source = %self.name, group = %self.group, topics = ?self.topics, "consuming Kafka");
        Ok(KafkaSession {
            cfg: self.clone(),
            consumer,
            tracker: Arc::default(),
        })
    }
}

/// One consumer-group membership.
pub struct KafkaSession {
    cfg: KafkaConfig,
    consumer: Arc<Kafka>,
    tracker: Tracker,
}

impl Session for KafkaSession {
    type Acker = KafkaAck;

    async fn next(&mut self) -> Result<Delivery<KafkaAck>, String> {
        let cfg = &self.cfg;
        let msg = self
            .consumer
            .recv()
            .await
            .map_err(|e| format!("Kafka receive failed: {e}"))?;
        let (topic, partition, offset) = (msg.topic().to_string(), msg.partition(), msg.offset());
        let mut draft = Draft::named(cfg.event.clone().unwrap_or_else(|| topic.clone()))
            .id(format!("{}:{topic}:{partition}:{offset}", cfg.name))
            .label("kafka.topic", &topic)
            .label("kafka.partition", partition.to_string());
        if let Some(key) = msg.key() {
            draft = draft.label("kafka.key", String::from_utf8_lossy(key));
        }
        if let Some(headers) = msg.headers() {
            for h in headers.iter() {
                if let Some(v) = h.value {
                    draft = draft.label(
                        format!("kafka.header.{}", h.key),
                        String::from_utf8_lossy(v),
                    );
                }
            }
        }
        let body = msg.payload().unwrap_or_default().to_vec();
        drop(msg);
        {
            let mut t = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
            let p = t.entry((topic.clone(), partition)).or_default();
            p.in_flight.insert(offset);
            p.next = p.next.max(offset + 1);
        }
        Ok(Delivery {
            body: Body::Encoded(body),
            draft,
            poison: None,
            ack: KafkaAck {
                tracker: Arc::clone(&self.tracker),
                consumer: Arc::clone(&self.consumer),
                topic,
                partition,
                offset,
            },
        })
    }
}

/// Offsets are tracked per event, so the order events end in does not matter: for each
/// partition the stored offset is the lowest one still in flight. An unfinished event stays in
/// flight, so the stored offset never passes it and the group reads it again after a restart.
pub struct KafkaAck {
    tracker: Tracker,
    consumer: Arc<Kafka>,
    topic: String,
    partition: i32,
    offset: i64,
}

impl Acker for KafkaAck {
    async fn settle(self, ack: Ack) -> Result<(), String> {
        if ack == Ack::Retry {
            return Ok(());
        }
        let mut t = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(p) = t.get_mut(&(self.topic.clone(), self.partition)) else {
            return Ok(());
        };
        p.in_flight.remove(&self.offset);
        let commit = p.in_flight.first().copied().unwrap_or(p.next);
        let mut list = TopicPartitionList::new();
        if list
            .add_partition_offset(&self.topic, self.partition, Offset::Offset(commit))
            .is_ok()
        {
            // Fails harmlessly for a partition this consumer no longer owns.
            let _ = self.consumer.store_offsets(&list);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_options;

    fn options(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn options_librdkafka_takes_pass() {
        let ok = options(&[
            ("fetch.max.bytes", "2097152"),
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.password", "hunter2"),
        ]);
        assert_eq!(check_options(&ok), Ok(()));
    }

    #[test]
    fn an_option_librdkafka_refuses_is_named_without_its_value() {
        let unknown = check_options(&options(&[("no.such.property", "x")])).unwrap_err();
        assert!(unknown.contains("\"no.such.property\""), "{unknown}");
        let bad =
            check_options(&options(&[("fetch.max.bytes", "s3cret-not-a-number")])).unwrap_err();
        assert!(bad.contains("\"fetch.max.bytes\""), "{bad}");
        assert!(
            !bad.contains("s3cret"),
            "the value must not be echoed: {bad}"
        );
    }
}
