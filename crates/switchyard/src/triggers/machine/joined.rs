//! Compound and sequence triggers: children's firings gathered within a window.

use super::*;

pub(super) fn record_hit(
    b: &mut Bucket,
    i: usize,
    ordered: bool,
    within: Duration,
    now: DateTime<Utc>,
    events: Vec<Event>,
) {
    expire_hits(b, within, now);
    if ordered && i > 0 && b.hits.iter().take(i).any(Option::is_none) {
        return; // out of order: ignored
    }
    if ordered && i == 0 {
        b.hits.iter_mut().for_each(|h| *h = None); // a new first step restarts the sequence
    }
    if let Some(h) = b.hits.get_mut(i) {
        *h = Some((now, events));
    }
}

/// Drops hits older than the window (counted from the earliest); true when any went.
pub(super) fn expire_hits(b: &mut Bucket, within: Duration, now: DateTime<Utc>) -> bool {
    if within.is_zero() {
        return false;
    }
    let first = b.hits.iter().flatten().map(|(t, _)| *t).min();
    match first {
        Some(t) if after(t, within) <= now => {
            b.hits.iter_mut().for_each(|h| *h = None);
            true
        }
        _ => false,
    }
}

pub(super) fn joined_ready(b: &mut Bucket, required: usize, ordered: bool) -> Option<Vec<Event>> {
    let hit = b.hits.iter().filter(|h| h.is_some()).count();
    let ready = if ordered {
        b.hits.iter().all(Option::is_some)
    } else {
        hit >= required
    };
    if !ready {
        return None;
    }
    let mut all: Vec<(DateTime<Utc>, Vec<Event>)> =
        b.hits.iter_mut().filter_map(Option::take).collect();
    all.sort_by_key(|(t, _)| *t);
    Some(all.into_iter().flat_map(|(_, e)| e).collect())
}
