//! Azure Storage Queues. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
#[cfg(feature = "azure")]
mod source;
pub mod target;

pub use config::*;
#[cfg(feature = "azure")]
pub use source::*;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec};

impl SourceSpec for AzureQueueConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        match target::target(self) {
            Ok(t) => format!("azure queue {} ({})", t.queue_url, t.auth.describe()),
            Err((key, m)) => format!("azure queue: {key}: {m}"),
        }
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=32).contains(&self.batch.get()) {
            return Err(("batch", format!("expected 1 to 32, got {}", self.batch)));
        }
        let day = std::time::Duration::from_secs(24 * 3600);
        if self.visibility_timeout < std::time::Duration::from_secs(1)
            || self.visibility_timeout > 7 * day
        {
            return Err((
                "visibility_timeout",
                "expected between 1s and 7 days".into(),
            ));
        }
        if self.max_dequeue_count == 0 {
            return Err(("max_dequeue_count", "expected at least 1".into()));
        }
        target::target(self).map(|_| ())
    }

    fn missing_feature(&self) -> Option<&'static str> {
        (!cfg!(feature = "azure")).then_some("azure")
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        #[cfg(feature = "azure")]
        set.spawn(crate::sources::runtime::run(
            self.clone(),
            dispatch.clone(),
            stop.clone(),
        ));
        #[cfg(not(feature = "azure"))]
        let _ = (dispatch, stop, set);
    }
}
