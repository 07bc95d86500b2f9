//! Webhooks: `POST /hooks/<source-name>`, all served by one HTTP server. See `source.rs` for how it reads and acknowledges, `config.rs` for its settings.

mod config;
mod limit;
pub mod listener;
mod request;
mod respond;
mod source;
mod tls;
mod verify;

pub use config::*;
pub use request::prefect_event;
pub use source::*;
pub use tls::acceptor as tls_acceptor;
pub use verify::{Rejected, Verified, Verifier};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sources::{Dispatcher, SourceSpec};

impl SourceSpec for WebhookConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        match &self.verify {
            Some(v) => format!("webhook POST /hooks/{} (verify {})", self.name, v.scheme()),
            None => format!("webhook POST /hooks/{} (unauthenticated)", self.name),
        }
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(r) = &self.rate_limit {
            if !(r.per_second.is_finite() && (0.001..=100_000.0).contains(&r.per_second)) {
                return Err((
                    "rate_limit",
                    format!(
                        "per_second: expected a number from 0.001 to 100000, got {}",
                        r.per_second
                    ),
                ));
            }
            if r.burst == Some(0) {
                return Err(("rate_limit", "burst: expected at least 1".into()));
            }
        }
        if let Some(t) = &self.template {
            crate::template::TextTemplate::compile_lenient(t).map_err(|e| ("template", e))?;
        }
        match &self.verify {
            Some(v) => Verifier::new(v).map(|_| ()),
            None => Ok(()),
        }
    }

    fn missing_feature(&self) -> Option<&'static str> {
        None
    }

    fn spawn(&self, dispatch: &Dispatcher, stop: &CancellationToken, set: &mut JoinSet<()>) {
        // Served together with the other hooks ([`serve`]).
        let _ = (dispatch, stop, set);
    }
}

/// A header map from pairs, for tests.
#[cfg(test)]
fn test_headers(pairs: &[(&str, &str)]) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::try_from(*k),
            axum::http::HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    h
}
