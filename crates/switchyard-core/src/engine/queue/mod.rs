//! The collector queue: a bounded buffer in front of a pool of consumers.
//!
//! - this file: building a queue, starting it, and the state its parts share;
//! - [`publisher`]: sending into it; [`pool`]: the consumers; [`autoscale`]: sizing the pool
//!   between its bounds; [`shutdown`]: draining or aborting it.

mod autoscale;
mod pool;
mod publisher;
mod shutdown;

pub use publisher::{EventPublisher, SendPermit};
pub use shutdown::{ShutdownMode, ShutdownReport};

use autoscale::monitor_load;
use pool::spawn_consumer;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::buffer::{Buffer, DEFAULT_PRIORITY, QueueType};
use super::collector::{BoxError, Collector};
use super::event::EventState;
use super::metrics::{Metrics, Stats};
use super::payload::Payload;
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
            demand: Notify::new(),
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
    /// Wakes the autoscaler when an arrival leaves more demand than consumers, so the pool
    /// grows at once rather than at the next tick.
    demand: Notify,
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
