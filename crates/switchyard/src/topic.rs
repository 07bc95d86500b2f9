//! Typed routing: what a route subscribes to and what an event is published under.
//!
//! The engine routes by string keys; every key is made here, from a [`Topic`], so a new kind
//! of indexed predicate is one more variant rather than a string format spread across
//! modules. Routes subscribe once, at start ([`crate::routes::Route::subscriptions`]); the
//! pipeline publishes each event under [`Topic::of_event`].

use std::fmt;

use switchyard_core::Event;

/// A key of the engine's route index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Every event of a source (a trigger's firings are the events of its own source,
    /// [`firing_source`]).
    Source(String),
    /// The events of a source with one exact name: routes that can only apply to exact
    /// names subscribe to these, so events of other names never reach them.
    Named {
        /// The source.
        source: String,
        /// The event name.
        name: String,
    },
}

impl Topic {
    /// The topics an event is published under.
    pub fn of_event(event: &Event) -> [Topic; 2] {
        [
            Topic::Source(event.source.clone()),
            Topic::Named {
                source: event.source.clone(),
                name: event.name.clone(),
            },
        ]
    }

    /// The engine's key.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Source(source) => f.write_str(source),
            Topic::Named { source, name } => write!(f, "{source}#{name}"),
        }
    }
}

/// The engine keys an event is published under.
pub fn keys_of(event: &Event) -> [String; 2] {
    Topic::of_event(event).map(|t| t.key())
}

/// The source name of a route's firings.
pub fn firing_source(route: &str) -> String {
    format!("{FIRING}{route}")
}

/// What every firing's source starts with.
const FIRING: &str = "trigger:";

/// Whether `source` is a route's firings rather than a configured source.
pub fn is_firing_source(source: &str) -> bool {
    source.starts_with(FIRING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let e = Event::builder("orders", "order.created", serde_json::Value::Null).build();
        assert_eq!(keys_of(&e), ["orders", "orders#order.created"]);
        assert_eq!(Topic::Source(firing_source("r")).key(), "trigger:r");
    }
}
