//! Redis Streams: a consumer group, `XACK` only once an event is settled in the journal.
//!
//! On each (re)connection the consumer first re-reads its own pending entries (id `0`) — what
//! it had received but not acknowledged before a crash — then new ones (`>`). Entries another
//! consumer left pending longer than `claim_idle` are taken over with `XAUTOCLAIM`. The event
//! id is `<source>:<stream>:<entry id>`, so a re-read entry is the same event and finds the run
//! it already started.

use std::collections::{HashMap, VecDeque};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use serde_json::{Map, Value};

use super::{RedisStreamsConfig, StreamStart};
use crate::codec::PayloadFormat;
use crate::sources::runtime::{Ack, Acker, Body, Connector, Delivery, Draft, Session};

impl Connector for RedisStreamsConfig {
    type Session = RedisSession;

    fn format(&self) -> PayloadFormat {
        self.format
    }
    fn journal(&self) -> crate::codec::JournalMode {
        self.journal
    }

    async fn connect(&self) -> Result<RedisSession, String> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| format!("invalid Redis URL: {e}"))?;
        let connect = || async {
            client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", crate::secrets::url(&self.url)))
        };
        // Reads block; acknowledgements use their own connection so they are never stuck
        // behind one.
        let mut reader = connect().await?;
        let acker = connect().await?;
        let start = match self.start {
            StreamStart::Earliest => "0",
            StreamStart::Latest => "$",
        };
        let created: redis::RedisResult<()> = reader
            .xgroup_create_mkstream(&self.stream, &self.group, start)
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(format!("cannot create consumer group {}: {e}", self.group));
        }
        let consumer = self.consumer.clone().unwrap_or_else(|| self.name.clone());
        tracing::info!(source = %self.name, stream = %self.stream, group = %self.group, %consumer, "reading Redis stream");
        Ok(RedisSession {
            cfg: self.clone(),
            consumer,
            reader,
            acker,
            cursor: "0".into(), // our own pending entries first
            last_claim: tokio::time::Instant::now(),
            entries: VecDeque::new(),
        })
    }
}

/// One consumer of the group: a reading connection, an acknowledging one, and the entries of
/// the last read not handed over yet.
pub struct RedisSession {
    cfg: RedisStreamsConfig,
    consumer: String,
    reader: MultiplexedConnection,
    acker: MultiplexedConnection,
    cursor: String,
    last_claim: tokio::time::Instant,
    entries: VecDeque<StreamId>,
}

impl RedisSession {
    /// Takes over entries another consumer left pending longer than `claim_idle`.
    async fn claim(&mut self) -> Result<(), String> {
        let cfg = &self.cfg;
        let opts = StreamAutoClaimOptions::default().count(cfg.batch.get());
        let idle_ms = u64::try_from(cfg.claim_idle.as_millis()).unwrap_or(u64::MAX);
        let claimed: redis::streams::StreamAutoClaimReply = self
            .reader
            .xautoclaim_options(
                &cfg.stream,
                &cfg.group,
                &self.consumer,
                idle_ms,
                "0-0",
                opts,
            )
            .await
            .map_err(|e| format!("XAUTOCLAIM failed: {e}"))?;
        if !claimed.claimed.is_empty() {
            tracing::info!(source = %cfg.name, entries = claimed.claimed.len(), "claimed entries left pending by another consumer");
        }
        self.entries.extend(claimed.claimed);
        Ok(())
    }

    async fn read(&mut self) -> Result<(), String> {
        let cfg = &self.cfg;
        let opts = StreamReadOptions::default()
            .group(&cfg.group, &self.consumer)
            .count(cfg.batch.get())
            .block(1000);
        let (keys, ids) = ([cfg.stream.as_str()], [self.cursor.as_str()]);
        let reply: StreamReadReply = self
            .reader
            .xread_options(&keys, &ids, &opts)
            .await
            .map_err(|e| format!("XREADGROUP failed: {e}"))?;
        let entries: Vec<StreamId> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
        if self.cursor != ">" {
            match entries.last() {
                // Pending entries are re-read in pages; an empty page means none are left.
                Some(last) => self.cursor = last.id.clone(),
                None => self.cursor = ">".into(),
            }
        }
        self.entries.extend(entries);
        Ok(())
    }
}

impl Session for RedisSession {
    type Acker = RedisAck;

    async fn next(&mut self) -> Result<Delivery<RedisAck>, String> {
        loop {
            if let Some(entry) = self.entries.pop_front() {
                let ack = RedisAck {
                    conn: self.acker.clone(),
                    stream: self.cfg.stream.clone(),
                    group: self.cfg.group.clone(),
                    entry_id: entry.id.clone(),
                };
                let (body, draft) = delivery(&self.cfg, entry);
                return Ok(Delivery {
                    body,
                    draft,
                    poison: None,
                    ack,
                });
            }
            if self.last_claim.elapsed() >= self.cfg.claim_idle / 2 {
                self.last_claim = tokio::time::Instant::now();
                self.claim().await?;
                continue;
            }
            self.read().await?;
        }
    }
}

/// `XACK` once the event is settled or dead-lettered; an unfinished one is left pending, to be
/// re-read on restart or claimed by another consumer (and journaled meanwhile).
pub struct RedisAck {
    conn: MultiplexedConnection,
    stream: String,
    group: String,
    entry_id: String,
}

impl Acker for RedisAck {
    async fn settle(mut self, ack: Ack) -> Result<(), String> {
        if ack == Ack::Retry {
            return Ok(());
        }
        let _: i64 = self
            .conn
            .xack(&self.stream, &self.group, &[&self.entry_id])
            .await
            .map_err(|e| format!("XACK failed: {e}"))?;
        Ok(())
    }
}

fn field_bytes(v: &redis::Value) -> Option<Vec<u8>> {
    redis::from_redis_value_ref::<Vec<u8>>(v).ok()
}

/// The entry's body (the `payload_field`, or else every field as a string) and its draft.
fn delivery(cfg: &RedisStreamsConfig, entry: StreamId) -> (Body, Draft) {
    let name = cfg
        .event
        .clone()
        .unwrap_or_else(|| format!("{}.message", cfg.name));
    let draft = Draft::named(name)
        .id(format!("{}:{}:{}", cfg.name, cfg.stream, entry.id))
        .label("redis.stream", &cfg.stream)
        .label("redis.entry_id", &entry.id);
    let fields: &HashMap<String, redis::Value> = &entry.map;
    let body = match fields.get(&cfg.payload_field) {
        Some(v) => Body::Encoded(field_bytes(v).unwrap_or_default()),
        None => {
            let mut map = Map::new();
            for (k, v) in fields {
                let text = field_bytes(v)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                map.insert(k.clone(), Value::String(text));
            }
            Body::Decoded(Value::Object(map))
        }
    };
    (body, draft)
}
