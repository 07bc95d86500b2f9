//! Standard input: one JSON document per line. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
mod source;

pub use config::*;
pub use source::*;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec};

impl SourceSpec for StdinConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        "stdin".to_string()
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        Ok(())
    }

    fn missing_feature(&self) -> Option<&'static str> {
        None
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        let (c, d, s) = (self.clone(), dispatch.clone(), stop.clone());
        set.spawn(async move { source::run(c, std::io::stdin(), d, s).await });
    }
}
