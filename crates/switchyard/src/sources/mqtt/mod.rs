//! MQTT subscriptions, QoS 1 on a persistent session. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
#[cfg(feature = "mqtt")]
mod source;

pub use config::*;
#[cfg(feature = "mqtt")]
pub use source::*;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec, check_url};

impl SourceSpec for MqttConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!("mqtt {} {:?}", crate::secrets::url(&self.url), self.topics)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        check_url(&self.url, &["mqtt", "tcp"])?;
        if self.topics.is_empty() {
            return Err(("topics", "expected at least one topic filter".into()));
        }
        match &self.id_field {
            Some(p) if !p.starts_with('/') => Err((
                "id_field",
                format!("expected a JSON pointer such as \"/id\", got {p:?}"),
            )),
            _ => Ok(()),
        }
    }

    fn missing_feature(&self) -> Option<&'static str> {
        (!cfg!(feature = "mqtt")).then_some("mqtt")
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        #[cfg(feature = "mqtt")]
        set.spawn(crate::sources::runtime::run(
            self.clone(),
            dispatch.clone(),
            stop.clone(),
        ));
        #[cfg(not(feature = "mqtt"))]
        let _ = (dispatch, stop, set);
    }
}
