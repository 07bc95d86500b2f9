use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::context::Context;
use super::payload::Payload;

/// The error type processors and lifecycles may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An event handler: `(payload, context) -> Result`.
///
/// Implemented for every `Fn(Arc<Payload<T>>, Context) -> impl Future<Output = Result<R, E>>`
/// with `E: Into<BoxError>`, so a plain `async fn` or an `async move` closure is a processor.
pub trait Processor<T, R>: Send + Sync + 'static {
    /// Handles one payload.
    fn process(
        &self,
        payload: Arc<Payload<T>>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<R, BoxError>>;
}

impl<T, R, E, F, Fut> Processor<T, R> for F
where
    F: Fn(Arc<Payload<T>>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn process(
        &self,
        payload: Arc<Payload<T>>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<R, BoxError>> {
        let fut = self(payload, ctx);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// Setup and teardown around a queue's life, e.g. opening a connection pool into the
/// collector's [`Context`] and closing it.
///
/// `setup` runs when the queue starts, in collector order; if one fails, the collectors already
/// set up are torn down and the start fails. `teardown` runs at shutdown, in reverse order,
/// after the last event was processed.
pub trait Lifecycle: Send + Sync + 'static {
    /// Prepares the context.
    fn setup<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, Result<(), BoxError>>;
    /// Releases what `setup` acquired.
    fn teardown<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, ()>;
}

/// A named event processor, optionally subscribed to topics, with its own context and an
/// optional lifecycle. Cheap to clone.
///
/// ```
/// use switchyard_core::engine::{Collector, Context, Payload, BoxError};
/// use std::sync::Arc;
/// let c: Collector<u32, u32> = Collector::new("double", |p: Arc<Payload<u32>>, _ctx: Context| async move {
///     Ok::<_, BoxError>(p.value() * 2)
/// })
/// .with_topics(["numbers"]);
/// assert_eq!(c.key(), "double");
/// assert_eq!(c.topics(), ["numbers"]);
/// ```
pub struct Collector<T, R> {
    key: Arc<str>,
    topics: Arc<[String]>,
    processor: Arc<dyn Processor<T, R>>,
    lifecycle: Option<Arc<dyn Lifecycle>>,
    ctx: Context,
}

impl<T, R> Clone for Collector<T, R> {
    fn clone(&self) -> Self {
        Self {
            key: Arc::clone(&self.key),
            topics: Arc::clone(&self.topics),
            processor: Arc::clone(&self.processor),
            lifecycle: self.lifecycle.clone(),
            ctx: self.ctx.clone(),
        }
    }
}

impl<T: Send + Sync + 'static, R: Send + 'static> Collector<T, R> {
    /// A collector with this key and processor, no topics and an empty context.
    /// (An empty key is rejected when the queue is built.)
    pub fn new(key: impl Into<String>, processor: impl Processor<T, R>) -> Self {
        Self {
            key: Arc::from(key.into()),
            topics: Arc::from(Vec::new()),
            processor: Arc::new(processor),
            lifecycle: None,
            ctx: Context::new(),
        }
    }

    /// Subscribes the collector to topics.
    pub fn with_topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Uses this context (e.g. pre-filled with shared clients).
    pub fn with_context(mut self, ctx: Context) -> Self {
        self.ctx = ctx;
        self
    }

    /// Attaches a lifecycle.
    pub fn with_lifecycle(mut self, lifecycle: impl Lifecycle) -> Self {
        self.lifecycle = Some(Arc::new(lifecycle));
        self
    }
}

impl<T: 'static, R: 'static> Collector<T, R> {
    /// The routing key.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn key_arc(&self) -> Arc<str> {
        Arc::clone(&self.key)
    }

    /// The subscribed topics.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The collector's context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub(crate) fn lifecycle(&self) -> Option<&dyn Lifecycle> {
        self.lifecycle.as_deref()
    }

    /// Runs the processor on one payload (errors are returned, panics propagate: the queue
    /// catches them).
    pub fn process(&self, payload: Arc<Payload<T>>) -> BoxFuture<'static, Result<R, BoxError>> {
        self.processor.process(payload, self.ctx.clone())
    }

    /// Whether two handles are the same collector.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.processor, &other.processor) && Arc::ptr_eq(&self.key, &other.key)
    }
}

impl<T, R> fmt::Debug for Collector<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("key", &self.key)
            .field("topics", &self.topics)
            .field("lifecycle", &self.lifecycle.is_some())
            .finish()
    }
}
