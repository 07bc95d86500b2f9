//! Kafka topics through a consumer group. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
#[cfg(feature = "kafka")]
mod source;

pub use config::*;
#[cfg(feature = "kafka")]
pub use source::*;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec};

impl SourceSpec for KafkaConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!(
            "kafka {} {:?} (group {})",
            self.brokers, self.topics, self.group
        )
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.topics.is_empty() {
            return Err(("topics", "expected at least one topic".into()));
        }
        // librdkafka checks each option's name and value when it is set, without a client;
        // an option it refuses would otherwise fail every connect, retried forever.
        #[cfg(feature = "kafka")]
        source::check_options(&self.options).map_err(|why| ("options", why))?;
        Ok(())
    }

    fn missing_feature(&self) -> Option<&'static str> {
        (!cfg!(feature = "kafka")).then_some("kafka")
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        #[cfg(feature = "kafka")]
        set.spawn(crate::sources::runtime::run(
            self.clone(),
            dispatch.clone(),
            stop.clone(),
        ));
        #[cfg(not(feature = "kafka"))]
        let _ = (dispatch, stop, set);
    }
}
