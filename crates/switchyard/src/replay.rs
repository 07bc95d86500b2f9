//! Replaying a dead letter: one more attempt of its route on its event, recorded like any
//! other decision. Used by `switchyard dlq replay` and by the admin API.

use std::sync::Arc;

use switchyard_prefect::PrefectClient;

use crate::journal::{Settlement, Store};
use crate::routes::{Decision, Route};

/// Replays dead letter `id` with the route of the same name; the resolution on success
/// (`replayed: flow run <id> (<name>)`, `replayed: skipped, <why>`, or `already resolved`).
pub async fn dead_letter(
    routes: &[Arc<Route>],
    store: &dyn Store,
    prefect: &PrefectClient,
    id: i64,
) -> Result<String, String> {
    let dl = store
        .dead_letter(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no such dead letter")?;
    if let Some(r) = dl.resolution {
        return Ok(format!("already resolved ({r})"));
    }
    let detail = store
        .event(&dl.event_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("its event was pruned")?;
    // A route that gave up on failed runs (`settle_on: finished`) is given a new run, not
    // the last failed one back (each run has a key of its own).
    let runs = detail
        .followed
        .iter()
        .filter(|r| r.route == dl.route)
        .count();
    let run = u32::try_from(runs).unwrap_or(u32::MAX).saturating_add(1);
    let event = detail.event;
    let route = routes
        .iter()
        .find(|r| r.name == dl.route)
        .ok_or_else(|| format!("route {:?} is not in the config", dl.route))?;
    let (settlement, resolution) = match route.attempt(&Arc::new(event.clone()), prefect, run).await
    {
        Ok(Decision::Ran(run)) => {
            let note = format!(
                "replayed: flow run {} ({})",
                run.flow_run_id, run.flow_run_name
            );
            (Settlement::Ran(run), note)
        }
        Ok(Decision::WouldRun(w)) => {
            let note = format!("replayed: shadow, would run {}", w.deployment);
            (Settlement::WouldRun(w), note)
        }
        Ok(Decision::Skip(reason)) => (
            Settlement::Skipped {
                reason: reason.clone(),
            },
            format!("replayed: skipped, {reason}"),
        ),
        Err(f) => return Err(f.message),
    };
    store
        .settle(&event.id, &route.name, &settlement)
        .await
        .map_err(|e| e.to_string())?;
    store
        .resolve_dead_letter(id, &resolution)
        .await
        .map_err(|e| e.to_string())?;
    Ok(resolution)
}
