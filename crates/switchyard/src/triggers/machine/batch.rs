//! Micro-batches: when one closes, and what it fires.

use super::*;

pub(super) fn batch_deadline(spec: &BatchSpec, b: &Bucket) -> Option<DateTime<Utc>> {
    let by_delay = b.opened.map(|o| after(o, spec.max_delay));
    let by_idle = spec.idle.and_then(|i| b.last.map(|l| after(l, i)));
    [by_delay, by_idle].into_iter().flatten().min()
}

pub(super) fn batch_fired(route: &str, key: &str, b: Bucket, why: &str) -> Fired {
    let first = b.events.first().map(|e| e.id.clone()).unwrap_or_default();
    Fired {
        id: format!("batch:{route}:{key}:{first}"),
        key: key.to_string(),
        kind: "batch",
        count: b.events.len() as u64,
        reason: format!("{} events, {why}", b.events.len()),
        events: b.events,
    }
}
