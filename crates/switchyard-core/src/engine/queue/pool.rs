//! The consumer pool: each consumer takes the next event, routes it and runs its collectors.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;

use super::{Shared, lock};
use crate::engine::collector::Collector;
use crate::engine::event::{CollectorEvent, EventState};
use crate::engine::payload::Payload;
use crate::engine::result::{CollectorResult, ProcessError, ResultList};

pub(super) fn spawn_consumer<T: Send + Sync + 'static, R: Send + Sync + 'static>(
    shared: &Arc<Shared<T, R>>,
) {
    shared.consumers.fetch_add(1, Ordering::SeqCst);
    let s = Arc::clone(shared);
    shared.tracker.spawn(async move {
        consume(&s).await;
        s.consumers.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Marks an event picked up by a consumer; finishing it (or being dropped mid-way because the
/// queue aborted) keeps the counters right.
struct InFlight<'a, T, R> {
    shared: &'a Shared<T, R>,
    event: Arc<EventState<T, R>>,
}

impl<T, R> Drop for InFlight<'_, T, R> {
    fn drop(&mut self) {
        self.shared.finish_dropped(
            &self.event,
            "the queue was aborted while the event was processed",
        );
        self.shared.busy.fetch_sub(1, Ordering::SeqCst);
        self.shared.event_done();
    }
}

async fn consume<T: Send + Sync + 'static, R: Send + Sync + 'static>(shared: &Shared<T, R>) {
    loop {
        if shared.try_retire() {
            return;
        }
        let permit = tokio::select! {
            biased;
            _ = shared.root.cancelled() => return,
            _ = shared.retire_notify.notified() => continue,
            p = shared.items.acquire() => p,
        };
        match permit {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        let Some(event) = lock(&shared.buffer).pop() else {
            continue;
        };
        shared.slots.add_permits(1);
        shared.busy.fetch_add(1, Ordering::SeqCst);
        let flight = InFlight { shared, event };
        tokio::select! {
            biased;
            _ = shared.root.cancelled() => {}
            results = process(shared, &flight.event) => {
                if flight.event.finish(results) {
                    let view = CollectorEvent { inner: Arc::clone(&flight.event) };
                    if let (Some(service), Some(wait)) = (view.service_time(), view.wait_time()) {
                        lock(&shared.stats).record_event(service, wait);
                    }
                }
            }
        }
        drop(flight);
    }
}

async fn process<T: Send + Sync + 'static, R: Send + Sync + 'static>(
    shared: &Shared<T, R>,
    event: &EventState<T, R>,
) -> ResultList<R> {
    event.start();
    let payload = &event.payload;
    let targets = match std::panic::catch_unwind(AssertUnwindSafe(|| shared.router.route(payload)))
    {
        Ok(t) => t,
        Err(panic) => {
            return ResultList::new(vec![CollectorResult {
                collector: Arc::from("router"),
                result: Err(ProcessError::Panicked(panic_message(panic.as_ref()))),
            }]);
        }
    };
    let results = match targets.as_slice() {
        [] => Vec::new(),
        [one] => vec![run_collector(one.clone(), Arc::clone(payload)).await],
        many => {
            futures::future::join_all(
                many.iter()
                    .map(|c| run_collector(c.clone(), Arc::clone(payload))),
            )
            .await
        }
    };
    ResultList::new(results)
}

async fn run_collector<T: Send + Sync + 'static, R: Send + 'static>(
    collector: Collector<T, R>,
    payload: Arc<Payload<T>>,
) -> CollectorResult<R> {
    let key = collector.key_arc();
    let outcome = AssertUnwindSafe(async move { collector.process(payload).await })
        .catch_unwind()
        .await;
    let result = match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(ProcessError::failed(err)),
        Err(panic) => Err(ProcessError::Panicked(panic_message(panic.as_ref()))),
    };
    CollectorResult {
        collector: key,
        result,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
