//! ZeroMQ: a SUB or PULL socket. **At most once**: ZeroMQ has no acknowledgements, so a
//! message that arrives while Switchyard is down, or that a PUB socket drops for a slow or
//! late subscriber, is gone. Everything received is journaled before it is routed.
//!
//! A multipart message's first frame is taken as its topic (label `zmq.topic`) and its last
//! frame as the body; a single frame is the body.

use zeromq::{PullSocket, Socket, SocketRecv, SubSocket, ZmqMessage};

use super::{ZmqConfig, ZmqSocket};
use crate::codec::PayloadFormat;
use crate::sources::runtime::{Body, Connector, Delivery, Draft, Session};

impl Connector for ZmqConfig {
    type Session = ZmqSession;

    fn format(&self) -> PayloadFormat {
        self.format
    }

    async fn connect(&self) -> Result<ZmqSession, String> {
        let socket = match self.socket {
            ZmqSocket::Sub => {
                let mut socket = SubSocket::new();
                attach(self, &mut socket).await?;
                let prefixes = if self.subscribe.is_empty() {
                    vec![String::new()]
                } else {
                    self.subscribe.clone()
                };
                for p in &prefixes {
                    socket
                        .subscribe(p)
                        .await
                        .map_err(|e| format!("cannot subscribe to {p:?}: {e}"))?;
                }
                tracing::info!(source = %self.name, endpoint = %self.endpoint, "ZeroMQ SUB socket ready (at most once)");
                Receiver::Sub(socket)
            }
            ZmqSocket::Pull => {
                let mut socket = PullSocket::new();
                attach(self, &mut socket).await?;
                tracing::info!(source = %self.name, endpoint = %self.endpoint, "ZeroMQ PULL socket ready (at most once)");
                Receiver::Pull(socket)
            }
        };
        Ok(ZmqSession {
            cfg: self.clone(),
            socket,
        })
    }
}

async fn attach(cfg: &ZmqConfig, socket: &mut impl Socket) -> Result<(), String> {
    if cfg.bind {
        socket
            .bind(&cfg.endpoint)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot bind {}: {e}", cfg.endpoint))
    } else {
        socket
            .connect(&cfg.endpoint)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", cfg.endpoint))
    }
}

/// One bound or connected socket.
pub struct ZmqSession {
    cfg: ZmqConfig,
    socket: Receiver,
}

enum Receiver {
    Sub(SubSocket),
    Pull(PullSocket),
}

impl Session for ZmqSession {
    type Acker = ();

    async fn next(&mut self) -> Result<Delivery<()>, String> {
        let msg = match &mut self.socket {
            Receiver::Sub(s) => s.recv().await,
            Receiver::Pull(s) => s.recv().await,
        }
        .map_err(|e| format!("receive failed: {e}"))?;
        let (body, draft) = delivery(&self.cfg, &msg);
        Ok(Delivery {
            body,
            draft,
            poison: None,
            ack: (),
        })
    }
}

fn delivery(cfg: &ZmqConfig, msg: &ZmqMessage) -> (Body, Draft) {
    let body = msg
        .get(msg.len().saturating_sub(1))
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let topic = (msg.len() > 1)
        .then(|| msg.get(0).map(|t| String::from_utf8_lossy(t).into_owned()))
        .flatten();
    let name = cfg
        .event
        .clone()
        .or_else(|| topic.clone())
        .unwrap_or_else(|| format!("{}.message", cfg.name));
    let mut draft = Draft::named(name);
    if let Some(t) = topic {
        draft = draft.label("zmq.topic", t);
    }
    (Body::Encoded(body), draft)
}
