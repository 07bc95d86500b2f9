//! `switchyard replay`: journaled events re-evaluated against the config as it is now.
//!
//! With `--dry-run` nothing is started: the events (oldest first) go through the current
//! routes on a simulated clock that follows their arrival times (the same code as
//! `switchyard test`), and each route's decision now is set beside what the journal says it
//! decided then. Without it, the runs the current config decides are started — for routes
//! without a trigger or batch; a trigger replayed over history would fire for windows that
//! are long closed, so those are shown by `--dry-run` only. A replayed run carries the same
//! idempotency key as the original (`<route>:<event id>`), so an event a route already ran
//! finds its run instead of starting a second one.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::journal::{EventDetail, EventFilter, Settlement, Store, time_bound};
use crate::routes::{Decision, Loaded};
use crate::simulate::Outcome;
use crate::topic::is_firing_source;

/// `switchyard replay` options.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Which config and journal (the config is required: its routes are replayed).
    #[command(flatten)]
    pub journal: crate::admin::JournalArgs,
    /// Only events accepted at or after this (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events accepted before this (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this route.
    #[arg(long, value_name = "NAME")]
    pub route: Option<String>,
    /// Only events of this source.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Say what would run now and how that differs from what ran then; start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many events (the oldest in the range first).
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
}

/// The journaled events of the range, oldest first, with their decisions (firings left out:
/// they are what the triggers make of the events).
async fn history(store: &dyn Store, args: &ReplayArgs) -> Result<Vec<EventDetail>, String> {
    let mut filter = EventFilter {
        source: args.source.clone(),
        since: time_bound("--since", args.since.as_deref())?,
        until: time_bound("--until", args.until.as_deref())?,
        limit: 500,
        ..Default::default()
    };
    let mut ids = Vec::new();
    loop {
        let page = store
            .list_events(&filter)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        filter.after = Some(last.position);
        let full = page.len() < filter.limit;
        ids.extend(
            page.into_iter()
                .filter(|e| !is_firing_source(&e.source))
                .map(|e| e.id),
        );
        if full || ids.len() >= args.limit {
            break;
        }
    }
    ids.truncate(args.limit);
    let mut out = Vec::with_capacity(ids.len());
    for id in ids.iter().rev() {
        if let Some(d) = store.event(id).await.map_err(|e| e.to_string())? {
            out.push(d);
        }
    }
    out.sort_by_key(|d| d.event.received);
    Ok(out)
}

/// What route `route` finally decided for an event then, in a few words.
fn then(detail: &EventDetail, route: &str) -> Option<String> {
    detail
        .decisions
        .iter()
        .rev()
        .find(|d| d.route == route && d.kind != "run_state")
        .map(|d| match d.kind.as_str() {
            "run_created" => format!(
                "ran {} (run {})",
                d.deployment.clone().unwrap_or_default(),
                d.flow_run_id.clone().unwrap_or_default()
            ),
            "would_run" => format!(
                "would run {} (shadow)",
                d.deployment.clone().unwrap_or_default()
            ),
            "skipped" => "skipped".into(),
            "absorbed" => "absorbed".into(),
            "dead_lettered" | "attempt_failed" => {
                format!("dead letter: {}", d.detail.clone().unwrap_or_default())
            }
            other => other.to_string(),
        })
}

fn ran_then(detail: &EventDetail, route: &str, deployment: &str) -> bool {
    detail.decisions.iter().any(|d| {
        d.route == route && d.kind == "run_created" && d.deployment.as_deref() == Some(deployment)
    })
}

/// `switchyard replay`.
pub async fn main(args: ReplayArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    };
    let (loaded, store) = match crate::admin::open(&args.journal).await {
        Ok((Some(l), s)) => (l, s),
        Ok((None, _)) => {
            return fail("replay needs --config: its routes are what is replayed".into());
        }
        Err(e) => return fail(e),
    };
    if let Some(r) = &args.route
        && !loaded.routes.iter().any(|x| &x.name == r)
    {
        return fail(format!(
            "--route: no route {r:?} in {}",
            loaded.path.display()
        ));
    }
    let events = match history(&*store, &args).await {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    say!(
        "{} event(s) from the journal against {}{}",
        events.len(),
        loaded.path.display(),
        if args.dry_run {
            " (dry run: nothing is started)"
        } else {
            ""
        }
    );
    if args.dry_run {
        dry_run(&loaded, &args, &events).await
    } else {
        live(&loaded, &*store, &args, &events).await
    }
}

fn wanted(args: &ReplayArgs, route: &str) -> bool {
    args.route.as_deref().is_none_or(|r| r == route)
}

/// The parameter schemas of the routes' fixed deployments, read from Prefect (only read), so
/// a dry run says what would fail on them; without Prefect it says it did not check.
async fn schemas(loaded: &Loaded) -> BTreeMap<String, crate::simulate::DeploymentSpec> {
    let mut out = BTreeMap::new();
    let Ok(prefect) = crate::app::prefect_client(&loaded.config.prefect) else {
        return out;
    };
    for r in &loaded.routes {
        let Some(dep) = r.action.static_deployment() else {
            continue;
        };
        let wait = std::time::Duration::from_secs(5);
        match tokio::time::timeout(wait, prefect.resolve(dep)).await {
            Ok(Ok(d)) if d.enforce_parameter_schema => {
                out.insert(
                    dep.to_string(),
                    crate::simulate::DeploymentSpec {
                        schema: d.parameter_openapi_schema.clone(),
                    },
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => say!("  (parameters of {dep} not checked: {e})"),
            Err(_) => say!("  (parameters of {dep} not checked: Prefect did not answer)"),
        }
    }
    out
}

async fn dry_run(loaded: &Loaded, args: &ReplayArgs, events: &[EventDetail]) -> ExitCode {
    let Some(first) = events.first() else {
        return ExitCode::SUCCESS;
    };
    let start = first.event.received;
    let end = events.last().map_or(start, |d| d.event.received);
    let scratch = std::env::temp_dir().join(format!(
        "switchyard-replay-{}-{}.db",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let schemas = schemas(loaded).await;
    let fed: Vec<_> = events.iter().map(|d| d.event.clone()).collect();
    let outcomes = crate::simulate::run_events(loaded, &schemas, start, fed, end, &scratch).await;
    let _ = std::fs::remove_file(&scratch);
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut same, mut changed) = (0usize, 0usize);
    for route in loaded.routes.iter().filter(|r| wanted(args, &r.name)) {
        let mine: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Ran { route: r, .. } | Outcome::Dead { route: r, .. } if *r == route.name))
            .collect();
        if route.stateful.is_some() {
            let fired_then = events
                .iter()
                .filter(|d| {
                    d.decisions
                        .iter()
                        .any(|x| x.route == route.name && x.kind == "absorbed")
                })
                .count();
            say!(
                "  {}: a trigger or batch, re-run on a simulated clock: would start {} run(s) now ({} of these events were absorbed by it then)",
                route.name,
                mine.iter()
                    .filter(|o| matches!(o, Outcome::Ran { .. }))
                    .count(),
                fired_then
            );
            continue;
        }
        for d in events.iter().filter(|d| route.receives(&d.event)) {
            let now = mine.iter().find(|o| match o {
                Outcome::Ran { event, .. } | Outcome::Dead { event, .. } => *event == d.event.id,
            });
            let now_says = match now {
                Some(Outcome::Ran {
                    deployment,
                    parameters,
                    ..
                }) => format!("would run {deployment} {parameters}"),
                Some(Outcome::Dead { reason, .. }) => format!("would dead-letter: {reason}"),
                None => "would skip".into(),
            };
            let then_says = then(d, &route.name).unwrap_or_else(|| "(no decision)".into());
            let agree = match now {
                Some(Outcome::Ran { deployment, .. }) => ran_then(d, &route.name, deployment),
                Some(Outcome::Dead { .. }) => then_says.starts_with("dead letter"),
                None => then_says == "skipped" || then_says == "(no decision)",
            };
            if agree {
                same += 1;
            } else {
                changed += 1;
                say!(
                    "  {} {} [{}] {}: now {now_says}; then {then_says}",
                    d.accepted_at.format("%Y-%m-%d %H:%M:%S"),
                    d.event.id,
                    d.event.name,
                    route.name
                );
            }
        }
    }
    say!("{same} decision(s) the same, {changed} different");
    ExitCode::SUCCESS
}

async fn live(
    loaded: &Loaded,
    store: &dyn Store,
    args: &ReplayArgs,
    events: &[EventDetail],
) -> ExitCode {
    let prefect = match crate::app::prefect_client(&loaded.config.prefect) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let (mut started, mut existed, mut failed) = (0usize, 0usize, 0usize);
    for route in loaded.routes.iter().filter(|r| wanted(args, &r.name)) {
        if route.stateful.is_some() {
            say!(
                "  {}: a trigger or batch is not replayed live (its windows have closed); see --dry-run",
                route.name
            );
            continue;
        }
        for d in events.iter().filter(|d| route.receives(&d.event)) {
            let event = Arc::new(d.event.clone());
            match route.attempt(&event, &prefect, 1).await {
                Ok(Decision::Skip(_)) => {}
                Ok(Decision::Ran(run)) => {
                    if run.replayed {
                        existed += 1;
                    } else {
                        started += 1;
                        say!(
                            "  {} {}: started flow run {} ({}) of {}",
                            d.event.id,
                            route.name,
                            run.flow_run_id,
                            run.flow_run_name,
                            run.deployment
                        );
                    }
                    if !ran_then(d, &route.name, &run.deployment)
                        && let Err(e) = store
                            .settle(&d.event.id, &route.name, &Settlement::Ran(run))
                            .await
                    {
                        eprintln!(
                            "  {} {}: the run started but was not journaled: {e}",
                            d.event.id, route.name
                        );
                    }
                }
                Ok(Decision::WouldRun(w)) => {
                    say!(
                        "  {} {}: shadow, would run {}",
                        d.event.id,
                        route.name,
                        w.deployment
                    );
                }
                Err(f) => {
                    failed += 1;
                    say!("  {} {}: failed: {}", d.event.id, route.name, f.message);
                }
            }
        }
    }
    say!("{started} run(s) started, {existed} already existed, {failed} failed");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
