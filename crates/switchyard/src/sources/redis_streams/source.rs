//! Redis Streams: a consumer group, `XACK` only once an event is settled in the journal.
//!
//! On each (re)connection the consumer first re-reads its own pending entries (id `0`) — what
//! it had received but not acknowledged before a crash — then new ones (`>`). Entries another
//! consumer left pending longer than `claim_idle` are taken over with `XAUTOCLAIM`. The event
//! id is `<source>:<stream>:<entry id>`, so a re-read entry is the same event and finds the run
//! it already started.

use std::collections::HashMap;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use serde_json::{Map, Value};
use switchyard_core::Event;
use tokio_util::sync::CancellationToken;

use super::{RedisStreamsConfig, StreamStart};
use crate::pipeline::Accepts;
use crate::sources::{Dispatcher, Disposition, Undecoded, reconnecting, undecodable};

/// Consumes the stream until `stop`.
pub async fn run(cfg: RedisStreamsConfig, dispatch: Dispatcher, stop: CancellationToken) {
    let accepts = Accepts::new(&dispatch, &cfg.name);
    reconnecting(&cfg.name, &stop, || {
        session(&cfg, &dispatch, &stop, &accepts)
    })
    .await;
    accepts.close().await;
}

async fn session(
    cfg: &RedisStreamsConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
    accepts: &Accepts,
) -> Result<(), String> {
    let client =
        redis::Client::open(cfg.url.as_str()).map_err(|e| format!("invalid Redis URL: {e}"))?;
    let connect = || async {
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", crate::secrets::url(&cfg.url)))
    };
    // Reads block; acknowledgements use their own connection so they are never stuck behind one.
    let mut reader = connect().await?;
    let acker = connect().await?;
    let start = match cfg.start {
        StreamStart::Earliest => "0",
        StreamStart::Latest => "$",
    };
    let created: redis::RedisResult<()> = reader
        .xgroup_create_mkstream(&cfg.stream, &cfg.group, start)
        .await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(format!("cannot create consumer group {}: {e}", cfg.group));
    }
    let consumer = cfg.consumer.clone().unwrap_or_else(|| cfg.name.clone());
    tracing::info!(source = %cfg.name, stream = %cfg.stream, group = %cfg.group, %consumer, "reading Redis stream");
    let mut cursor = "0".to_string(); // our own pending entries first
    let mut last_claim = tokio::time::Instant::now();
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        if last_claim.elapsed() >= cfg.claim_idle / 2 {
            last_claim = tokio::time::Instant::now();
            let opts = StreamAutoClaimOptions::default().count(cfg.batch.get());
            let idle_ms = cfg.claim_idle.as_millis() as u64;
            let claimed: redis::streams::StreamAutoClaimReply = reader
                .xautoclaim_options(&cfg.stream, &cfg.group, &consumer, idle_ms, "0-0", opts)
                .await
                .map_err(|e| format!("XAUTOCLAIM failed: {e}"))?;
            if !claimed.claimed.is_empty() {
                tracing::info!(source = %cfg.name, entries = claimed.claimed.len(), "claimed entries left pending by another consumer");
            }
            for entry in claimed.claimed {
                handle(cfg, dispatch, &acker, accepts, entry).await?;
            }
        }
        let opts = StreamReadOptions::default()
            .group(&cfg.group, &consumer)
            .count(cfg.batch.get())
            .block(1000);
        let (keys, ids) = ([cfg.stream.as_str()], [cursor.as_str()]);
        let read = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = reader.xread_options::<_, _, StreamReadReply>(&keys, &ids, &opts) => r,
        };
        let reply = read.map_err(|e| format!("XREADGROUP failed: {e}"))?;
        let entries: Vec<StreamId> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
        if cursor != ">" {
            match entries.last() {
                // Pending entries are re-read in pages; an empty page means none are left.
                Some(last) => cursor = last.id.clone(),
                None => cursor = ">".into(),
            }
        }
        for entry in entries {
            handle(cfg, dispatch, &acker, accepts, entry).await?;
        }
    }
}

async fn handle(
    cfg: &RedisStreamsConfig,
    dispatch: &Dispatcher,
    acker: &MultiplexedConnection,
    accepts: &Accepts,
    entry: StreamId,
) -> Result<(), String> {
    let entry_id = entry.id.clone();
    let event = match decode(cfg, entry) {
        Ok(event) => event,
        Err(Undecoded { event, reason }) => {
            dispatch
                .reject(*event, &reason)
                .await
                .map_err(|e| e.to_string())?;
            return xack(acker.clone(), cfg, &entry_id).await;
        }
    };
    let (acker, cfg) = (acker.clone(), cfg.clone());
    accepts
        .submit(event, move |receipt| async move {
            let id = receipt.id.clone();
            match receipt.outcome().await {
                Disposition::Settled { .. } | Disposition::AlreadySettled => {
                    if let Err(e) = xack(acker, &cfg, &entry_id).await {
                        tracing::warn!(source = %cfg.name, event_id = %id, error = %e, "XACK failed; the entry will be read again");
                    }
                }
                // Left pending: re-read on restart or claimed later, and journaled meanwhile.
                Disposition::Unfinished => {}
            }
        })
        .await
}

async fn xack(
    mut conn: MultiplexedConnection,
    cfg: &RedisStreamsConfig,
    entry_id: &str,
) -> Result<(), String> {
    let _: i64 = conn
        .xack(&cfg.stream, &cfg.group, &[entry_id])
        .await
        .map_err(|e| format!("XACK failed: {e}"))?;
    Ok(())
}

fn field_bytes(v: &redis::Value) -> Option<Vec<u8>> {
    redis::from_redis_value_ref::<Vec<u8>>(v).ok()
}

/// The entry as an event; `Err` carries the event to dead-letter and why.
fn decode(cfg: &RedisStreamsConfig, entry: StreamId) -> Result<Event, Undecoded> {
    let name = cfg
        .event
        .clone()
        .unwrap_or_else(|| format!("{}.message", cfg.name));
    let id = format!("{}:{}:{}", cfg.name, cfg.stream, entry.id);
    let make = |payload: Value| {
        Event::builder(&cfg.name, &name, payload)
            .id(&id)
            .label("redis.stream", &cfg.stream)
            .label("redis.entry_id", &entry.id)
            .build()
    };
    let fields: &HashMap<String, redis::Value> = &entry.map;
    match fields.get(&cfg.payload_field) {
        Some(v) => {
            let body = field_bytes(v).unwrap_or_default();
            cfg.format
                .decode(&body)
                .map(make)
                .map_err(|reason| Undecoded {
                    event: Box::new(make(undecodable(&body))),
                    reason,
                })
        }
        None => {
            let mut map = Map::new();
            for (k, v) in fields {
                let text = field_bytes(v)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                map.insert(k.clone(), Value::String(text));
            }
            Ok(make(Value::Object(map)))
        }
    }
}
