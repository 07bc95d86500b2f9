use serde::{Deserialize, Serialize};

/// How a payload finds its collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Every collector (the default).
    #[default]
    Broadcast,
    /// The collectors whose key is one of the payload's keys.
    Keys,
    /// The collectors subscribed to one of the payload's topics.
    Topics,
}

/// A value plus the metadata that says how to deliver it.
///
/// ```
/// use switchyard_core::engine::{Delivery, Payload};
/// let p = Payload::to_topics("hello", ["greetings"]).with_priority(1);
/// assert_eq!(p.delivery(), Delivery::Topics);
/// assert_eq!(p.topics(), ["greetings"]);
/// assert_eq!(p.priority(), Some(1));
/// assert_eq!(*p.value(), "hello");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Payload<T> {
    value: T,
    delivery: Delivery,
    keys: Vec<String>,
    topics: Vec<String>,
    priority: Option<i64>,
}

impl<T> Payload<T> {
    /// A payload broadcast to every collector.
    pub fn new(value: T) -> Self {
        Self {
            value,
            delivery: Delivery::Broadcast,
            keys: Vec::new(),
            topics: Vec::new(),
            priority: None,
        }
    }

    /// A payload for the collectors with these keys.
    pub fn to_keys<I, S>(value: T, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut p = Self::new(value);
        p.set_delivery(Delivery::Keys, keys.into_iter().map(Into::into).collect());
        p
    }

    /// A payload for the collectors subscribed to these topics.
    pub fn to_topics<I, S>(value: T, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut p = Self::new(value);
        p.set_delivery(
            Delivery::Topics,
            topics.into_iter().map(Into::into).collect(),
        );
        p
    }

    /// Sets the priority used by a [`QueueType::Priority`](super::QueueType) queue; lower
    /// numbers are served first.
    pub fn with_priority(mut self, priority: i64) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Changes the delivery mode; `targets` are keys for [`Delivery::Keys`], topics for
    /// [`Delivery::Topics`] and ignored for [`Delivery::Broadcast`].
    pub fn set_delivery(&mut self, delivery: Delivery, targets: Vec<String>) {
        self.delivery = delivery;
        match delivery {
            Delivery::Keys => self.keys = targets,
            Delivery::Topics => self.topics = targets,
            Delivery::Broadcast => {}
        }
    }

    /// Sets the priority in place.
    pub fn set_priority(&mut self, priority: i64) {
        self.priority = Some(priority);
    }

    /// The carried value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Takes the carried value.
    pub fn into_value(self) -> T {
        self.value
    }

    /// The delivery mode.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// Target collector keys (for [`Delivery::Keys`]).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Target topics (for [`Delivery::Topics`]).
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The explicit priority, if any.
    pub fn priority(&self) -> Option<i64> {
        self.priority
    }
}
