//! Which pending events this process holds.

/// The events this process is working on: accepted or resumed and not yet finished. An
/// event pending in the journal and in no one's hands (its finish could not be written, a
/// retry was interrupted) is what the sweep (`Dispatcher::sweep`, in the pipeline) picks up again.
#[derive(Debug, Default)]
pub struct Owned(std::sync::Mutex<std::collections::HashSet<String>>);

impl Owned {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes an event; false when it is already held.
    pub fn claim(&self, id: &str) -> bool {
        self.set().insert(id.to_string())
    }

    /// Lets an event go (finished, or left pending for the sweep).
    pub fn release(&self, id: &str) {
        self.set().remove(id);
    }

    /// Whether an event is held.
    pub fn holds(&self, id: &str) -> bool {
        self.set().contains(id)
    }
}
