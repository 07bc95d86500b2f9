//! # switchyard-core
//!
//! The pure, I/O-free heart of Switchyard:
//!
//! * [`Event`] — the normalised envelope every source produces;
//! * [`engine`] — the in-process collector queue (the Rust form of the `event-collector`
//!   library): [`Collector`]s with processors and lifecycles, a bounded FIFO / LIFO /
//!   priority [`CollectorQueue`] drained by a consumer pool that scales between a minimum and a
//!   maximum, a [`Router`] delivering by key, topic or broadcast, and awaitable per-event
//!   results ([`CollectorEvent`], [`ResultList`]).
//!
//! The Switchyard service is this engine with each route registered as a collector; the engine
//! is equally usable on its own inside any tokio program.

#![warn(missing_docs)]

pub mod engine;
mod event;

pub use engine::{
    BoxError, Collector, CollectorEvent, CollectorQueue, CollectorQueueBuilder, CollectorResult,
    Context, DEFAULT_PRIORITY, DefaultRouter, Delivery, EngineError, EventPublisher, Lifecycle,
    Metrics, Payload, ProcessError, Processor, QueueType, ResultList, Router, SendError,
    SendPermit, ShutdownMode, ShutdownReport, TrySendError,
};
pub use event::{Event, EventBuilder};
