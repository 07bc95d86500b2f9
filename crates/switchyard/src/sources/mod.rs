//! Sources: where events come from.
//!
//! A source turns what it receives into [`Event`]s and hands them to the [`Dispatcher`], which
//! (1) reserves room in the engine queue, (2) writes the event to the journal, (3) queues it.
//! Only after (2) is the event *accepted*: that is when a webhook answers 202. The returned
//! [`Receipt`] resolves once every route has settled the event durably — the moment an
//! acknowledging source commits its offset or acks its message.

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis-streams")]
pub mod redis_streams;
pub mod stdin;
pub mod webhook;
#[cfg(feature = "zeromq")]
pub mod zeromq;

use std::sync::Arc;

use switchyard_core::Event;
use switchyard_core::engine::{EventPublisher, Payload, SendPermit};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::journal::{Accepted, EventStatus, JournalError, Settlement, Store};
use crate::routes::{RouteOutcome, skipped_routes};

/// What travels through the engine: the event and the routes that already settled it (set
/// when a journaled event is resumed after a restart or redelivered).
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The event (shared: routes hand it to the template evaluation pool).
    pub event: Arc<Event>,
    /// Routes with a final decision already in the journal.
    pub settled: Vec<String>,
}

/// The engine's publisher for inbound events.
pub type Publisher = EventPublisher<Inbound, RouteOutcome>;

pub use crate::owned::Owned;

/// Hands events to the routes, journal first.
#[derive(Clone)]
pub struct Dispatcher {
    publisher: Publisher,
    journal: Arc<dyn Store>,
    finishers: TaskTracker,
    owned: Arc<Owned>,
}

/// How an accepted event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Every route settled: the event may be acknowledged. `dead` when a route dead-lettered.
    Settled {
        /// Whether a dead letter was written.
        dead: bool,
    },
    /// Already settled before (a redelivery): acknowledge.
    AlreadySettled,
    /// Not finished (shutdown interrupted a retry, or the journal failed): it stays pending in
    /// the journal and is resumed on restart. Do not acknowledge.
    Unfinished,
}

/// The outcome of an accepted event, to await.
pub struct Receipt {
    /// The event id.
    pub id: String,
    outcome: oneshot::Receiver<Disposition>,
}

impl Receipt {
    fn ready(id: String, d: Disposition) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(d);
        Self { id, outcome: rx }
    }

    /// Waits for the event's disposition.
    pub async fn outcome(self) -> Disposition {
        self.outcome.await.unwrap_or(Disposition::Unfinished)
    }
}

/// Why an event was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The queue is full (only from [`Dispatcher::try_dispatch`]).
    #[error("the event queue is full")]
    Full,
    /// Switchyard is shutting down.
    #[error("switchyard is shutting down")]
    ShuttingDown,
    /// The journal could not store the event.
    #[error("{0}")]
    Journal(JournalError),
    /// The id is already journaled for a different message (only from
    /// [`Dispatcher::try_dispatch`]; [`Dispatcher::dispatch`] keeps such a message as a dead
    /// letter instead).
    #[error("event id {0:?} was already used for a different message")]
    Conflict(String),
}

/// How an accept treats a reused id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnConflict {
    /// Refuse: the sender is there to be told (a webhook's 409).
    Refuse,
    /// Keep the message as a dead letter under an id of its own and acknowledge it: a broker
    /// would otherwise redeliver it for ever.
    DeadLetter,
}

impl Dispatcher {
    /// A dispatcher over the engine's publisher and the journal. `finishers` tracks the tasks
    /// that accept events and record each event's end, so shutdown can wait for them.
    pub fn new(publisher: Publisher, journal: Arc<dyn Store>, finishers: TaskTracker) -> Self {
        Self {
            publisher,
            journal,
            finishers,
            owned: Arc::default(),
        }
    }

    /// Why new events are refused now (the journal's fault), if they are.
    pub fn fault(&self) -> Option<String> {
        self.journal.fault()
    }

    /// The events this dispatcher is working on (shared with the trigger firing runners).
    pub fn owned(&self) -> &Arc<Owned> {
        &self.owned
    }

    /// Accepts an event, waiting while the queue is full (backpressure on the source).
    ///
    /// Cancel-safe: the accept runs in a task of its own, so a caller that stops waiting
    /// (a client that hung up, a source shutting down) never leaves an event journaled but
    /// not queued.
    pub async fn dispatch(&self, event: Event) -> Result<Receipt, Refused> {
        let d = self.clone();
        self.finishers
            .spawn(async move {
                let permit = d
                    .publisher
                    .reserve()
                    .await
                    .map_err(|_| Refused::ShuttingDown)?;
                d.accept(permit, event, OnConflict::DeadLetter).await
            })
            .await
            .unwrap_or(Err(Refused::ShuttingDown))
    }

    /// Accepts an event only if the queue has room now. Cancel-safe, as [`Dispatcher::dispatch`].
    pub async fn try_dispatch(&self, event: Event) -> Result<Receipt, Refused> {
        let d = self.clone();
        self.finishers
            .spawn(async move {
                let permit = d.publisher.try_reserve().map_err(|e| match e {
                    switchyard_core::TrySendError::Full(_) => Refused::Full,
                    switchyard_core::TrySendError::Closed(_) => Refused::ShuttingDown,
                })?;
                d.accept(permit, event, OnConflict::Refuse).await
            })
            .await
            .unwrap_or(Err(Refused::ShuttingDown))
    }

    /// Records a message that cannot become an event (it does not decode): the journal keeps it
    /// as a dead letter of the pseudo-route `decode`, with the reason, so it can be inspected
    /// and the source can acknowledge it instead of receiving it forever.
    pub async fn reject(&self, event: Event, reason: &str) -> Result<(), JournalError> {
        self.give_up(&event, "decode", reason).await?;
        tracing::warn!(event_id = %event.id, source = %event.source, reason, "message does not decode; dead-lettered");
        Ok(())
    }

    /// Ends an event without (further) routing: a dead letter of the pseudo-route `stage` with
    /// the reason, and the event finished, whether it is new or was pending. Used for messages
    /// that do not decode and for poison messages a broker has redelivered too often. An event
    /// already settled is left as it is.
    pub async fn give_up(
        &self,
        event: &Event,
        stage: &str,
        reason: &str,
    ) -> Result<(), JournalError> {
        let open = match self.journal.accept(event).await? {
            Accepted::New => true,
            Accepted::Duplicate { status, .. } => status == EventStatus::Pending,
            Accepted::Conflict => {
                let mut kept = event.clone();
                kept.id = conflict_id(event);
                return Box::pin(self.give_up(&kept, stage, reason)).await;
            }
        };
        if open {
            let dead = Settlement::DeadLettered {
                reason: reason.to_string(),
                retryable: false,
                attempts: 1,
            };
            self.journal.settle(&event.id, stage, &dead).await?;
            self.journal.finish(&event.id).await?;
        }
        Ok(())
    }

    /// Queues an event that is already in the journal (recovery after a restart, or the
    /// sweep). An event this process already holds is not queued twice.
    pub async fn resume(&self, event: Event, settled: Vec<String>) -> Result<Receipt, Refused> {
        if !self.owned.claim(&event.id) {
            return Ok(Receipt::ready(event.id, Disposition::Unfinished));
        }
        let permit = match self.publisher.reserve().await {
            Ok(p) => p,
            Err(_) => {
                self.owned.release(&event.id);
                return Err(Refused::ShuttingDown);
            }
        };
        Ok(self.queue(
            permit,
            Inbound {
                event: Arc::new(event),
                settled,
            },
        ))
    }

    /// Resumes pending events that were accepted more than `age` ago and that no one holds:
    /// an event whose end could not be written, or whose retry was interrupted, is finished
    /// while the router runs, not only at the next start. Returns how many it resumed.
    pub async fn sweep(
        &self,
        age: std::time::Duration,
        limit: usize,
    ) -> Result<usize, JournalError> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::zero());
        let pending = self.journal.pending_before(Some(cutoff), limit).await?;
        let mut resumed = 0;
        for p in pending {
            if self.owned.holds(&p.event.id) {
                continue;
            }
            tracing::warn!(event_id = %p.event.id, source = %p.event.source, "pending event with no owner; resuming it");
            if self.resume(p.event, p.settled).await.is_err() {
                break;
            }
            resumed += 1;
        }
        Ok(resumed)
    }

    async fn accept(
        &self,
        permit: SendPermit<'_, Inbound, RouteOutcome>,
        event: Event,
        on_conflict: OnConflict,
    ) -> Result<Receipt, Refused> {
        // Claimed first, so two deliveries of one id racing each other queue it once.
        let claimed = self.owned.claim(&event.id);
        let release = |owned: &Owned| {
            if claimed {
                owned.release(&event.id);
            }
        };
        let accepted = match self.journal.accept(&event).await {
            Ok(a) => a,
            Err(e) => {
                release(&self.owned);
                return Err(Refused::Journal(e));
            }
        };
        if !claimed && accepted != Accepted::Conflict {
            // The same id is in flight here (a redelivery racing its first delivery): the
            // first one settles it, and the journal already holds it.
            tracing::info!(event_id = %event.id, source = %event.source, "event already being handled; redelivery acknowledged");
            return Ok(Receipt::ready(event.id, Disposition::AlreadySettled));
        }
        let settled = match accepted {
            Accepted::New => Vec::new(),
            Accepted::Duplicate {
                status: EventStatus::Pending,
                settled,
            } => settled,
            Accepted::Duplicate { .. } => {
                release(&self.owned);
                tracing::info!(event_id = %event.id, source = %event.source, "event already settled; redelivery acknowledged");
                return Ok(Receipt::ready(event.id, Disposition::AlreadySettled));
            }
            Accepted::Conflict => {
                release(&self.owned);
                tracing::warn!(event_id = %event.id, source = %event.source, "event id already used for a different message");
                if on_conflict == OnConflict::Refuse {
                    return Err(Refused::Conflict(event.id));
                }
                let reason = format!(
                    "event id {:?} was already used for a different message; kept here under an id of its own",
                    event.id
                );
                let id = event.id.clone();
                self.give_up(&event, "conflict", &reason)
                    .await
                    .map_err(Refused::Journal)?;
                return Ok(Receipt::ready(id, Disposition::Settled { dead: true }));
            }
        };
        Ok(self.queue(
            permit,
            Inbound {
                event: Arc::new(event),
                settled,
            },
        ))
    }

    fn queue(&self, permit: SendPermit<'_, Inbound, RouteOutcome>, inbound: Inbound) -> Receipt {
        let id = inbound.event.id.clone();
        // Routes subscribe to their sources' names as topics, or (triggers on exact event
        // names) to `<source>#<name>`.
        let topics = [
            inbound.event.source.clone(),
            crate::triggers::name_topic(&inbound.event.source, &inbound.event.name),
        ];
        let handle = permit.send(Payload::to_topics(inbound, topics));
        let (tx, rx) = oneshot::channel();
        let journal = Arc::clone(&self.journal);
        let owned = Arc::clone(&self.owned);
        let event_id = id.clone();
        self.finishers.spawn(async move {
            let results = handle.wait().await;
            let disposition = if !results.all_ok() {
                Disposition::Unfinished
            } else {
                let skipped = skipped_routes(
                    results
                        .iter()
                        .filter_map(|r| Some((&*r.collector, r.result.as_ref().ok()?))),
                );
                match journal.finish_skipped(&event_id, skipped).await {
                    Ok(status) => Disposition::Settled { dead: status == EventStatus::Dead },
                    Err(e) => {
                        tracing::error!(event_id = %event_id, error = %e, "cannot record the end of the event; the sweep resumes it");
                        Disposition::Unfinished
                    }
                }
            };
            // Finished, or pending with no owner: either way no longer this task's.
            owned.release(&event_id);
            let _ = tx.send(disposition);
        });
        Receipt { id, outcome: rx }
    }
}

/// The id a message is kept under when its own id was already used for another message.
fn conflict_id(event: &Event) -> String {
    let payload = serde_json::to_string(&event.payload).unwrap_or_default();
    let d = crate::journal::digest(&event.name, &payload);
    format!("{}~conflict~{}", event.id, &d[..12])
}

/// A message that did not decode: the event to keep as a dead letter, and why.
#[derive(Debug)]
pub struct Undecoded {
    /// The event, its payload the raw body (see [`undecodable`]).
    pub event: Box<Event>,
    /// Why it did not decode.
    pub reason: String,
}

/// How a broker message's body becomes the event payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// JSON (the default); a body that is not JSON is dead-lettered.
    #[default]
    Json,
    /// UTF-8 text, as a JSON string.
    Text,
}

impl PayloadFormat {
    /// Decodes a body.
    pub fn decode(self, body: &[u8]) -> Result<serde_json::Value, String> {
        match self {
            Self::Json => parse_json(body),
            Self::Text => std::str::from_utf8(body)
                .map(|s| serde_json::Value::String(s.to_string()))
                .map_err(|e| format!("not valid UTF-8: {e}")),
        }
    }
}

/// Parses a JSON message. An integer beyond 64 bits is refused with the reason rather than
/// silently rounded to a float (`12345678901234567890123` would become
/// `1.2345678901234568e+22`).
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, String> {
    check_integers(body)?;
    serde_json::from_slice(body).map_err(|e| format!("not valid JSON: {e}"))
}

/// Finds an integer literal outside strings that fits neither `i64` nor `u64`.
fn check_integers(b: &[u8]) -> Result<(), String> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let token = &b[start..i];
                if token.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                    continue;
                }
                let text = std::str::from_utf8(token).unwrap_or_default();
                if text.len() > 1
                    && text.parse::<i64>().is_err()
                    && text.parse::<u64>().is_err()
                    && text
                        .trim_start_matches('-')
                        .bytes()
                        .all(|c| c.is_ascii_digit())
                {
                    let shown: String = text.chars().take(40).collect();
                    return Err(format!(
                        "integer {shown}{} is beyond 64 bits and would lose digits; send it as a string",
                        if text.len() > 40 { "…" } else { "" }
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The payload kept for a message that did not decode: the body as text (lossy) and its size.
pub fn undecodable(body: &[u8]) -> serde_json::Value {
    serde_json::json!({"undecodable": String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]), "bytes": body.len()})
}

/// Runs `session` until it returns `Ok` (shutdown) — after an error, waits with exponential
/// backoff (0.5 s doubling to 30 s) and starts a new session. A session that ran for a while
/// resets the backoff.
pub async fn reconnecting<F, Fut>(
    source: &str,
    stop: &tokio_util::sync::CancellationToken,
    mut session: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        let started = tokio::time::Instant::now();
        match session().await {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() > std::time::Duration::from_secs(30) {
                    backoff = std::time::Duration::from_millis(500);
                }
                tracing::warn!(source, error = %e, retry_in_ms = backoff.as_millis() as u64, "source disconnected; reconnecting");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}
