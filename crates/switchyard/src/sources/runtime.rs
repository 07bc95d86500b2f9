//! The source runtime: what every broker connector shares.
//!
//! A connector says how to **connect** ([`Connector::connect`]), how to read the **next**
//! message ([`Session::next`]) and how to **acknowledge** it ([`Acker::settle`]); the runtime
//! owns the rest, the same way for every connector: reconnecting with backoff, decoding the
//! body with the source's `format`, dead-lettering what does not decode, handing events to the
//! pipeline with bounded in-flight pipelining ([`Accepts`], `engine.accepts_in_flight`),
//! mapping each event's end onto the broker's acknowledgement, and shutting down (stop reading,
//! close the session, wait for the acknowledgements of what was handed over).
//!
//! This is the shape of Redpanda Connect's input (`Connect; Read → (message, AckFn); Close`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_core::Event;
use switchyard_prefect::RetryPolicy;
use tokio_util::sync::CancellationToken;

use crate::codec::{JournalMode, PayloadFormat, undecodable};
use crate::pipeline::{Accepts, Dispatcher, Disposition};

/// A broker connector: its settings (the registry's [`super::SourceSpec`], which names the
/// source), able to open a session.
pub trait Connector: super::SourceSpec + Send + Sync + 'static {
    /// What one connection is.
    type Session: Session;
    /// How message bodies decode.
    fn format(&self) -> PayloadFormat;
    /// Which messages the journal records (`journal:`; only log-backed brokers offer
    /// `routed`).
    fn journal(&self) -> JournalMode {
        JournalMode::All
    }
    /// Connects (and subscribes); an error is retried with backoff.
    fn connect(&self) -> impl Future<Output = Result<Self::Session, String>> + Send;
    /// The longest a reply ([`Acker::reply`]) waits for the event's runs to end.
    fn reply_timeout(&self) -> Duration {
        DEFAULT_REPLY_TIMEOUT
    }
}

/// How long a reply waits for the runs to end by default.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(600);

/// Most replies waiting for their runs at once, all sources together; past them a reply is
/// sent at once with the runs as they stand.
pub const MAX_REPLIES_WAITING: usize = 4096;

static REPLIES_WAITING: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(MAX_REPLIES_WAITING)));

/// Where a message asks its outcome to be sent (an AMQP `reply_to`): the report of
/// [`crate::sources::outcome`] as JSON, once the event's runs have ended.
pub trait Reply: Send + 'static {
    /// Sends `body` there.
    fn send(
        self: Box<Self>,
        body: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, Result<(), String>>;
}

/// One connection to the broker.
pub trait Session: Send {
    /// What acknowledges one message.
    type Acker: Acker;
    /// The next message; waits until there is one. An error ends the session (the runtime
    /// reconnects). Dropping the future (at shutdown) may lose a message read but not
    /// returned: it was not acknowledged, so an acking broker delivers it again.
    fn next(&mut self) -> impl Future<Output = Result<Delivery<Self::Acker>, String>> + Send;
    /// At shutdown, before [`Session::close`]: waits for `acks` (acknowledgements being sent
    /// for events that have ended), doing meanwhile whatever the connection needs to send
    /// them (MQTT polls its event loop).
    fn drain<F>(&mut self, acks: F) -> impl Future<Output = ()> + Send
    where
        F: Future<Output = ()> + Send,
    {
        acks
    }
    /// Closes the connection at shutdown.
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// How long shutdown waits for acknowledgements already being sent before it closes the
/// connection (events still in flight are not waited for: the broker delivers them again).
const ACK_FLUSH: Duration = Duration::from_secs(2);

/// Acknowledgements being sent: from an event's end to its broker answer.
#[derive(Default)]
struct Acking {
    n: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Acking {
    fn start(self: &Arc<Self>) -> AckingGuard {
        self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        AckingGuard(Arc::clone(self))
    }

    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.n.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct AckingGuard(Arc<Acking>);

impl Drop for AckingGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// How an event ended, as the broker is to be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Settled, now or before: remove the message.
    Done,
    /// Not finished (shutdown, journal failure): leave it so the broker delivers it again.
    Retry,
    /// Dead-lettered in the journal (it did not decode, or the broker delivered it too often):
    /// remove it, or reject it where the broker has a dead-letter path of its own.
    Dead,
}

/// Acknowledges one message.
pub trait Acker: Send + 'static {
    /// Tells the broker how the message's event ended. An error for [`Ack::Done`] or
    /// [`Ack::Retry`] is logged (the broker redelivers, the journal recognises the event); an
    /// error for [`Ack::Dead`] ends the session.
    fn settle(self, ack: Ack) -> impl Future<Output = Result<(), String>> + Send;
    /// While the event is in flight, [`Acker::keep_alive`] is called this often (e.g. to
    /// extend a visibility timeout).
    fn keep_alive_every(&self) -> Option<Duration> {
        None
    }
    /// Keeps the message from being delivered elsewhere meanwhile.
    fn keep_alive(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// Where the message asks its outcome to be sent, if it does; taken once, before the
    /// message is acknowledged (the reply follows the acknowledgement).
    fn reply(&mut self) -> Option<Box<dyn Reply>> {
        None
    }
}

/// Nothing to acknowledge (at-most-once sources).
impl Acker for () {
    async fn settle(self, _: Ack) -> Result<(), String> {
        Ok(())
    }
}

/// One message: its body, what its event is made of, and its acknowledgement.
pub struct Delivery<A> {
    /// The body.
    pub body: Body,
    /// The event, but for its payload.
    pub draft: Draft,
    /// Set when the broker delivered it too often: dead-lettered (pseudo-route `poison`)
    /// with this reason instead of routed.
    pub poison: Option<String>,
    /// Its acknowledgement.
    pub ack: A,
}

/// A message body.
pub enum Body {
    /// Bytes to decode with the source's `format`.
    Encoded(Vec<u8>),
    /// Already a payload (e.g. a Redis entry's fields).
    Decoded(Value),
    /// Cannot be decoded (e.g. invalid transport encoding): dead-lettered with the reason.
    Undecodable {
        /// The raw bytes.
        raw: Vec<u8>,
        /// Why.
        reason: String,
    },
}

/// An event but for its payload.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// The event name.
    pub name: String,
    /// A stable id from the broker's coordinates; a fresh one when `None` (and no `id_field`).
    pub id: Option<String>,
    /// A JSON pointer into the payload whose value, prefixed by the source name, is the id.
    pub id_field: Option<String>,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// When it happened, if the broker says.
    pub occurred: Option<chrono::DateTime<chrono::Utc>>,
}

impl Draft {
    /// A draft named `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// With a stable id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// With one more label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// The event of `source` carrying `payload`.
    pub fn build(self, source: &str, payload: Value) -> Event {
        let from_field = self.id_field.as_deref().and_then(|p| {
            payload.pointer(p).map(|v| match v.as_str() {
                Some(s) => format!("{source}:{s}"),
                None => format!("{source}:{v}"),
            })
        });
        let mut b = Event::builder(source, self.name, payload);
        if let Some(id) = from_field.or(self.id) {
            b = b.id(id);
        }
        if let Some(at) = self.occurred {
            b = b.occurred(at);
        }
        for (k, v) in self.labels {
            b = b.label(k, v);
        }
        b.build()
    }
}

/// Runs a connector until `stop`: sessions one after the other (backoff between them), then
/// waits for the acknowledgements of every event handed over.
pub async fn run<C: Connector>(connector: C, dispatch: Dispatcher, stop: CancellationToken) {
    let accepts = Accepts::new(&dispatch, connector.name())
        .routed_only(connector.journal() == JournalMode::Routed);
    let acking = Arc::new(Acking::default());
    reconnecting(connector.name(), &stop, || {
        session(&connector, &dispatch, &stop, &accepts, &acking)
    })
    .await;
    accepts.close().await;
}

async fn session<C: Connector>(
    connector: &C,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
    accepts: &Accepts,
    acking: &Arc<Acking>,
) -> Result<(), String> {
    let mut session = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        s = connector.connect() => s?,
    };
    crate::metrics::source_up(connector.name(), true);
    let ended = loop {
        let delivery = tokio::select! {
            _ = stop.cancelled() => {
                // Acknowledgements under way go out before the connection closes; without
                // this an event that has just ended would be delivered again.
                let flush = async {
                    // Let acknowledgement tasks just woken by their event's end start first.
                    tokio::task::yield_now().await;
                    let _ = tokio::time::timeout(ACK_FLUSH, acking.idle()).await;
                };
                session.drain(flush).await;
                session.close().await;
                break Ok(());
            }
            d = session.next() => d,
        };
        let handed = match delivery {
            Ok(d) => hand_over(connector, dispatch, accepts, acking, d).await,
            Err(e) => Err(e),
        };
        if let Err(e) = handed {
            break Err(e);
        }
    };
    crate::metrics::source_up(connector.name(), false);
    ended
}

/// Runs `session` until it returns `Ok` (shutdown). After an error it waits — the backoff
/// Prefect calls use ([`RetryPolicy`]: 0.5 s doubling to 30 s, ±20 % jitter so a fleet does
/// not reconnect in step) — and starts a new session; a session that ran for a while starts
/// the backoff over.
async fn reconnecting<F, Fut>(source: &str, stop: &CancellationToken, mut session: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let policy = RetryPolicy {
        max_retries: u32::MAX,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(30),
        jitter: 0.2,
    };
    let mut failures = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let Err(e) = session().await else { return };
        if started.elapsed() > policy.max_delay {
            failures = 0;
        }
        let wait = policy.delay(failures, None);
        failures = failures.saturating_add(1);
        let retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        tracing::warn!(source, error = %e, retry_in_ms, "source disconnected; reconnecting");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Decodes one delivery and hands it to the pipeline (or the dead letters).
async fn hand_over<C: Connector, A: Acker>(
    connector: &C,
    dispatch: &Dispatcher,
    accepts: &Accepts,
    acking: &Arc<Acking>,
    delivery: Delivery<A>,
) -> Result<(), String> {
    let source = connector.name();
    let Delivery {
        body,
        draft,
        poison,
        ack,
    } = delivery;
    let decoded = match body {
        Body::Decoded(v) => Ok(v),
        Body::Encoded(raw) => connector
            .format()
            .decode(&raw)
            .map_err(|reason| (undecodable(&raw), reason)),
        Body::Undecodable { raw, reason } => Err((undecodable(&raw), reason)),
    };
    if let Some(reason) = poison {
        let event = draft.build(source, decoded.unwrap_or_else(|(raw, _)| raw));
        crate::metrics::received(source);
        crate::metrics::refused(source, "poison");
        dispatch
            .give_up(&event, "poison", &reason)
            .await
            .map_err(|e| e.to_string())?;
        tracing::warn!(source, event_id = %event.id, reason, "poison message dead-lettered");
        return ack.settle(Ack::Dead).await;
    }
    let payload = match decoded {
        Ok(payload) => payload,
        Err((raw, reason)) => {
            dispatch
                .reject(draft.build(source, raw), &reason)
                .await
                .map_err(|e| e.to_string())?;
            return ack.settle(Ack::Dead).await;
        }
    };
    let source = source.to_string();
    let acking = Arc::clone(acking);
    let (dispatch, reply_timeout) = (dispatch.clone(), connector.reply_timeout());
    accepts
        .submit(draft.build(&source, payload), move |receipt| async move {
            let id = receipt.id.clone();
            let mut ack = ack;
            let reply = ack.reply();
            let outcome = receipt.outcome();
            tokio::pin!(outcome);
            let disposition = match ack.keep_alive_every().filter(|d| !d.is_zero()) {
                None => outcome.await,
                Some(every) => {
                    let start = tokio::time::Instant::now() + every;
                    let mut tick = tokio::time::interval_at(start, every);
                    loop {
                        tokio::select! {
                            d = &mut outcome => break d,
                            _ = tick.tick() => ack.keep_alive().await,
                        }
                    }
                }
            };
            let _sending = acking.start();
            let how = match disposition {
                Disposition::Settled { .. } | Disposition::AlreadySettled => Ack::Done,
                Disposition::Unfinished => Ack::Retry,
            };
            if let Err(e) = ack.settle(how).await {
                tracing::warn!(source, event_id = %id, error = %e, "acknowledgement failed; the broker will deliver the message again and the journal recognises it");
            }
            if let (Some(reply), Ack::Done) = (reply, how) {
                tokio::spawn(send_reply(dispatch, source, id, reply, reply_timeout));
            }
        })
        .await
}

/// Reports the event's outcome where its message asked, once its runs have ended (or within
/// `timeout`, or at once when [`MAX_REPLIES_WAITING`] replies are waiting already).
async fn send_reply(
    dispatch: Dispatcher,
    source: String,
    id: String,
    reply: Box<dyn Reply>,
    timeout: Duration,
) {
    use crate::sources::outcome::{Until, report};
    let waiting = Arc::clone(&REPLIES_WAITING).try_acquire_owned().ok();
    let until = if waiting.is_some() {
        Until::Finished
    } else {
        tracing::warn!(source, event_id = %id, "too many replies waiting for their runs; replying with the runs as they stand");
        Until::Created
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let r = report(&dispatch, None, &id, until, deadline).await;
    drop(waiting);
    match reply.send(r.body.to_string().into_bytes()).await {
        Ok(()) => tracing::info!(source, event_id = %id, status = r.status, "outcome replied"),
        Err(e) => {
            tracing::warn!(source, event_id = %id, error = %e, "cannot send the outcome reply")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_takes_its_id_from_the_payload_field_first() {
        let mut d = Draft::named("n").id("src:fixed").label("k", "v");
        d.id_field = Some("/id".into());
        let e = d.clone().build("src", serde_json::json!({"id": "abc"}));
        assert_eq!(e.id, "src:abc");
        assert_eq!(e.labels["k"], "v");
        let e = d.clone().build("src", serde_json::json!({"id": 7}));
        assert_eq!(e.id, "src:7");
        let e = d.build("src", serde_json::json!({"other": 1}));
        assert_eq!(e.id, "src:fixed");
        let e = Draft::named("n").build("src", Value::Null);
        assert_eq!(e.name, "n");
        assert!(!e.id.is_empty());
    }
}
