//! The live tap: every route's decision as it happens (and every refusal), for
//! `GET /api/v1/tap` (Server-Sent Events) and `switchyard tap`.
//!
//! A bounded broadcast: nothing is built or sent while no one listens, and a listener that
//! falls behind skips what it missed (it is told how many) instead of slowing the router.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Decisions kept for a slow listener before it skips ahead.
const CAPACITY: usize = 1024;

/// One line of the tap.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tapped {
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The source.
    pub source: String,
    /// The event (none for a request refused before it became one).
    pub event_id: Option<String>,
    /// The event's name.
    pub event: Option<String>,
    /// The route (none for a refusal).
    pub route: Option<String>,
    /// `skipped`, `ran`, `dead`, `absorbed`, `fired`, or `refused`.
    pub decision: String,
    /// Why, or what.
    pub detail: Option<String>,
    /// The flow run, for `ran`.
    pub flow_run_id: Option<String>,
}

static TAP: LazyLock<broadcast::Sender<Tapped>> = LazyLock::new(|| broadcast::channel(CAPACITY).0);

/// Whether anyone listens (callers skip building a line when not).
pub fn listening() -> bool {
    TAP.receiver_count() > 0
}

/// Sends a line to every listener.
pub fn publish(line: impl FnOnce() -> Tapped) {
    if listening() {
        let _ = TAP.send(line());
    }
}

/// Sends a route's decision for `event` to every listener; `detail` says `(why or what, the
/// flow run)`, built only when someone listens.
pub fn decided(
    event: &switchyard_core::Event,
    route: &str,
    decision: &str,
    detail: impl FnOnce() -> (Option<String>, Option<String>),
) {
    publish(|| {
        let (detail, flow_run_id) = detail();
        Tapped {
            at: chrono::Utc::now(),
            source: event.source.clone(),
            event_id: Some(event.id.clone()),
            event: Some(event.name.clone()),
            route: Some(route.to_string()),
            decision: decision.into(),
            detail,
            flow_run_id,
        }
    });
}

/// A new listener.
pub fn subscribe() -> broadcast::Receiver<Tapped> {
    TAP.subscribe()
}

/// What a listener wants to see.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct TapFilter {
    /// Only this source.
    pub source: Option<String>,
    /// Only this route.
    pub route: Option<String>,
    /// Only this decision.
    pub decision: Option<String>,
}

impl TapFilter {
    /// Whether `t` passes.
    pub fn passes(&self, t: &Tapped) -> bool {
        // An empty parameter (`?source=`) is no filter, as a blank form field means.
        fn wanted(f: &Option<String>) -> Option<&str> {
            f.as_deref().filter(|v| !v.is_empty())
        }
        wanted(&self.source).is_none_or(|s| s == t.source)
            && wanted(&self.route).is_none_or(|r| t.route.as_deref() == Some(r))
            && wanted(&self.decision).is_none_or(|d| d == t.decision)
    }
}

/// One readable line: `12:00:01 orders/orders:42 big-orders → ran (run 1f…) — detail`.
pub fn render(t: &Tapped) -> String {
    let mut line = format!(
        "{} {}/{}",
        t.at.format("%H:%M:%S%.3f"),
        t.source,
        t.event_id.as_deref().unwrap_or("-")
    );
    if let Some(e) = &t.event {
        line.push_str(&format!(" [{e}]"));
    }
    if let Some(r) = &t.route {
        line.push_str(&format!(" {r}"));
    }
    line.push_str(&format!(" → {}", t.decision));
    if let Some(run) = &t.flow_run_id {
        line.push_str(&format!(" run {run}"));
    }
    if let Some(d) = &t.detail {
        line.push_str(&format!(" — {d}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_is_sent_without_listeners_and_filters_apply() {
        let mut built = false;
        publish(|| {
            built = true;
            unreachable_line()
        });
        assert!(!built, "no line is built while no one listens");
        let mut rx = subscribe();
        publish(unreachable_line);
        let got = rx.recv().await.unwrap();
        assert_eq!(got.decision, "ran");
        let f = TapFilter {
            route: Some("r".into()),
            ..Default::default()
        };
        assert!(f.passes(&got));
        assert!(
            !TapFilter {
                decision: Some("dead".into()),
                ..Default::default()
            }
            .passes(&got)
        );
        assert!(
            render(&got).contains("s/e-1 [n] r → ran run x"),
            "{}",
            render(&got)
        );
    }

    fn unreachable_line() -> Tapped {
        Tapped {
            at: chrono::Utc::now(),
            source: "s".into(),
            event_id: Some("e-1".into()),
            event: Some("n".into()),
            route: Some("r".into()),
            decision: "ran".into(),
            detail: None,
            flow_run_id: Some("x".into()),
        }
    }
}
