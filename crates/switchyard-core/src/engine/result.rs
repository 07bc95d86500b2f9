use std::fmt;
use std::sync::Arc;

use super::collector::BoxError;

/// Why a collector produced no value for an event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    /// The processor returned an error.
    #[error("{0}")]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
    /// The processor panicked; the panic was caught and the consumer kept going.
    #[error("processor panicked: {0}")]
    Panicked(String),
    /// The event was never processed (the queue shut down first).
    #[error("event dropped: {0}")]
    Dropped(String),
    /// [`ResultList::first`] on an empty list (the delivery matched no collector).
    #[error("result list is empty")]
    Empty,
}

impl ProcessError {
    pub(crate) fn failed(err: BoxError) -> Self {
        Self::Failed(Arc::from(err))
    }

    /// The processor's own error, to downcast to the concrete type it returned.
    pub fn source_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Self::Failed(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// One collector's result for one event.
#[derive(Debug, Clone)]
pub struct CollectorResult<R> {
    /// Key of the collector that produced it (empty for a dropped event).
    pub collector: Arc<str>,
    /// What the processor returned.
    pub result: Result<R, ProcessError>,
}

/// The results of every collector an event was delivered to, in routing order.
///
/// A delivery that matched no collector yields an empty list, not an error.
#[derive(Debug, Clone)]
pub struct ResultList<R> {
    results: Vec<CollectorResult<R>>,
}

impl<R> ResultList<R> {
    pub(crate) fn new(results: Vec<CollectorResult<R>>) -> Self {
        Self { results }
    }

    /// The first result; [`ProcessError::Empty`] if there is none.
    pub fn first(&self) -> Result<&R, ProcessError> {
        match self.results.first() {
            Some(r) => r.result.as_ref().map_err(Clone::clone),
            None => Err(ProcessError::Empty),
        }
    }

    /// The result of the collector with this key.
    pub fn get(&self, collector: &str) -> Option<&Result<R, ProcessError>> {
        self.results
            .iter()
            .find(|r| &*r.collector == collector)
            .map(|r| &r.result)
    }

    /// Iterates over the per-collector results.
    pub fn iter(&self) -> std::slice::Iter<'_, CollectorResult<R>> {
        self.results.iter()
    }

    /// Number of results.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether the event reached no collector.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// Whether every collector succeeded (true for an empty list).
    pub fn all_ok(&self) -> bool {
        self.results.iter().all(|r| r.result.is_ok())
    }
}

impl<R> IntoIterator for ResultList<R> {
    type Item = CollectorResult<R>;
    type IntoIter = std::vec::IntoIter<CollectorResult<R>>;
    fn into_iter(self) -> Self::IntoIter {
        self.results.into_iter()
    }
}

impl<'a, R> IntoIterator for &'a ResultList<R> {
    type Item = &'a CollectorResult<R>;
    type IntoIter = std::slice::Iter<'a, CollectorResult<R>>;
    fn into_iter(self) -> Self::IntoIter {
        self.results.iter()
    }
}

impl<R: fmt::Debug> fmt::Display for ResultList<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for r in &self.results {
            match &r.result {
                Ok(v) => list.entry(&format_args!("{}: Ok({v:?})", r.collector)),
                Err(e) => list.entry(&format_args!("{}: Error({e})", r.collector)),
            };
        }
        list.finish()
    }
}
