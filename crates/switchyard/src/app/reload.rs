//! What a reload changes, decided from the running config and the new one before anything is
//! touched (the topology then applies it):
//!
//! - **Routes** are swapped whole, between events ([`crate::routes::Live`]). A route whose
//!   settings did not change is kept as it is; a changed route is compiled anew. A stateful
//!   route whose `trigger` and `batch` did not change keeps its state (its clock and firing
//!   runner go on); a changed trigger starts afresh, its stored state dropped with a log line.
//! - **Sources** whose settings changed restart (what they have in flight is acknowledged
//!   first); the others keep running. Webhooks never restart: the server answers the new
//!   hooks from the next request on.
//! - `prefect` and `delivery` apply from the next event on. `engine`, `journal`, `http`,
//!   `admin` and `templates` cannot change while running: a reload that changes one is refused
//!   and says so.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, RouteConfig, SourceConfig};
use crate::routes::{Route, Routing};

/// Refuses a config whose changes need a restart, naming the sections.
pub(super) fn needs_restart(old: &Config, new: &Config) -> anyhow::Result<()> {
    let mut fixed = Vec::new();
    if old.engine != new.engine {
        fixed.push("engine");
    }
    if old.journal != new.journal {
        fixed.push("journal");
    }
    if old.http != new.http {
        fixed.push("http");
    }
    if old.admin != new.admin {
        fixed.push("admin");
    }
    if old.templates != new.templates {
        fixed.push("templates");
    }
    if old.prefect.follow != new.prefect.follow {
        fixed.push("prefect.follow");
    }
    if fixed.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{} changed: that takes a restart, not a reload (nothing was changed)",
        fixed.join(", ")
    )
}

/// The routes to put in force and what else changes with them.
pub(super) struct Plan {
    /// The new routes, in file order (unchanged ones are the running ones).
    pub routes: Vec<Arc<Route>>,
    /// What changed, a line each.
    pub changes: Vec<String>,
    /// Routes whose clock and firing runner stop (removed, or their trigger changed).
    pub triggers_stopped: Vec<String>,
    /// Stateful routes to start, and whether afresh (their stored state dropped).
    pub triggers_started: Vec<(Arc<Route>, bool)>,
    /// New and changed routes, to check against their deployments.
    pub checked: Vec<Arc<Route>>,
}

/// Whether a route's trigger (or batch) stays the same, so its state carries over.
fn same_trigger(old: &RouteConfig, new: &RouteConfig) -> bool {
    old.trigger == new.trigger && old.batch == new.batch
}

/// Plans the routes of `new` (compiled: `routes`) against the running `old` ones.
pub(super) fn plan(
    old_config: &Config,
    old: &Routing,
    new_config: &Config,
    mut routes: Vec<Arc<Route>>,
) -> Plan {
    let mut plan = Plan {
        routes: Vec::with_capacity(routes.len()),
        changes: Vec::new(),
        triggers_stopped: Vec::new(),
        triggers_started: Vec::new(),
        checked: Vec::new(),
    };
    for (cfg, route) in new_config.routes.iter().zip(routes.iter_mut()) {
        let name = &cfg.name;
        let before = old_config.routes.iter().find(|r| r.name == *name);
        let running = old.route(name);
        let (Some(before), Some(running)) = (before, running) else {
            plan.changes.push(format!("route {name}: added"));
            if route.stateful.is_some() {
                plan.triggers_started.push((Arc::clone(route), false));
            }
            plan.checked.push(Arc::clone(route));
            plan.routes.push(Arc::clone(route));
            continue;
        };
        if before == cfg && running.sources == route.sources {
            plan.routes.push(Arc::clone(running));
            continue;
        }
        // Its settings, or only the sources it listens to (`from` left out: every source).
        let changed = match before == cfg {
            true => format!("listens to {}", route.sources.join(", ")),
            false => "changed".to_string(),
        };
        match (&running.stateful, route.stateful.is_some()) {
            (Some(state), true) if same_trigger(before, cfg) => {
                // Freshly compiled, so held here only; if it were not, the route would start
                // afresh rather than share.
                match Arc::get_mut(route) {
                    Some(r) => {
                        r.stateful = Some(Arc::clone(state));
                        plan.changes
                            .push(format!("route {name}: {changed} (trigger state kept)"));
                    }
                    None => {
                        plan.triggers_stopped.push(name.clone());
                        plan.triggers_started.push((Arc::clone(route), true));
                        plan.changes
                            .push(format!("route {name}: {changed} (its state dropped)"));
                    }
                }
            }
            (Some(_), true) => {
                plan.triggers_stopped.push(name.clone());
                plan.triggers_started.push((Arc::clone(route), true));
                plan.changes
                    .push(format!("route {name}: trigger changed (its state dropped)"));
            }
            (Some(_), false) => {
                plan.triggers_stopped.push(name.clone());
                plan.changes
                    .push(format!("route {name}: {changed} (trigger removed)"));
            }
            (None, true) => {
                plan.triggers_started.push((Arc::clone(route), true));
                plan.changes
                    .push(format!("route {name}: {changed} (trigger added)"));
            }
            (None, false) => plan.changes.push(format!("route {name}: {changed}")),
        }
        plan.checked.push(Arc::clone(route));
        plan.routes.push(Arc::clone(route));
    }
    for gone in old_config
        .routes
        .iter()
        .filter(|r| !new_config.routes.iter().any(|n| n.name == r.name))
    {
        if old.route(&gone.name).is_some_and(|r| r.stateful.is_some()) {
            plan.triggers_stopped.push(gone.name.clone());
        }
        plan.changes.push(format!("route {}: removed", gone.name));
    }
    plan
}

/// What happens to one source.
#[derive(Debug)]
pub(super) enum SourceChange {
    /// No longer in the config.
    Stopped(String),
    /// Its settings changed.
    Restarted(SourceConfig),
    /// New.
    Started(SourceConfig),
    /// A webhook added, changed or removed (served from the next request on), as a line.
    Webhook(String),
}

/// The sources that change, `before` to `after`.
pub(super) fn sources(before: &[SourceConfig], after: &[SourceConfig]) -> Vec<SourceChange> {
    let find = |list: &[SourceConfig], s: &SourceConfig| {
        list.iter()
            .find(|o| o.name() == s.name() && o.is_webhook() == s.is_webhook())
            .cloned()
    };
    let mut changes = Vec::new();
    for old in before {
        if find(after, old).is_none() {
            changes.push(match old.is_webhook() {
                true => SourceChange::Webhook(format!("source {}: hook removed", old.name())),
                false => SourceChange::Stopped(old.name().to_string()),
            });
        }
    }
    for new in after {
        let change = match (find(before, new), new.is_webhook()) {
            (Some(old), _) if old == *new => continue,
            (Some(_), true) => {
                SourceChange::Webhook(format!("source {}: hook changed", new.name()))
            }
            (None, true) => SourceChange::Webhook(format!("source {}: hook added", new.name())),
            (Some(_), false) => SourceChange::Restarted(new.clone()),
            (None, false) => SourceChange::Started(new.clone()),
        };
        changes.push(change);
    }
    changes
}

/// `--watch`: notices when the config file's contents change (read once a second; an editor
/// that replaces the file is seen too). Polling one small file costs nothing measurable, and
/// needs no file-notification dependency.
pub(super) struct FileWatch {
    path: PathBuf,
    seen: Option<u64>,
    ticks: tokio::time::Interval,
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl FileWatch {
    /// Watching `path` from its contents now.
    pub(super) fn new(path: &Path) -> Self {
        let mut ticks = tokio::time::interval(WATCH_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            path: path.to_path_buf(),
            seen: std::fs::read(path).ok().map(|b| digest(&b)),
            ticks,
        }
    }

    /// Resolves when the contents differ from the last seen (cancel-safe). A file that cannot
    /// be read (being replaced) is looked at again on the next tick.
    pub(super) async fn changed(&mut self) {
        loop {
            self.ticks.tick().await;
            let now = tokio::fs::read(&self.path).await.ok().map(|b| digest(&b));
            if now.is_some() && now != self.seen {
                self.seen = now;
                return;
            }
        }
    }
}

/// How often `--watch` reads the file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse_str(Path::new("c.yaml"), text, |_| None)
            .unwrap()
            .config
    }

    const BASE: &str = r#"
sources:
  - {type: webhook, name: orders}
  - {type: stdin, name: lines}
routes:
  - name: a
    action: {type: run_deployment, deployment: "f/d"}
"#;

    #[test]
    fn a_changed_engine_is_refused_and_named() {
        let old = config(BASE);
        let new = config(&format!("engine: {{queue_capacity: 7}}\n{BASE}"));
        let e = needs_restart(&old, &new).unwrap_err().to_string();
        assert!(e.starts_with("engine changed"), "{e}");
        assert!(needs_restart(&old, &old).is_ok());
    }

    #[test]
    fn only_changed_sources_restart_and_webhooks_never_do() {
        let old = config(BASE);
        let new = config(
            r#"
sources:
  - {type: webhook, name: orders, event: order.created}
  - {type: stdin, name: lines, event: line.read}
  - {type: mqtt, name: more, url: "mqtt://127.0.0.1:1883", topics: [a], client_id: c}
routes:
  - name: a
    action: {type: run_deployment, deployment: "f/d"}
"#,
        );
        let changes: Vec<String> = sources(&old.sources, &new.sources)
            .iter()
            .map(|c| match c {
                SourceChange::Stopped(n) => format!("stop {n}"),
                SourceChange::Restarted(s) => format!("restart {}", s.name()),
                SourceChange::Started(s) => format!("start {}", s.name()),
                SourceChange::Webhook(l) => l.clone(),
            })
            .collect();
        assert_eq!(
            changes,
            ["source orders: hook changed", "restart lines", "start more"]
        );
        assert!(sources(&old.sources, &old.sources).is_empty());
        let gone: Vec<String> = sources(&new.sources, &old.sources)
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        assert!(
            gone.iter().any(|c| c.contains("Stopped(\"more\")")),
            "{gone:?}"
        );
    }
}
