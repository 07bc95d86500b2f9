use std::fmt;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::payload::Payload;
use super::result::ResultList;

/// The handle [`EventPublisher::send`](super::EventPublisher::send) returns: the payload, and
/// its results once every collector it was routed to has finished. Cheap to clone.
pub struct CollectorEvent<T, R> {
    pub(crate) inner: Arc<EventState<T, R>>,
}

pub(crate) struct EventState<T, R> {
    pub(crate) id: u64,
    pub(crate) payload: Arc<Payload<T>>,
    pub(crate) priority: i64,
    created: Instant,
    started: OnceLock<Instant>,
    finished: OnceLock<(Instant, ResultList<R>)>,
    notify: Notify,
}

impl<T, R> EventState<T, R> {
    pub(crate) fn new(id: u64, payload: Payload<T>, priority: i64) -> Self {
        Self {
            id,
            payload: Arc::new(payload),
            priority,
            created: Instant::now(),
            started: OnceLock::new(),
            finished: OnceLock::new(),
            notify: Notify::new(),
        }
    }

    pub(crate) fn start(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// Stores the results once; later calls are ignored. Returns whether this call finished it.
    pub(crate) fn finish(&self, results: ResultList<R>) -> bool {
        let first = self.finished.set((Instant::now(), results)).is_ok();
        if first {
            self.notify.notify_waiters();
        }
        first
    }

    pub(crate) fn is_done(&self) -> bool {
        self.finished.get().is_some()
    }
}

impl<T, R> Clone for CollectorEvent<T, R> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T, R> CollectorEvent<T, R> {
    /// Sequence number, unique within the process.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The payload as sent.
    pub fn payload(&self) -> &Payload<T> {
        &self.inner.payload
    }

    /// The effective priority.
    pub fn priority(&self) -> i64 {
        self.inner.priority
    }

    /// Whether results are available.
    pub fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    /// The results, without waiting: `None` while the event is queued or in progress.
    pub fn get_result(&self) -> Option<&ResultList<R>> {
        self.inner.finished.get().map(|(_, r)| r)
    }

    /// Waits for the results.
    pub async fn wait(&self) -> &ResultList<R> {
        loop {
            let mut notified = pin!(self.inner.notify.notified());
            // Register before checking, so a finish between the check and the await is seen.
            notified.as_mut().enable();
            if let Some((_, r)) = self.inner.finished.get() {
                return r;
            }
            notified.await;
        }
    }

    /// Time spent processing (start to finish); `None` until finished. Zero for an event
    /// dropped before it started.
    pub fn service_time(&self) -> Option<Duration> {
        let (stop, _) = self.inner.finished.get()?;
        let start = self.inner.started.get().copied().unwrap_or(*stop);
        Some(stop.saturating_duration_since(start))
    }

    /// Time from `send` to finish, queueing included; `None` until finished.
    pub fn wait_time(&self) -> Option<Duration> {
        let (stop, _) = self.inner.finished.get()?;
        Some(stop.saturating_duration_since(self.inner.created))
    }
}

impl<T: fmt::Debug, R> fmt::Debug for CollectorEvent<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectorEvent")
            .field("id", &self.inner.id)
            .field("priority", &self.inner.priority)
            .field("payload", &self.inner.payload)
            .field("done", &self.is_done())
            .finish()
    }
}
