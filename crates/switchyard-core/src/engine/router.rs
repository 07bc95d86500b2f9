use std::collections::HashMap;

use super::collector::Collector;
use super::payload::{Delivery, Payload};

/// Chooses the collectors a payload goes to.
///
/// The queue builds its router from the collector list (see
/// [`CollectorQueueBuilder::router`](super::CollectorQueueBuilder::router)) and runs the chosen
/// collectors concurrently. Returning no collector is fine: the event's
/// [`ResultList`](super::ResultList) is then empty.
pub trait Router<T, R>: Send + Sync + 'static {
    /// The collectors for this payload, each at most once.
    fn route(&self, payload: &Payload<T>) -> Vec<Collector<T, R>>;
}

/// Delivery by key, by topic or broadcast, as the payload says.
///
/// ```
/// use switchyard_core::engine::{Collector, Context, DefaultRouter, Payload, Router, BoxError};
/// use std::sync::Arc;
/// fn c(key: &str, topics: &[&str]) -> Collector<(), ()> {
///     Collector::new(key, |_: Arc<Payload<()>>, _: Context| async { Ok::<_, BoxError>(()) })
///         .with_topics(topics.iter().copied())
/// }
/// let router = DefaultRouter::new(&[c("a", &["x"]), c("b", &["x", "y"]), c("c", &[])]);
/// let keys = |p: &Payload<()>| router.route(p).iter().map(|c| c.key().to_string()).collect::<Vec<_>>();
/// assert_eq!(keys(&Payload::new(())), ["a", "b", "c"]);
/// assert_eq!(keys(&Payload::to_keys((), ["c", "zzz"])), ["c"]);
/// assert_eq!(keys(&Payload::to_topics((), ["y", "x"])), ["a", "b"]);
/// assert!(keys(&Payload::to_topics((), ["nobody"])).is_empty());
/// ```
pub struct DefaultRouter<T, R> {
    collectors: Vec<Collector<T, R>>,
    by_key: HashMap<String, usize>,
    by_topic: HashMap<String, Vec<usize>>,
}

impl<T: 'static, R: 'static> DefaultRouter<T, R> {
    /// Indexes the collectors by key and by topic.
    pub fn new(collectors: &[Collector<T, R>]) -> Self {
        let mut by_key = HashMap::new();
        let mut by_topic: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in collectors.iter().enumerate() {
            by_key.insert(c.key().to_string(), i);
            for t in c.topics() {
                let list = by_topic.entry(t.clone()).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        Self {
            collectors: collectors.to_vec(),
            by_key,
            by_topic,
        }
    }

    fn pick(&self, mut indexes: Vec<usize>) -> Vec<Collector<T, R>> {
        // Collector order, each once, whatever order or repetition the payload used.
        indexes.sort_unstable();
        indexes.dedup();
        indexes
            .into_iter()
            .map(|i| self.collectors[i].clone())
            .collect()
    }
}

impl<T: 'static, R: 'static> Router<T, R> for DefaultRouter<T, R> {
    fn route(&self, payload: &Payload<T>) -> Vec<Collector<T, R>> {
        match payload.delivery() {
            Delivery::Broadcast => self.collectors.clone(),
            Delivery::Keys => self.pick(
                payload
                    .keys()
                    .iter()
                    .filter_map(|k| self.by_key.get(k).copied())
                    .collect(),
            ),
            Delivery::Topics => self.pick(
                payload
                    .topics()
                    .iter()
                    .filter_map(|t| self.by_topic.get(t))
                    .flatten()
                    .copied()
                    .collect(),
            ),
        }
    }
}
