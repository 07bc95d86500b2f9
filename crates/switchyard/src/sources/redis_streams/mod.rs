//! Redis Streams through a consumer group. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
#[cfg(feature = "redis-streams")]
mod source;

pub use config::*;
#[cfg(feature = "redis-streams")]
pub use source::*;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec, check_url};

impl SourceSpec for RedisStreamsConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!("redis stream {} (group {})", self.stream, self.group)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        check_url(&self.url, &["redis", "rediss"])
    }

    fn missing_feature(&self) -> Option<&'static str> {
        (!cfg!(feature = "redis-streams")).then_some("redis-streams")
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        #[cfg(feature = "redis-streams")]
        set.spawn(crate::sources::runtime::run(
            self.clone(),
            dispatch.clone(),
            stop.clone(),
        ));
        #[cfg(not(feature = "redis-streams"))]
        let _ = (dispatch, stop, set);
    }
}
