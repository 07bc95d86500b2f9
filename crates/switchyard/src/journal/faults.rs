//! Why the journal cannot take new events now, shared by every store.

/// Why the journal cannot take new events. A write that failed for lack of space (or any
/// storage error) is transient: the next write that succeeds clears it. A file that was
/// removed or replaced under the router is permanent: what is written now would be lost.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    transient: std::sync::RwLock<Option<String>>,
    permanent: std::sync::RwLock<Option<String>>,
}

impl Faults {
    pub(crate) fn get(&self) -> Option<String> {
        let read = |l: &std::sync::RwLock<Option<String>>| {
            l.read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        read(&self.permanent).or_else(|| read(&self.transient))
    }

    pub(crate) fn set_transient(&self, why: Option<String>) {
        let mut t = self
            .transient
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (&*t, &why) {
            (None, Some(w)) => {
                tracing::error!(reason = %w, "journal write failed; refusing new events until a write succeeds")
            }
            (Some(_), None) => tracing::info!("journal writes again; accepting new events"),
            _ => {}
        }
        *t = why;
    }

    pub(crate) fn set_permanent(&self, why: String) {
        let mut p = self
            .permanent
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.is_none() {
            tracing::error!(reason = %why, "journal lost; refusing new events (restart Switchyard)");
            *p = Some(why);
        }
    }
}
