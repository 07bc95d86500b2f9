//! ZeroMQ: a SUB or PULL socket. **At most once**: ZeroMQ has no acknowledgements, so a
//! message that arrives while Switchyard is down, or that a PUB socket drops for a slow or
//! late subscriber, is gone. Everything received is journaled before it is routed.
//!
//! A multipart message's first frame is taken as its topic (label `zmq.topic`) and its last
//! frame as the body; a single frame is the body.

use switchyard_core::Event;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketRecv, ZmqMessage};

use super::{ZmqConfig, ZmqSocket};
use crate::sources::{Dispatcher, reconnecting, undecodable};

/// Receives until `stop`.
pub async fn run(cfg: ZmqConfig, dispatch: Dispatcher, stop: CancellationToken) {
    reconnecting(&cfg.name, &stop, || session(&cfg, &dispatch, &stop)).await;
}

async fn handle(cfg: &ZmqConfig, dispatch: &Dispatcher, msg: ZmqMessage) -> Result<(), String> {
    let body = msg
        .get(msg.len().saturating_sub(1))
        .cloned()
        .unwrap_or_default();
    let topic = (msg.len() > 1)
        .then(|| msg.get(0).map(|t| String::from_utf8_lossy(t).into_owned()))
        .flatten();
    let name = cfg
        .event
        .clone()
        .or_else(|| topic.clone())
        .unwrap_or_else(|| format!("{}.message", cfg.name));
    let make = |payload| {
        let mut b = Event::builder(&cfg.name, &name, payload);
        if let Some(t) = &topic {
            b = b.label("zmq.topic", t);
        }
        b.build()
    };
    match cfg.format.decode(&body) {
        Err(reason) => dispatch
            .reject(make(undecodable(&body)), &reason)
            .await
            .map_err(|e| e.to_string()),
        Ok(payload) => {
            let event = make(payload);
            let id = event.id.clone();
            dispatch.dispatch(event).await.map_err(|e| e.to_string())?;
            tracing::info!(source = %cfg.name, event_id = %id, "event received");
            Ok(())
        }
    }
}

async fn session(
    cfg: &ZmqConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
) -> Result<(), String> {
    macro_rules! attach {
        ($socket:expr) => {{
            let mut socket = $socket;
            if cfg.bind {
                socket
                    .bind(&cfg.endpoint)
                    .await
                    .map_err(|e| format!("cannot bind {}: {e}", cfg.endpoint))?;
            } else {
                socket
                    .connect(&cfg.endpoint)
                    .await
                    .map_err(|e| format!("cannot connect to {}: {e}", cfg.endpoint))?;
            }
            socket
        }};
    }
    match cfg.socket {
        ZmqSocket::Sub => {
            let mut socket = attach!(zeromq::SubSocket::new());
            let prefixes = if cfg.subscribe.is_empty() {
                vec![String::new()]
            } else {
                cfg.subscribe.clone()
            };
            for p in &prefixes {
                socket
                    .subscribe(p)
                    .await
                    .map_err(|e| format!("cannot subscribe to {p:?}: {e}"))?;
            }
            tracing::info!(source = %cfg.name, endpoint = %cfg.endpoint, "ZeroMQ SUB socket ready (at most once)");
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    m = socket.recv() => handle(cfg, dispatch, m.map_err(|e| format!("receive failed: {e}"))?).await?,
                }
            }
        }
        ZmqSocket::Pull => {
            let mut socket = attach!(zeromq::PullSocket::new());
            tracing::info!(source = %cfg.name, endpoint = %cfg.endpoint, "ZeroMQ PULL socket ready (at most once)");
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    m = socket.recv() => handle(cfg, dispatch, m.map_err(|e| format!("receive failed: {e}"))?).await?,
                }
            }
        }
    }
}
