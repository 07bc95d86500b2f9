//! AMQP 0.9.1 (RabbitMQ) queues. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
#[cfg(feature = "amqp")]
mod source;

pub use config::*;
#[cfg(feature = "amqp")]
pub use source::*;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec, check_url};

impl SourceSpec for AmqpConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!("amqp queue {}", self.queue)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        check_url(&self.url, &["amqp", "amqps"])
    }

    fn missing_feature(&self) -> Option<&'static str> {
        (!cfg!(feature = "amqp")).then_some("amqp")
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        #[cfg(feature = "amqp")]
        set.spawn(crate::sources::runtime::run(
            self.clone(),
            dispatch.clone(),
            stop.clone(),
        ));
        #[cfg(not(feature = "amqp"))]
        let _ = (dispatch, stop, set);
    }
}
