//! Which pending events this process holds.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The events this process is working on: accepted or resumed and not yet finished. An
/// event pending in the journal and in no one's hands (its finish could not be written, a
/// retry was interrupted) is what the sweep (`Dispatcher::sweep`, in the pipeline) picks up
/// again. Counted: a redelivery that races its first delivery holds the event too, and it is
/// let go when the last of them finishes.
#[derive(Debug, Default)]
pub struct Owned {
    held: Mutex<HashMap<String, usize>>,
    /// Woken whenever an event is let go by its last holder.
    released: tokio::sync::Notify,
}

impl Owned {
    fn map(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no one holds `id`.
    pub async fn until_free(&self, id: &str) {
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.holds(id) {
                return;
            }
            notified.await;
        }
    }

    /// Takes an event; true when no one held it before.
    pub fn claim(&self, id: &str) -> bool {
        let mut m = self.map();
        let n = m.entry(id.to_string()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Takes an event only when no one holds it; whether it did.
    pub fn claim_free(&self, id: &str) -> bool {
        let mut m = self.map();
        if m.contains_key(id) {
            return false;
        }
        m.insert(id.to_string(), 1);
        true
    }

    /// Lets one hold of an event go (finished, or left pending for the sweep).
    pub fn release(&self, id: &str) {
        let mut m = self.map();
        if let Some(n) = m.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                m.remove(id);
                drop(m);
                self.released.notify_waiters();
            }
        }
    }

    /// Whether an event is held.
    pub fn holds(&self, id: &str) -> bool {
        self.map().contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_counted() {
        let o = Owned::default();
        assert!(o.claim("a"));
        assert!(!o.claim("a"), "a second hold");
        assert!(!o.claim_free("a"));
        o.release("a");
        assert!(o.holds("a"), "still held once");
        o.release("a");
        assert!(!o.holds("a"));
        assert!(o.claim_free("a"));
        o.release("b"); // not held: nothing happens
    }
}
