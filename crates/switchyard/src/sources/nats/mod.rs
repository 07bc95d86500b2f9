//! NATS: JetStream through a durable pull consumer, or core NATS. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
#[cfg(feature = "nats")]
mod source;

pub use config::*;
#[cfg(feature = "nats")]
pub use source::*;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec, check_url};

impl SourceSpec for NatsConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        match self.mode {
            NatsMode::Jetstream => format!(
                "NATS JetStream stream {}",
                self.stream.as_deref().unwrap_or_default()
            ),
            NatsMode::Core => format!("NATS core subjects {:?} (at most once)", self.subjects),
        }
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        check_url(&self.url, &["nats", "tls"])?;
        match self.mode {
            NatsMode::Jetstream if self.stream.is_none() => {
                Err(("stream", "expected the JetStream stream name".into()))
            }
            NatsMode::Core if self.subjects.is_empty() => {
                Err(("subjects", "expected at least one subject".into()))
            }
            _ => Ok(()),
        }
    }

    fn missing_feature(&self) -> Option<&'static str> {
        (!cfg!(feature = "nats")).then_some("nats")
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        #[cfg(feature = "nats")]
        set.spawn(crate::sources::runtime::run(
            self.clone(),
            dispatch.clone(),
            stop.clone(),
        ));
        #[cfg(not(feature = "nats"))]
        let _ = (dispatch, stop, set);
    }
}
