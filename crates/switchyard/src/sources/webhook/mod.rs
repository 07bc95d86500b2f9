//! Webhooks: `POST /hooks/<source-name>`, all served by one HTTP server. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
mod source;

pub use config::*;
pub use source::*;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec};

impl SourceSpec for WebhookConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!("webhook POST /hooks/{}", self.name)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        Ok(())
    }

    fn missing_feature(&self) -> Option<&'static str> {
        None
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        // Served together with the other hooks ([`serve`]).
        let _ = (dispatch, stop, set);
    }
}
