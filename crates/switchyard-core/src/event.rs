//! The normalised event envelope.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event, whatever source it came from.
///
/// `id` is stable for a given source message: sources that have coordinates (a Kafka
/// topic/partition/offset, a broker message id) derive it from them so a redelivery keeps its
/// id; the others get a time-ordered UUIDv7. The id is what makes a redelivered event start
/// the same Prefect run instead of a second one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Stable identifier (see the type docs).
    pub id: String,
    /// Name of the configured source that received the event.
    pub source: String,
    /// Event type, e.g. `order.created`.
    pub name: String,
    /// When the event happened, as told by the producer; `received` otherwise.
    pub occurred: DateTime<Utc>,
    /// When Switchyard received it.
    pub received: DateTime<Utc>,
    /// The message body.
    pub payload: Value,
    /// String labels, Prefect resource-label style (`topic`, `header.x`, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Event {
    /// Starts an event from `source` named `name` carrying `payload`, stamped now, with a fresh
    /// UUIDv7 id.
    pub fn builder(
        source: impl Into<String>,
        name: impl Into<String>,
        payload: Value,
    ) -> EventBuilder {
        let now = Utc::now();
        EventBuilder {
            event: Event {
                id: uuid::Uuid::now_v7().to_string(),
                source: source.into(),
                name: name.into(),
                occurred: now,
                received: now,
                payload,
                labels: BTreeMap::new(),
            },
        }
    }
}

/// Builder for [`Event`]; see [`Event::builder`].
///
/// ```
/// use switchyard_core::Event;
/// let event = Event::builder("orders", "order.created", serde_json::json!({"id": 7}))
///     .id("orders-0-42")
///     .label("topic", "orders")
///     .build();
/// assert_eq!(event.id, "orders-0-42");
/// assert_eq!(event.labels["topic"], "orders");
/// ```
#[derive(Debug, Clone)]
pub struct EventBuilder {
    event: Event,
}

impl EventBuilder {
    /// Sets a stable id (derived from source coordinates).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.event.id = id.into();
        self
    }

    /// Sets when the event happened.
    pub fn occurred(mut self, at: DateTime<Utc>) -> Self {
        self.event.occurred = at;
        self
    }

    /// Adds one label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.event.labels.insert(key.into(), value.into());
        self
    }

    /// Finishes the event.
    pub fn build(self) -> Event {
        self.event
    }
}
