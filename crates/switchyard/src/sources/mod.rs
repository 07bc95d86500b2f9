//! Sources: where events come from. A source turns what it receives into [`Event`]s and hands
//! them to the [`Dispatcher`]; the [`Pending`] it gets back resolves to every route's result,
//! which is what an acknowledging source maps onto its broker (commit, ack, 2xx).

pub mod stdin;
pub mod webhook;

use switchyard_core::Event;
use switchyard_core::engine::{CollectorEvent, EventPublisher, Payload, ResultList, TrySendError};

use crate::routes::RouteOutcome;

/// Hands events to the routes through the engine queue.
#[derive(Clone)]
pub struct Dispatcher {
    publisher: EventPublisher<Event, RouteOutcome>,
}

/// An event in the engine: await its per-route results.
pub struct Pending(CollectorEvent<Event, RouteOutcome>);

impl Pending {
    /// Waits until every route has handled the event.
    pub async fn results(&self) -> &ResultList<RouteOutcome> {
        self.0.wait().await
    }
}

/// Why an event was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The queue is full (only from [`Dispatcher::try_dispatch`]).
    #[error("the event queue is full")]
    Full,
    /// Switchyard is shutting down.
    #[error("switchyard is shutting down")]
    ShuttingDown,
}

impl Dispatcher {
    /// Wraps the engine's publisher.
    pub fn new(publisher: EventPublisher<Event, RouteOutcome>) -> Self {
        Self { publisher }
    }

    fn payload(event: Event) -> Payload<Event> {
        // Routes subscribe to their sources' names as topics.
        let topic = event.source.clone();
        Payload::to_topics(event, [topic])
    }

    /// Queues an event, waiting while the queue is full (backpressure on the source).
    pub async fn dispatch(&self, event: Event) -> Result<Pending, Refused> {
        self.publisher
            .send(Self::payload(event))
            .await
            .map(Pending)
            .map_err(|_| Refused::ShuttingDown)
    }

    /// Queues an event only if there is room now.
    pub fn try_dispatch(&self, event: Event) -> Result<Pending, Refused> {
        self.publisher
            .try_send(Self::payload(event))
            .map(Pending)
            .map_err(|e| match e {
                TrySendError::Full(_) => Refused::Full,
                TrySendError::Closed(_) => Refused::ShuttingDown,
            })
    }
}
