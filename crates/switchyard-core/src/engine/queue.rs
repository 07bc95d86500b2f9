use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::buffer::{Buffer, DEFAULT_PRIORITY, QueueType};
use super::collector::{BoxError, Collector};
use super::event::{CollectorEvent, EventState};
use super::metrics::{Metrics, Stats};
use super::payload::Payload;
use super::result::{CollectorResult, ProcessError, ResultList};
use super::router::{DefaultRouter, Router};

/// Building or starting a queue failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A collector has an empty key.
    #[error("a collector has an empty key")]
    EmptyKey,
    /// Two collectors share a key.
    #[error("two collectors share the key {0:?}")]
    DuplicateKey(String),
    /// The consumer bounds are unusable.
    #[error("consumer bounds must satisfy 1 <= min_consumers ({min}) <= max_consumers ({max})")]
    ConsumerBounds {
        /// Requested minimum.
        min: usize,
        /// Requested maximum.
        max: usize,
    },
    /// A zero-capacity queue could never accept an event.
    #[error("queue capacity must be at least 1")]
    ZeroCapacity,
    /// A collector's lifecycle setup failed; the ones already set up were torn down.
    #[error("setup of collector {collector:?} failed: {source}")]
    Setup {
        /// The collector whose setup failed.
        collector: String,
        /// Its error.
        source: BoxError,
    },
    /// The queue was already shut down; build a new one.
    #[error("the queue was shut down and cannot be restarted")]
    Stopped,
}

/// [`EventPublisher::send`] on a queue that was shut down; the payload is handed back.
pub struct SendError<T>(pub Payload<T>);

/// Why [`EventPublisher::try_send`] did not enqueue; the payload is handed back.
pub enum TrySendError<T> {
    /// The queue is at capacity.
    Full(Payload<T>),
    /// The queue was shut down.
    Closed(Payload<T>),
}

impl<T> TrySendError<T> {
    /// The payload that was not sent.
    pub fn into_payload(self) -> Payload<T> {
        match self {
            Self::Full(p) | Self::Closed(p) => p,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(Closed)")
    }
}
impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the collector queue is shut down")
    }
}
impl<T> std::error::Error for SendError<T> {}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("TrySendError(Full)"),
            Self::Closed(_) => f.write_str("TrySendError(Closed)"),
        }
    }
}
impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the collector queue is full"),
            Self::Closed(_) => f.write_str("the collector queue is shut down"),
        }
    }
}
impl<T> std::error::Error for TrySendError<T> {}

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

type RouterFactory<T, R> = Box<dyn FnOnce(&[Collector<T, R>]) -> Box<dyn Router<T, R>> + Send>;

/// Configures a [`CollectorQueue`]; see [`CollectorQueue::builder`].
pub struct CollectorQueueBuilder<T, R> {
    collectors: Vec<Collector<T, R>>,
    router: Option<RouterFactory<T, R>>,
    queue_type: QueueType,
    capacity: usize,
    min_consumers: usize,
    max_consumers: usize,
    autoscale: bool,
    default_priority: i64,
    monitor_interval: Duration,
    scale_down_window: Duration,
    wip_margin: f64,
    report_interval: Option<Duration>,
    name: String,
}

impl<T: Send + Sync + 'static, R: Send + Sync + 'static> CollectorQueueBuilder<T, R> {
    /// FIFO (default), LIFO or priority order.
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Most events held at once (default 1024). A full queue makes
    /// [`send`](EventPublisher::send) wait and [`try_send`](EventPublisher::try_send) fail.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Fewest consumers the pool keeps (default 1).
    pub fn min_consumers(mut self, n: usize) -> Self {
        self.min_consumers = n;
        self
    }

    /// Most consumers the pool grows to (default 8): the bound on concurrent processing.
    pub fn max_consumers(mut self, n: usize) -> Self {
        self.max_consumers = n;
        self
    }

    /// Whether the pool scales with load (default true). When false it runs `max_consumers`
    /// from the start.
    pub fn autoscale(mut self, on: bool) -> Self {
        self.autoscale = on;
        self
    }

    /// Priority of payloads that have none, in a priority queue (default
    /// [`DEFAULT_PRIORITY`]).
    pub fn default_priority(mut self, priority: i64) -> Self {
        self.default_priority = priority;
        self
    }

    /// How often the load monitor samples and scales (default 20 ms).
    pub fn monitor_interval(mut self, every: Duration) -> Self {
        self.monitor_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How long the load must stay low before consumers retire (default 1 s); also the window
    /// of the rates in [`Metrics`].
    pub fn scale_down_window(mut self, window: Duration) -> Self {
        self.scale_down_window = window;
        self
    }

    /// Extra consumers, as a fraction of demand, added when scaling (default 0.15).
    pub fn wip_margin(mut self, margin: f64) -> Self {
        self.wip_margin = margin.max(0.0);
        self
    }

    /// Logs a [`Metrics`] line at this interval (default: never).
    pub fn report_interval(mut self, every: Duration) -> Self {
        self.report_interval = Some(every);
        self
    }

    /// A name for logs (default `collector-queue`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the default key/topic/broadcast router. The factory receives the collectors,
    /// like the original's router class.
    pub fn router<F, RR>(mut self, factory: F) -> Self
    where
        F: FnOnce(&[Collector<T, R>]) -> RR + Send + 'static,
        RR: Router<T, R>,
    {
        self.router = Some(Box::new(move |c| Box::new(factory(c))));
        self
    }

    /// Validates and builds the queue (not started yet: see [`CollectorQueue::start`] and
    /// [`CollectorQueue::run`]).
    pub fn build(self) -> Result<CollectorQueue<T, R>, EngineError> {
        let mut keys = HashSet::new();
        for c in &self.collectors {
            if c.key().is_empty() {
                return Err(EngineError::EmptyKey);
            }
            if !keys.insert(c.key().to_string()) {
                return Err(EngineError::DuplicateKey(c.key().to_string()));
            }
        }
        if self.min_consumers == 0 || self.min_consumers > self.max_consumers {
            return Err(EngineError::ConsumerBounds {
                min: self.min_consumers,
                max: self.max_consumers,
            });
        }
        if self.capacity == 0 {
            return Err(EngineError::ZeroCapacity);
        }
        let router = match self.router {
            Some(factory) => factory(&self.collectors),
            None => Box::new(DefaultRouter::new(&self.collectors)),
        };
        let window = (self.scale_down_window.as_secs_f64() / self.monitor_interval.as_secs_f64())
            .ceil() as usize;
        let shared = Arc::new(Shared {
            name: self.name,
            router,
            collectors: self.collectors,
            buffer: Mutex::new(Buffer::new(self.queue_type)),
            slots: Semaphore::new(self.capacity),
            items: Semaphore::new(0),
            queue_type: self.queue_type,
            default_priority: self.default_priority,
            min_consumers: self.min_consumers,
            max_consumers: self.max_consumers,
            autoscale: self.autoscale,
            wip_margin: self.wip_margin,
            monitor_interval: self.monitor_interval,
            report_interval: self.report_interval,
            busy: AtomicUsize::new(0),
            consumers: AtomicUsize::new(0),
            retire: AtomicUsize::new(0),
            retire_notify: Notify::new(),
            unfinished: AtomicUsize::new(0),
            idle: Notify::new(),
            next_id: AtomicU64::new(1),
            arrived: AtomicU64::new(0),
            departed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            stats: Mutex::new(Stats::new(window)),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        Ok(CollectorQueue {
            shared,
            state: Mutex::new(RunState::Built),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Built,
    Running,
    Stopped,
}

struct Shared<T, R> {
    name: String,
    router: Box<dyn Router<T, R>>,
    collectors: Vec<Collector<T, R>>,
    buffer: Mutex<Buffer<Arc<EventState<T, R>>>>,
    /// Free places in the queue: `send` takes one, a consumer gives it back on `pop`.
    slots: Semaphore,
    /// Queued events: a consumer takes one before `pop`, so it never pops an empty buffer.
    items: Semaphore,
    queue_type: QueueType,
    default_priority: i64,
    min_consumers: usize,
    max_consumers: usize,
    autoscale: bool,
    wip_margin: f64,
    monitor_interval: Duration,
    report_interval: Option<Duration>,
    busy: AtomicUsize,
    /// Consumer tasks alive.
    consumers: AtomicUsize,
    /// Consumers asked to exit at their next idle moment. Retiring rather than cancelling
    /// keeps the pool within bounds: a consumer never stops mid-event, and a new one is only
    /// spawned once pending retirements are taken back.
    retire: AtomicUsize,
    retire_notify: Notify,
    /// Sent and not yet finished.
    unfinished: AtomicUsize,
    idle: Notify,
    next_id: AtomicU64,
    arrived: AtomicU64,
    departed: AtomicU64,
    dropped: AtomicU64,
    stats: Mutex<Stats>,
    root: CancellationToken,
    tracker: TaskTracker,
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    // A panic while holding these short locks cannot leave them half-updated.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An in-process queue of events, drained by a pool of consumers that run the routed
/// collectors' processors.
///
/// Start it with [`start`](Self::start) and stop it with [`shutdown`](Self::shutdown), or use
/// the scoped [`run`](Self::run). Dropping a running queue aborts it (queued events are
/// completed as dropped).
pub struct CollectorQueue<T, R> {
    shared: Arc<Shared<T, R>>,
    state: Mutex<RunState>,
}

impl<T: Send + Sync + 'static, R: Send + Sync + 'static> CollectorQueue<T, R> {
    /// Starts configuring a queue over these collectors.
    pub fn builder(collectors: Vec<Collector<T, R>>) -> CollectorQueueBuilder<T, R> {
        CollectorQueueBuilder {
            collectors,
            router: None,
            queue_type: QueueType::Fifo,
            capacity: 1024,
            min_consumers: 1,
            max_consumers: 8,
            autoscale: true,
            default_priority: DEFAULT_PRIORITY,
            monitor_interval: Duration::from_millis(20),
            scale_down_window: Duration::from_secs(1),
            wip_margin: 0.15,
            report_interval: None,
            name: "collector-queue".into(),
        }
    }

    /// Runs the collectors' lifecycle setups, then starts the consumers and the load monitor.
    /// Starting a running queue does nothing.
    pub async fn start(&self) -> Result<(), EngineError> {
        match *lock(&self.state) {
            RunState::Running => return Ok(()),
            RunState::Stopped => return Err(EngineError::Stopped),
            RunState::Built => {}
        }
        let shared = &self.shared;
        for (i, c) in shared.collectors.iter().enumerate() {
            let Some(lc) = c.lifecycle() else { continue };
            if let Err(source) = lc.setup(c.context()).await {
                for done in shared.collectors[..i].iter().rev() {
                    if let Some(lc) = done.lifecycle() {
                        lc.teardown(done.context()).await;
                    }
                }
                return Err(EngineError::Setup {
                    collector: c.key().to_string(),
                    source,
                });
            }
        }
        let initial = if shared.autoscale {
            shared.min_consumers
        } else {
            shared.max_consumers
        };
        for _ in 0..initial {
            spawn_consumer(shared);
        }
        let monitor = Arc::clone(shared);
        shared
            .tracker
            .spawn(async move { monitor_load(monitor).await });
        *lock(&self.state) = RunState::Running;
        tracing::debug!(queue = %shared.name, consumers = initial, "collector queue started");
        Ok(())
    }

    /// A handle to send events with. Cheap to clone; usable from any task.
    pub fn get_publisher(&self) -> EventPublisher<T, R> {
        EventPublisher {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Consumers in the pool.
    pub fn consumer_count(&self) -> usize {
        self.shared.effective_consumers()
    }

    /// A metrics snapshot.
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics()
    }

    /// The queue's order.
    pub fn queue_type(&self) -> QueueType {
        self.shared.queue_type
    }

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

    /// The scoped form: start, run `f` with a publisher, then drain (up to 30 s) and shut
    /// down, even if `f` returned an error. Fails only if the start fails.
    pub async fn run<F, Fut, O>(self, f: F) -> Result<O, EngineError>
    where
        F: FnOnce(EventPublisher<T, R>) -> Fut,
        Fut: Future<Output = O>,
    {
        self.start().await?;
        let out = f(self.get_publisher()).await;
        self.shutdown(ShutdownMode::Drain {
            timeout: Duration::from_secs(30),
        })
        .await;
        Ok(out)
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
    fn effective_consumers(&self) -> usize {
        self.consumers
            .load(Ordering::SeqCst)
            .saturating_sub(self.retire.load(Ordering::SeqCst))
    }

    fn qsize(&self) -> usize {
        lock(&self.buffer).len()
    }

    fn metrics(&self) -> Metrics {
        let qsize = self.qsize();
        lock(&self.stats).snapshot(
            qsize,
            self.busy.load(Ordering::SeqCst),
            self.effective_consumers(),
            self.arrived.load(Ordering::SeqCst),
            self.departed.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst),
        )
    }

    async fn wait_idle(&self) {
        loop {
            let mut notified = pin!(self.idle.notified());
            notified.as_mut().enable();
            if self.unfinished.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Completes every event still queued as dropped.
    fn drop_queued(&self) {
        let leftovers: Vec<_> = std::iter::from_fn(|| lock(&self.buffer).pop()).collect();
        for ev in leftovers {
            self.finish_dropped(&ev, "the queue shut down before the event was processed");
            self.event_done();
        }
    }

    fn finish_dropped(&self, ev: &EventState<T, R>, why: &str) {
        let dropped = ResultList::new(vec![CollectorResult {
            collector: Arc::from(""),
            result: Err(ProcessError::Dropped(why.to_string())),
        }]);
        if ev.finish(dropped) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn event_done(&self) {
        self.departed.fetch_add(1, Ordering::SeqCst);
        if self.unfinished.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Takes one pending retirement, if any.
    fn try_retire(&self) -> bool {
        self.retire
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
            .is_ok()
    }
}

/// Sends payloads into a [`CollectorQueue`]. Cheap to clone.
pub struct EventPublisher<T, R> {
    shared: Arc<Shared<T, R>>,
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
        lock(&shared.buffer).push(Arc::clone(&state), priority);
        shared.items.add_permits(1);
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

fn spawn_consumer<T: Send + Sync + 'static, R: Send + Sync + 'static>(shared: &Arc<Shared<T, R>>) {
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

async fn monitor_load<T: Send + Sync + 'static, R: Send + Sync + 'static>(
    shared: Arc<Shared<T, R>>,
) {
    let mut tick = tokio::time::interval(shared.monitor_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_report = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shared.root.cancelled() => return,
            _ = tick.tick() => {}
        }
        let qsize = shared.qsize();
        let busy = shared.busy.load(Ordering::SeqCst);
        let consumers = shared.effective_consumers();
        let demand = qsize + busy;
        let load = demand as f64 / consumers.max(1) as f64;
        let avg_load = {
            let mut stats = lock(&shared.stats);
            stats.sample(
                load,
                shared.arrived.load(Ordering::SeqCst),
                shared.departed.load(Ordering::SeqCst),
            );
            stats.avg_load()
        };
        if shared.autoscale {
            let wanted = ((demand as f64) * (1.0 + shared.wip_margin)).ceil() as usize;
            let target = wanted.clamp(shared.min_consumers, shared.max_consumers);
            if load >= 1.0 && target > consumers {
                let mut add = target - consumers;
                // Take back pending retirements before spawning anyone new.
                while add > 0 && shared.try_retire() {
                    add -= 1;
                }
                for _ in 0..add {
                    spawn_consumer(&shared);
                }
            } else if load < 1.0
                && consumers > target
                && avg_load.is_some_and(|avg| avg < REDUCTION_THRESHOLD)
            {
                shared
                    .retire
                    .fetch_add(consumers - target, Ordering::SeqCst);
                shared.retire_notify.notify_waiters();
            } else if shared.retire.load(Ordering::SeqCst) > 0 {
                // Wake idle consumers again in case one missed the first call.
                shared.retire_notify.notify_waiters();
            }
        }
        if let Some(every) = shared.report_interval
            && last_report.elapsed() >= every
        {
            last_report = tokio::time::Instant::now();
            let m = shared.metrics();
            tracing::info!(
                queue = %shared.name, qsize = m.qsize, busy = m.busy, consumers = m.consumers,
                load = m.load, avg_load = m.avg_load, service_time = m.service_time,
                wait_time = m.wait_time, arrival_rate = m.arrival_rate,
                departure_rate = m.departure_rate, event_count = m.event_count,
                "collector queue metrics"
            );
        }
    }
}

/// Average load under which the pool shrinks.
const REDUCTION_THRESHOLD: f64 = 0.5;
