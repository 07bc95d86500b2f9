//! Sending into a queue: waiting for room (the backpressure a source feels), trying, or
//! reserving a place first.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::TryAcquireError;

use super::{SendError, Shared, TrySendError, lock};
use crate::engine::event::{CollectorEvent, EventState};
use crate::engine::payload::Payload;

/// Sends payloads into a [`CollectorQueue`]. Cheap to clone.
pub struct EventPublisher<T, R> {
    pub(super) shared: Arc<Shared<T, R>>,
}

impl<T, R> Clone for EventPublisher<T, R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Send + Sync + 'static, R: Send + Sync + 'static> EventPublisher<T, R> {
    /// Queues a payload, waiting while the queue is full (this is the backpressure a source
    /// feels). Returns the handle to await its results.
    pub async fn send(&self, payload: Payload<T>) -> Result<CollectorEvent<T, R>, SendError<T>> {
        match self.shared.slots.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(SendError(payload)),
        }
        Ok(self.enqueue(payload))
    }

    /// Queues a payload if there is room right now.
    pub fn try_send(&self, payload: Payload<T>) -> Result<CollectorEvent<T, R>, TrySendError<T>> {
        match self.shared.slots.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(payload)),
            Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(payload)),
        }
        Ok(self.enqueue(payload))
    }

    /// Reserves a place in the queue, waiting while it is full; the place is used by
    /// [`SendPermit::send`] or given back when the permit drops. Lets a source make an event
    /// durable between "there is room" and "it is queued".
    pub async fn reserve(&self) -> Result<SendPermit<'_, T, R>, SendError<()>> {
        match self.shared.slots.acquire().await {
            Ok(permit) => {
                permit.forget();
                Ok(SendPermit {
                    publisher: self,
                    used: false,
                })
            }
            Err(_) => Err(SendError(Payload::new(()))),
        }
    }

    /// Reserves a place if there is one right now.
    pub fn try_reserve(&self) -> Result<SendPermit<'_, T, R>, TrySendError<()>> {
        match self.shared.slots.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Ok(SendPermit {
                    publisher: self,
                    used: false,
                })
            }
            Err(TryAcquireError::NoPermits) => Err(TrySendError::Full(Payload::new(()))),
            Err(TryAcquireError::Closed) => Err(TrySendError::Closed(Payload::new(()))),
        }
    }

    /// Waits until every event sent so far has finished.
    pub async fn wait(&self) {
        self.shared.wait_idle().await;
    }

    /// Whether the queue still accepts events.
    pub fn is_closed(&self) -> bool {
        self.shared.slots.is_closed()
    }

    /// Events queued and not yet picked up.
    pub fn queued(&self) -> usize {
        self.shared.qsize()
    }

    fn enqueue(&self, payload: Payload<T>) -> CollectorEvent<T, R> {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let priority = payload.priority().unwrap_or(shared.default_priority);
        let state = Arc::new(EventState::new(id, payload, priority));
        shared.unfinished.fetch_add(1, Ordering::SeqCst);
        shared.arrived.fetch_add(1, Ordering::SeqCst);
        let queued = {
            let mut buffer = lock(&shared.buffer);
            buffer.push(Arc::clone(&state), priority);
            buffer.len()
        };
        shared.items.add_permits(1);
        if shared.autoscale
            && shared.consumers.load(Ordering::Relaxed) < shared.max_consumers
            && queued + shared.busy.load(Ordering::Relaxed) > shared.effective_consumers()
        {
            // Stored if the autoscaler is busy: it looks again as soon as it is free.
            shared.demand.notify_one();
        }
        CollectorEvent { inner: state }
    }
}

/// A reserved place in the queue (see [`EventPublisher::reserve`]).
pub struct SendPermit<'a, T, R> {
    publisher: &'a EventPublisher<T, R>,
    used: bool,
}

impl<T: Send + Sync + 'static, R: Send + Sync + 'static> SendPermit<'_, T, R> {
    /// Queues the payload in the reserved place; never waits.
    pub fn send(mut self, payload: Payload<T>) -> CollectorEvent<T, R> {
        self.used = true;
        self.publisher.enqueue(payload)
    }
}

impl<T, R> Drop for SendPermit<'_, T, R> {
    fn drop(&mut self) {
        if !self.used {
            self.publisher.shared.slots.add_permits(1);
        }
    }
}
