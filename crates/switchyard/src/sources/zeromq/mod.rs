//! ZeroMQ SUB or PULL sockets, at most once. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
#[cfg(feature = "zeromq")]
mod source;

pub use config::*;
#[cfg(feature = "zeromq")]
pub use source::*;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec, check_url};

impl SourceSpec for ZmqConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!(
            "ZeroMQ {} {} (at most once)",
            match self.socket {
                ZmqSocket::Sub => "SUB",
                ZmqSocket::Pull => "PULL",
            },
            self.endpoint
        )
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        check_url(&self.endpoint, &["tcp"]).map_err(|(_, m)| ("endpoint", m))
    }

    fn missing_feature(&self) -> Option<&'static str> {
        (!cfg!(feature = "zeromq")).then_some("zeromq")
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        #[cfg(feature = "zeromq")]
        set.spawn(crate::sources::runtime::run(
            self.clone(),
            dispatch.clone(),
            stop.clone(),
        ));
        #[cfg(not(feature = "zeromq"))]
        let _ = (dispatch, stop, set);
    }
}
