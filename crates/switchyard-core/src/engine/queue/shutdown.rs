//! Stopping a queue: drain or abort, then the consumers, then the teardowns.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{CollectorQueue, RunState, Shared, lock};
use crate::engine::event::EventState;
use crate::engine::result::{CollectorResult, ProcessError, ResultList};

/// How [`CollectorQueue::shutdown`] treats what is still queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Refuse new events, process everything queued and in flight; after `timeout`, drop
    /// what is left.
    Drain {
        /// How long to wait for the queue to empty.
        timeout: Duration,
    },
    /// Refuse new events and drop everything queued or in flight at once.
    Abort,
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Events finished over the queue's life (processed or dropped).
    pub finished: u64,
    /// Events that were never processed; each was completed with [`ProcessError::Dropped`].
    pub dropped: u64,
    /// Whether a drain ran out of time.
    pub timed_out: bool,
}

impl<T: Send + Sync + 'static, R: Send + Sync + 'static> CollectorQueue<T, R> {
    /// Stops accepting events, then drains or aborts (see [`ShutdownMode`]), stops the
    /// consumers and runs the lifecycle teardowns. Every event ever sent has its result set
    /// when this returns. Calling it again returns the same counts.
    pub async fn shutdown(&self, mode: ShutdownMode) -> ShutdownReport {
        let was = std::mem::replace(&mut *lock(&self.state), RunState::Stopped);
        let shared = &self.shared;
        shared.slots.close();
        let mut timed_out = false;
        if was == RunState::Running
            && let ShutdownMode::Drain { timeout } = mode
        {
            timed_out = tokio::time::timeout(timeout, shared.wait_idle())
                .await
                .is_err();
            if timed_out {
                tracing::warn!(
                    queue = %shared.name,
                    unfinished = shared.unfinished.load(Ordering::SeqCst),
                    "drain timed out; dropping what is left"
                );
            }
        }
        shared.root.cancel();
        shared.items.close();
        shared.tracker.close();
        shared.tracker.wait().await;
        shared.drop_queued();
        if was == RunState::Running {
            for c in shared.collectors.iter().rev() {
                if let Some(lc) = c.lifecycle() {
                    lc.teardown(c.context()).await;
                }
            }
            tracing::debug!(queue = %shared.name, "collector queue shut down");
        }
        ShutdownReport {
            finished: shared.departed.load(Ordering::SeqCst),
            dropped: shared.dropped.load(Ordering::SeqCst),
            timed_out,
        }
    }
}

impl<T, R> Drop for CollectorQueue<T, R> {
    fn drop(&mut self) {
        // Consumers hold the shared state; without this they would wait forever.
        self.shared.slots.close();
        self.shared.items.close();
        self.shared.root.cancel();
    }
}

impl<T, R> Shared<T, R> {
    /// Completes every event still queued as dropped.
    pub(super) fn drop_queued(&self) {
        let leftovers: Vec<_> = std::iter::from_fn(|| lock(&self.buffer).pop()).collect();
        for ev in leftovers {
            self.finish_dropped(&ev, "the queue shut down before the event was processed");
            self.event_done();
        }
    }

    pub(super) fn finish_dropped(&self, ev: &EventState<T, R>, why: &str) {
        let dropped = ResultList::new(vec![CollectorResult {
            collector: Arc::from(""),
            result: Err(ProcessError::Dropped(why.to_string())),
        }]);
        if ev.finish(dropped) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}
