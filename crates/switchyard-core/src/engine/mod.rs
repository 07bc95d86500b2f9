//! The collector queue engine: the Rust form of the `event-collector` library.
//!
//! The walkthrough of the original translates line by line:
//!
//! ```
//! use switchyard_core::engine::{Collector, CollectorQueue, Context, Payload, BoxError};
//! use serde_json::{json, Value};
//! use std::sync::Arc;
//!
//! // 1. a Collector with an event handling function
//! async fn event_handler(payload: Arc<Payload<Value>>, _ctx: Context) -> Result<Value, BoxError> {
//!     Ok(json!({"data": payload.value(), "status": "OK"}))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let collector = Collector::new("demo-collector", event_handler);
//! // 2. a CollectorQueue running a pool of 1..=100 consumers
//! let queue = CollectorQueue::builder(vec![collector])
//!     .min_consumers(1)
//!     .max_consumers(100)
//!     .build()?;
//! // 3. run it (setup and shutdown around the closure) and publish events
//! queue
//!     .run(|publisher| async move {
//!         for i in 0..3 {
//!             let event = publisher.send(Payload::new(json!({"payload": format!("payload data {i}")}))).await?;
//!             let results = event.wait().await;
//!             let result = results.first()?;
//!             println!("{result}");
//!         }
//!         Ok::<_, BoxError>(())
//!     })
//!     .await??;
//! # Ok(())
//! # }
//! ```

mod buffer;
mod collector;
mod context;
mod event;
mod metrics;
mod payload;
mod queue;
mod result;
mod router;

pub use buffer::{DEFAULT_PRIORITY, QueueType};
pub use collector::{BoxError, Collector, Lifecycle, Processor};
pub use context::Context;
pub use event::CollectorEvent;
pub use metrics::Metrics;
pub use payload::{Delivery, Payload};
pub use queue::{
    CollectorQueue, CollectorQueueBuilder, EngineError, EventPublisher, SendError, SendPermit,
    ShutdownMode, ShutdownReport, TrySendError,
};
pub use result::{CollectorResult, ProcessError, ResultList};
pub use router::{DefaultRouter, Router};
