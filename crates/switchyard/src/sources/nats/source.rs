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
use switchyard_core::Event;
use tokio_util::sync::CancellationToken;

use super::{NatsConfig, NatsMode};
use crate::pipeline::Accepts;
use crate::sources::{Dispatcher, Disposition, Undecoded, reconnecting, undecodable};

/// Consumes until `stop`.
pub async fn run(cfg: NatsConfig, dispatch: Dispatcher, stop: CancellationToken) {
    let accepts = Accepts::new(&dispatch, &cfg.name);
    reconnecting(&cfg.name, &stop, || async {
        match cfg.mode {
            NatsMode::Jetstream => jetstream_session(&cfg, &dispatch, &stop, &accepts).await,
            NatsMode::Core => core_session(&cfg, &dispatch, &stop).await,
        }
    })
    .await;
    accepts.close().await;
}

async fn connect(cfg: &NatsConfig) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name(format!("switchyard {}", cfg.name))
        .connect(cfg.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", crate::secrets::url(&cfg.url)))
}

fn event(
    cfg: &NatsConfig,
    subject: &str,
    body: &[u8],
    id: Option<String>,
) -> Result<Event, Undecoded> {
    let name = cfg.event.clone().unwrap_or_else(|| subject.to_string());
    let make = |payload| {
        let mut b = Event::builder(&cfg.name, &name, payload).label("nats.subject", subject);
        if let Some(id) = &id {
            b = b.id(id);
        }
        b.build()
    };
    cfg.format
        .decode(body)
        .map(make)
        .map_err(|reason| Undecoded {
            event: Box::new(make(undecodable(body))),
            reason,
        })
}

async fn jetstream_session(
    cfg: &NatsConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
    accepts: &Accepts,
) -> Result<(), String> {
    let client = connect(cfg).await?;
    let js = jetstream::new(client);
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
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot pull messages: {e}"))?;
    tracing::info!(source = %cfg.name, stream = %stream_name, %durable, "consuming JetStream");
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = messages.next() => m,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("pull failed: {e}")),
            None => return Err("the message stream ended".into()),
        };
        let seq = msg
            .info()
            .map(|i| i.stream_sequence)
            .map_err(|e| format!("message without JetStream info: {e}"))?;
        let id = format!("{}:{}:{}", cfg.name, stream_name, seq);
        let subject = msg.subject.to_string();
        match event(cfg, &subject, &msg.payload, Some(id.clone())) {
            Err(Undecoded { event: bad, reason }) => {
                dispatch
                    .reject(*bad, &reason)
                    .await
                    .map_err(|e| e.to_string())?;
                msg.ack().await.map_err(|e| format!("ack failed: {e}"))?;
            }
            Ok(ev) => {
                let ack_wait = cfg.ack_wait;
                accepts
                    .submit(ev, move |receipt| async move {
                        let kind = match receipt.outcome().await {
                            Disposition::Settled { .. } | Disposition::AlreadySettled => AckKind::Ack,
                            Disposition::Unfinished => AckKind::Nak(Some(ack_wait.min(Duration::from_secs(5)))),
                        };
                        if let Err(e) = msg.ack_with(kind).await {
                            tracing::warn!(event_id = %id, error = %e, "JetStream ack failed; the message will be redelivered");
                        }
                    })
                    .await?;
            }
        }
    }
}

async fn core_session(
    cfg: &NatsConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
) -> Result<(), String> {
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
    let mut all = futures::stream::select_all(subs);
    tracing::info!(source = %cfg.name, subjects = ?cfg.subjects, "subscribed to core NATS (at most once)");
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = all.next() => m.ok_or("the subscription ended")?,
        };
        match event(cfg, msg.subject.as_str(), &msg.payload, None) {
            Err(Undecoded { event: bad, reason }) => dispatch
                .reject(*bad, &reason)
                .await
                .map_err(|e| e.to_string())?,
            Ok(ev) => {
                let id = ev.id.clone();
                dispatch.dispatch(ev).await.map_err(|e| e.to_string())?;
                tracing::info!(source = %cfg.name, event_id = %id, "event received");
            }
        }
    }
}
