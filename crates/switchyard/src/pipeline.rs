//! The pipeline between sources and routes: accept (reserve room in the engine queue →
//! journal → queue), and one finish path for every event, whether new, resumed or swept.
//! An event every route skips (the routes foresee it, [`Foresight`]) is journaled finished
//! in one write instead, and never queued.
//!
//! An event is *accepted* once the journal holds it: that is when a webhook answers 202.
//! Accepting cannot be cut in half (it runs in a task of its own, whatever the caller does),
//! and a sweep resumes any pending event that no task holds, so nothing accepted waits for a
//! restart.

use std::sync::Arc;

use switchyard_core::Event;
use switchyard_core::engine::{EventPublisher, Payload, SendPermit};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::journal::{Accepted, EventStatus, JournalError, Settlement, Store};
pub use crate::outcome::{Disposition, Skips};
use crate::outcome::{RouteOutcome, Routed, skipped_routes};
pub use crate::owned::Owned;

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
pub type Publisher = EventPublisher<Inbound, Routed>;

/// What the routes in force will do with an event, as far as it is known before it is
/// journaled (see [`Dispatcher::with_wanted`]).
pub enum Foresight {
    /// Every route that receives it skips it (none, when no route does).
    Skipped(Skips),
    /// Some route acts on it, or takes it into a trigger's state.
    Wanted,
    /// Known once some `when` is evaluated (off the async runtime).
    Evaluate(Evaluation),
}

impl Foresight {
    /// The answer to its end, evaluating what must be: the skips when every route skips
    /// `event` (which this foresight is about), and the event back.
    async fn complete(self, event: Event) -> (Event, Option<Skips>) {
        match self {
            Self::Skipped(skips) => (event, Some(skips)),
            Self::Wanted => (event, None),
            Self::Evaluate(evaluation) => {
                let shared = Arc::new(event);
                let skips = evaluation(Arc::clone(&shared)).await;
                (
                    Arc::try_unwrap(shared).unwrap_or_else(|e| (*e).clone()),
                    skips,
                )
            }
        }
    }
}

/// The routes in force, as the pipeline asks them before it journals an event.
pub trait Wants: Send + Sync {
    /// What they will do with `event`, without evaluating anything.
    fn foresee(&self, event: &Event) -> Foresight;
}

/// The rest of a [`Foresight`]: evaluates the event against the routes that need it; `Some`
/// with every skip when every route skips it.
pub type Evaluation =
    Box<dyn FnOnce(Arc<Event>) -> futures::future::BoxFuture<'static, Option<Skips>> + Send>;

/// A shared [`Wants`].
pub type Wanted = Arc<dyn Wants>;

/// Hands events to the routes, journal first.
#[derive(Clone)]
pub struct Dispatcher {
    publisher: Publisher,
    journal: Arc<dyn Store>,
    finishers: TaskTracker,
    owned: Arc<Owned>,
    accepts_in_flight: usize,
    wanted: Option<Wanted>,
    follower: Option<Arc<crate::follow::Follower>>,
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

/// Accepts each acknowledging source has in flight by default (`engine.accepts_in_flight`).
pub const DEFAULT_ACCEPTS_IN_FLIGHT: usize = 256;

/// Accepts pipelined for one source, the same way for every acknowledging source: up to
/// `engine.accepts_in_flight` events are being journaled and queued at once (the journal
/// group-commits them) while the source reads on, and each event's end is handed to the
/// acknowledgement the source gave with it (ack, nack, offset, delete), in whatever order the
/// events end. An event the journal refused ends [`Disposition::Unfinished`] (its broker keeps
/// it), and the next [`Accepts::submit`] says so, so the source ends its session and
/// reconnects with backoff instead of reading on into a journal that cannot take events.
pub struct Accepts {
    dispatch: Dispatcher,
    /// Journal only events some route wants (`journal: routed`).
    routed_only: bool,
    source: String,
    permits: Arc<tokio::sync::Semaphore>,
    acks: TaskTracker,
    refused: Arc<std::sync::Mutex<Option<String>>>,
}

impl Accepts {
    /// The pipeline of `source`.
    pub fn new(dispatch: &Dispatcher, source: &str) -> Self {
        Self {
            dispatch: dispatch.clone(),
            routed_only: false,
            source: source.to_string(),
            permits: Arc::new(tokio::sync::Semaphore::new(dispatch.accepts_in_flight)),
            acks: TaskTracker::new(),
            refused: Arc::default(),
        }
    }

    /// Journal only the events some route wants (a source whose broker keeps its own log:
    /// one no route wants is acknowledged without a journal write, and a redelivery after a
    /// crash is decided again, the same way).
    pub fn routed_only(mut self, yes: bool) -> Self {
        self.routed_only = yes;
        self
    }

    /// Hands an event over, with what to do with its receipt (await its end, then map it onto
    /// the broker); waits only while the pipeline is full. An error when an earlier event was
    /// refused (see above).
    pub async fn submit<F, Fut>(&self, event: Event, ack: F) -> Result<(), String>
    where
        F: FnOnce(Receipt) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(why) = refused {
            return Err(why);
        }
        // Decided without evaluating anything: an event no route wants of a `journal: routed`
        // source is acknowledged here, with no task, no permit and no journal write.
        let foresight = self.dispatch.foresee(&event);
        if self.routed_only
            && let Foresight::Skipped(_) = foresight
        {
            unrouted(&self.source, &event.id);
            ack(Receipt::ready(
                event.id,
                Disposition::Settled { dead: false },
            ))
            .await;
            return Ok(());
        }
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| "shutting down".to_string())?;
        let (dispatch, refused, source, routed_only) = (
            self.dispatch.clone(),
            Arc::clone(&self.refused),
            self.source.clone(),
            self.routed_only,
        );
        self.acks.spawn(async move {
            let id = event.id.clone();
            let (event, skips) = foresight.complete(event).await;
            if routed_only && skips.is_some() {
                drop(permit);
                unrouted(&source, &id);
                ack(Receipt::ready(id, Disposition::Settled { dead: false })).await;
                return;
            }
            // This task runs to completion (nothing aborts it), so it accepts in place.
            let accepted = dispatch.dispatch_in_place(event, skips).await;
            drop(permit);
            let receipt = match accepted {
                Ok(receipt) => {
                    tracing::info!(source = %source, event_id = %id, "event received");
                    receipt
                }
                Err(e) => {
                    tracing::warn!(source = %source, event_id = %id, error = %e, "event not accepted; the broker keeps it");
                    *refused
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                    Receipt::ready(id, Disposition::Unfinished)
                }
            };
            ack(receipt).await;
        });
        Ok(())
    }

    /// Waits until every event handed over has been acknowledged one way or the other.
    pub async fn close(&self) {
        self.acks.close();
        self.acks.wait().await;
    }
}

/// Counts (and, at debug level, logs) an event of a `journal: routed` source that no route
/// wants.
fn unrouted(source: &str, id: &str) {
    crate::metrics::received(source);
    crate::metrics::unrouted(source);
    tracing::debug!(source = %source, event_id = %id, "no route wants the event; acknowledged without journaling");
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
            accepts_in_flight: DEFAULT_ACCEPTS_IN_FLIGHT,
            wanted: None,
            follower: None,
        }
    }

    /// What follows the runs the routes create, for sources that answer with a run's end
    /// (a webhook's `respond: finished`).
    pub fn with_follower(mut self, follower: Arc<crate::follow::Follower>) -> Self {
        self.follower = Some(follower);
        self
    }

    /// What follows the runs the routes create, when something does.
    pub fn follower(&self) -> Option<&Arc<crate::follow::Follower>> {
        self.follower.as_ref()
    }

    /// The journal events are accepted into.
    pub fn journal(&self) -> &Arc<dyn Store> {
        &self.journal
    }

    /// What the routes will do with an event, asked before it is journaled: an event every
    /// route skips is journaled finished, with its skips, in one write and never queued; for a
    /// source whose broker is itself a durable log (`journal: routed`) it is not journaled at
    /// all but acknowledged at once.
    pub fn with_wanted(mut self, wanted: Wanted) -> Self {
        self.wanted = Some(wanted);
        self
    }

    /// How many accepts each acknowledging source pipelines (see [`Accepts`]).
    pub fn with_accepts_in_flight(mut self, n: usize) -> Self {
        self.accepts_in_flight = n.max(1);
        self
    }

    /// Why new events are refused now (the journal's fault), if they are.
    pub fn fault(&self) -> Option<String> {
        self.journal.fault()
    }

    /// The events this dispatcher is working on (shared with the trigger firing runners).
    pub fn owned(&self) -> &Arc<Owned> {
        &self.owned
    }

    /// Events queued for the routes now.
    pub fn queued(&self) -> usize {
        self.publisher.queued()
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
                let (event, skips) = d.foresee(&event).complete(event).await;
                d.dispatch_in_place(event, skips).await
            })
            .await
            .unwrap_or(Err(Refused::ShuttingDown))
    }

    /// What the routes will do with `event` ([`Foresight::Wanted`] when no one was asked).
    fn foresee(&self, event: &Event) -> Foresight {
        match &self.wanted {
            Some(w) => w.foresee(event),
            None => Foresight::Wanted,
        }
    }

    /// [`Dispatcher::dispatch`] without its own task: only for callers that are themselves a
    /// task no one cancels ([`Accepts`]), so an event is never half accepted. `skips`: every
    /// route skips the event, for these reasons (see [`Dispatcher::accept_skipped`]).
    async fn dispatch_in_place(
        &self,
        event: Event,
        skips: Option<Skips>,
    ) -> Result<Receipt, Refused> {
        let source = event.source.clone();
        crate::metrics::received(&source);
        let accepted = match self.accept_skipped(event, skips).await {
            Err(refused) => Err(refused),
            Ok(Ok(receipt)) => Ok(receipt),
            Ok(Err(event)) => match self.publisher.reserve().await {
                Ok(permit) => self.accept(permit, event, OnConflict::DeadLetter).await,
                Err(_) => Err(Refused::ShuttingDown),
            },
        };
        count_refusal(&source, &accepted);
        accepted
    }

    /// Accepts an event only if the queue has room now (an event every route skips needs
    /// none). Cancel-safe, as [`Dispatcher::dispatch`].
    pub async fn try_dispatch(&self, event: Event) -> Result<Receipt, Refused> {
        let d = self.clone();
        self.finishers
            .spawn(async move {
                let source = event.source.clone();
                crate::metrics::received(&source);
                let (event, skips) = d.foresee(&event).complete(event).await;
                let accepted = match d.accept_skipped(event, skips).await {
                    Err(refused) => Err(refused),
                    Ok(Ok(receipt)) => Ok(receipt),
                    Ok(Err(event)) => match d.publisher.try_reserve() {
                        Ok(permit) => d.accept(permit, event, OnConflict::Refuse).await,
                        Err(switchyard_core::TrySendError::Full(_)) => Err(Refused::Full),
                        Err(switchyard_core::TrySendError::Closed(_)) => Err(Refused::ShuttingDown),
                    },
                };
                count_refusal(&source, &accepted);
                accepted
            })
            .await
            .unwrap_or(Err(Refused::ShuttingDown))
    }

    /// Accepts an event every route skips (`skips`) as it ends: journaled finished, with its
    /// skips, in one write, and never queued (a skip does nothing a crash could cut in half,
    /// so deciding it before the event is journaled is the same as after). The event back
    /// (`Ok(Err)`) when there are no skips to go by or its id is journaled already: the full
    /// accept then sorts out the redelivery or the conflict.
    async fn accept_skipped(
        &self,
        event: Event,
        skips: Option<Skips>,
    ) -> Result<Result<Receipt, Event>, Refused> {
        let Some(skips) = skips else {
            return Ok(Err(event));
        };
        match self.journal.accept_skipped(&event, &skips).await {
            Err(e) => Err(Refused::Journal(e)),
            Ok(Accepted::New) => {
                crate::metrics::accepted(&event.source);
                for (route, reason) in &skips {
                    crate::metrics::decided(route, "skipped");
                    tracing::info!(event_id = %event.id, route = %route, %reason, "route skipped");
                    crate::tap::decided(&event, route, "skipped", || (Some(reason.clone()), None));
                }
                Ok(Ok(Receipt::ready(
                    event.id,
                    Disposition::Settled { dead: false },
                )))
            }
            Ok(_) => Ok(Err(event)),
        }
    }

    /// Records a message that cannot become an event (it does not decode): the journal keeps it
    /// as a dead letter of the pseudo-route `decode`, with the reason, so it can be inspected
    /// and the source can acknowledge it instead of receiving it forever.
    pub async fn reject(&self, event: Event, reason: &str) -> Result<(), JournalError> {
        crate::metrics::received(&event.source);
        crate::metrics::refused(&event.source, "undecodable");
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
            // Its holder ends it.
            Accepted::Elsewhere => false,
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
        if !self.owned.claim_free(&event.id) {
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
        permit: SendPermit<'_, Inbound, Routed>,
        event: Event,
        on_conflict: OnConflict,
    ) -> Result<Receipt, Refused> {
        // Held from before the journal write, so the sweep never takes an event being accepted.
        let first = self.owned.claim(&event.id);
        let accepted = match self.journal.accept(&event).await {
            Ok(a) => a,
            Err(e) => {
                self.owned.release(&event.id);
                return Err(Refused::Journal(e));
            }
        };
        let settled = match accepted {
            Accepted::New => {
                crate::metrics::accepted(&event.source);
                Vec::new()
            }
            Accepted::Duplicate {
                status: EventStatus::Pending,
                ..
            } if !first => {
                // Another task is working on this event (an earlier delivery, or the copy
                // resumed from the journal at start): its end is this delivery's end, rather
                // than running the routes twice at once.
                self.owned.release(&event.id);
                tracing::info!(event_id = %event.id, source = %event.source, "event already in hand; this delivery ends with it");
                return Ok(self.after_holder(event.id));
            }
            Accepted::Duplicate {
                status: EventStatus::Pending,
                settled,
            } => settled,
            Accepted::Elsewhere => {
                // The journal holds it durably and the instance that holds it finishes it
                // (or, if that instance dies, the one that claims it): acknowledged here.
                self.owned.release(&event.id);
                tracing::info!(event_id = %event.id, source = %event.source, "event held by another instance sharing the journal; this delivery is acknowledged");
                return Ok(Receipt::ready(event.id, Disposition::AlreadySettled));
            }
            Accepted::Duplicate { .. } => {
                self.owned.release(&event.id);
                tracing::info!(event_id = %event.id, source = %event.source, "event already settled; redelivery acknowledged");
                return Ok(Receipt::ready(event.id, Disposition::AlreadySettled));
            }
            Accepted::Conflict => {
                self.owned.release(&event.id);
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

    /// The receipt of a delivery of an event another task holds: once that task lets it go,
    /// settled if the journal says it ended, else unfinished (a later delivery, or the sweep,
    /// takes it up). Gives up waiting after [`HOLDER_WAIT`].
    fn after_holder(&self, id: String) -> Receipt {
        let (tx, rx) = oneshot::channel();
        let (owned, journal, event_id) = (
            Arc::clone(&self.owned),
            Arc::clone(&self.journal),
            id.clone(),
        );
        tokio::spawn(async move {
            let freed = tokio::time::timeout(HOLDER_WAIT, owned.until_free(&event_id)).await;
            let d = match freed {
                Err(_) => Disposition::Unfinished,
                Ok(()) => match journal.event(&event_id).await {
                    Ok(Some(e)) if e.status != EventStatus::Pending => Disposition::AlreadySettled,
                    _ => Disposition::Unfinished,
                },
            };
            let _ = tx.send(d);
        });
        Receipt { id, outcome: rx }
    }

    fn queue(&self, permit: SendPermit<'_, Inbound, Routed>, inbound: Inbound) -> Receipt {
        let id = inbound.event.id.clone();
        let handle = permit.send(Payload::new(inbound));
        let (tx, rx) = oneshot::channel();
        let journal = Arc::clone(&self.journal);
        let owned = Arc::clone(&self.owned);
        let event_id = id.clone();
        self.finishers.spawn(async move {
            let results = handle.wait().await;
            // One collector routes every event; an error means a route did not settle it.
            let settled = results
                .first()
                .ok()
                .map(|routed| routed.iter().map(|(r, o)| (r.as_str(), o)).collect());
            let disposition = finish(journal.as_ref(), &owned, &event_id, settled).await;
            let _ = tx.send(disposition);
        });
        Receipt { id, outcome: rx }
    }
}

/// The one finish path, for events from sources, resumed and swept events and trigger
/// firings alike. With every route's outcome (`settled`), records the routes that skipped
/// with the event's end, in one write; with `None` (a route did not settle: shutdown
/// interrupted a retry, or the journal failed) the event stays pending. Either way the event
/// is no longer held, so the sweep may take up what was left.
pub async fn finish(
    journal: &dyn Store,
    owned: &Owned,
    event_id: &str,
    settled: Option<Vec<(&str, &RouteOutcome)>>,
) -> Disposition {
    if let Some(outcomes) = &settled {
        for (route, outcome) in outcomes {
            if !matches!(outcome, RouteOutcome::AlreadySettled) {
                crate::metrics::decided(route, outcome.decision());
            }
        }
    }
    let disposition = match settled {
        None => Disposition::Unfinished,
        Some(outcomes) => match journal
            .finish_skipped(event_id, skipped_routes(outcomes))
            .await
        {
            Ok(status) => Disposition::Settled {
                dead: status == EventStatus::Dead,
            },
            Err(e) => {
                tracing::error!(event_id = %event_id, error = %e, "cannot record the end of the event; the sweep resumes it");
                Disposition::Unfinished
            }
        },
    };
    owned.release(event_id);
    disposition
}

/// How long a delivery of an event another task holds waits for that task.
const HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Counts a refusal by its reason (`switchyard_events_refused_total`).
fn count_refusal(source: &str, accepted: &Result<Receipt, Refused>) {
    if let Err(r) = accepted {
        let reason = match r {
            Refused::Full => "full",
            Refused::ShuttingDown => "shutting_down",
            Refused::Journal(_) => "journal",
            Refused::Conflict(_) => "conflict",
        };
        crate::metrics::refused(source, reason);
    }
}

/// The id a message is kept under when its own id was already used for another message.
fn conflict_id(event: &Event) -> String {
    let payload = serde_json::to_string(&event.payload).unwrap_or_default();
    let d = crate::journal::digest(&event.name, &payload);
    format!("{}~conflict~{}", event.id, &d[..12])
}
