//! Following every flow run Switchyard created until it ends.
//!
//! One task per process ([`Follower::run`]) reads the runs the journal says are due
//! ([`Store::runs_due`]: not ended, next look due; on a shared journal each instance is given
//! different ones), asks Prefect for up to [`MAX_RUNS_PER_READ`] of them in one
//! `POST /flow_runs/filter`, and records what changed ([`Store::runs_seen`]): each new state
//! as a `run_state` decision of the event, and the end. A run is looked at every `interval`
//! while it changes, then less often the longer it stays as it is (a quarter of the time it
//! has been unchanged, up to `max_interval`); runs someone waits on ([`Follower::ended`], a
//! webhook's `respond: finished`) are looked at every `interval` whatever the journal says.
//! The work is bounded: a few calls per look, whatever the number of runs.
//!
//! What is followed lives in the journal, so a restart resumes where the last process left.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;

use chrono::{DateTime, Utc};
use switchyard_prefect::{FlowRun, MAX_RUNS_PER_READ, PrefectClient};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::journal::{FollowedRun, RunSeen, Store};

/// Most reads of due runs in one look (so one look is at most this many calls, plus those
/// for runs waited on).
const MAX_READS_PER_LOOK: usize = 5;

/// A run Prefect does not return is taken as gone only once it is this old (never for a run
/// just created).
const GONE_AFTER: Duration = Duration::from_secs(60);

/// Most runs waited on at once; a wait beyond them is answered at once with what the journal
/// holds (a webhook's `respond: finished` then answers as `created`).
pub const MAX_WAITED: usize = 10_000;

/// The state type recorded for a run Prefect no longer has.
pub const NOT_FOUND: &str = "NOT_FOUND";

/// Following every flow run Switchyard creates until it ends (Completed, Failed, Crashed,
/// Cancelled): each state change is recorded in the journal (`events show`, the admin API)
/// and counted in `switchyard_flow_runs_finished_total{route,state}`. Runs are read from
/// `POST /flow_runs/filter` by id, up to 200 in one call: a run is looked at every `interval`
/// while it changes, then less often the longer it stays as it is, up to `max_interval`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowConfig {
    /// Follow runs (default true). `false`: a run is recorded when it is created and never
    /// looked at again (and `respond: finished` answers as `created`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often runs are looked at (default `1s`; `100ms` to `1h`).
    #[serde(default = "default_follow_interval", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub interval: Duration,
    /// The longest time between two looks at a run that does not change (default `1m`;
    /// from `interval` to `1h`).
    #[serde(default = "default_follow_max_interval", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub max_interval: Duration,
    /// A run not ended this long after it was created is followed no more (default `7d`;
    /// `1m` to `365d`): a deployment no worker serves would otherwise be looked at forever.
    #[serde(default = "default_follow_max_age", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub max_age: Duration,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_follow_interval(),
            max_interval: default_follow_max_interval(),
            max_age: default_follow_max_age(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_follow_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_follow_max_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_follow_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

type Waiters = HashMap<Uuid, Vec<oneshot::Sender<FollowedRun>>>;

/// Follows the runs routes create (see the module docs).
pub struct Follower {
    journal: Arc<dyn Store>,
    /// Replaced by a reload that changes the Prefect settings.
    prefect: std::sync::RwLock<PrefectClient>,
    cfg: FollowConfig,
    waiters: Mutex<Waiters>,
    wake: Notify,
}

impl Follower {
    /// A follower of the runs in `journal`, reading them from `prefect`.
    pub fn new(journal: Arc<dyn Store>, prefect: PrefectClient, cfg: FollowConfig) -> Arc<Self> {
        Arc::new(Self {
            journal,
            prefect: std::sync::RwLock::new(prefect),
            cfg,
            waiters: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// Reads runs from `prefect` from the next look on (a reload changed its settings).
    pub fn use_prefect(&self, prefect: PrefectClient) {
        *self.prefect.write().unwrap_or_else(PoisonError::into_inner) = prefect;
    }

    /// The Prefect UI's page of a run.
    pub fn run_page(&self, flow_run_id: &str) -> String {
        self.prefect
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .run_page(flow_run_id)
    }

    /// Whether runs are followed (`prefect.follow.enabled`).
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// The run as the journal holds it once it has ended, or as it stands when `timeout`
    /// passes first (or following is off, or too many runs are waited on); `None` when the
    /// journal does not know the run.
    pub async fn ended(&self, flow_run_id: Uuid, timeout: Duration) -> Option<FollowedRun> {
        let id = flow_run_id.to_string();
        let now = self.journal.followed_run(&id).await.ok().flatten();
        if now.as_ref().is_none_or(|r| r.ended_at.is_some()) || !self.cfg.enabled {
            return now;
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            if w.len() >= MAX_WAITED && !w.contains_key(&flow_run_id) {
                return now;
            }
            w.entry(flow_run_id).or_default().push(tx);
        }
        self.wake.notify_one();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(run)) => Some(run),
            // Timed out (the sender is dropped at the next look), or the follower stopped.
            _ => self.journal.followed_run(&id).await.ok().flatten().or(now),
        }
    }

    /// Looks at runs every `interval` until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if !self.cfg.enabled {
            return;
        }
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            self.look().await;
        }
    }

    /// One look: the runs waited on, then those due.
    async fn look(&self) {
        let waited: Vec<Uuid> = {
            let mut w = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            w.retain(|_, senders| {
                senders.retain(|s| !s.is_closed());
                !senders.is_empty()
            });
            w.keys().copied().collect()
        };
        let mut seen_now: HashSet<Uuid> = HashSet::new();
        for chunk in waited.chunks(MAX_RUNS_PER_READ) {
            let Some(found) = self.read(chunk).await else {
                return;
            };
            let seen = chunk
                .iter()
                .filter_map(|id| {
                    found.get(id).map(|run| {
                        let ended = run.is_terminal();
                        seen_now.insert(*id);
                        (run, self.seen(id, run, ended, self.cfg.interval))
                    })
                })
                .collect();
            self.record(seen).await;
        }
        // A hold long enough for a slow Prefect answer: a look that never reports back (a
        // crash, a partition) leaves its runs due again after it.
        let hold = (self.cfg.interval * 4).max(Duration::from_secs(30));
        for _ in 0..MAX_READS_PER_LOOK {
            let due = match self.journal.runs_due(MAX_RUNS_PER_READ, hold).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the runs to follow from the journal");
                    return;
                }
            };
            let full = due.len() == MAX_RUNS_PER_READ;
            let due: Vec<(Uuid, FollowedRun)> = due
                .into_iter()
                .filter_map(|r| Some((Uuid::parse_str(&r.flow_run_id).ok()?, r)))
                .filter(|(id, _)| !seen_now.contains(id))
                .collect();
            if due.is_empty() {
                return;
            }
            let ids: Vec<Uuid> = due.iter().map(|(id, _)| *id).collect();
            let Some(found) = self.read(&ids).await else {
                return;
            };
            let now = Utc::now();
            let mut seen = Vec::with_capacity(due.len());
            let mut unfollowed = Vec::new();
            for (id, r) in &due {
                let age = since(r.created_at, now);
                let unchanged = since(r.changed_at, now);
                let wait = (unchanged / 4).clamp(self.cfg.interval, self.cfg.max_interval);
                match found.get(id) {
                    Some(run) => {
                        let too_old = age > self.cfg.max_age && !run.is_terminal();
                        if too_old {
                            unfollowed.push(r.route.clone());
                        }
                        seen.push((run, self.seen(id, run, run.is_terminal() || too_old, wait)));
                    }
                    None if age > GONE_AFTER => {
                        let gone = RunSeen {
                            flow_run_id: r.flow_run_id.clone(),
                            state: (NOT_FOUND.into(), "Not found".into()),
                            ended: true,
                            next_check: now,
                        };
                        self.record_gone(gone).await;
                    }
                    None => {}
                }
            }
            self.record(seen).await;
            for route in unfollowed {
                crate::metrics::run_finished(&route, "unfollowed", None);
                tracing::warn!(route = %route, max_age = ?self.cfg.max_age, "a flow run did not end within prefect.follow.max_age; no longer followed");
            }
            if !full {
                return;
            }
        }
    }

    /// The runs among `ids` Prefect has, by id; `None` when Prefect cannot be asked now (the
    /// runs are looked at again later).
    async fn read(&self, ids: &[Uuid]) -> Option<HashMap<Uuid, FlowRun>> {
        let prefect = self
            .prefect
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match prefect.flow_runs_by_id(ids).await {
            Ok(runs) => Some(runs.into_iter().map(|r| (r.id, r)).collect()),
            Err(e) => {
                tracing::warn!(error = %e, runs = ids.len(), "cannot read flow runs from Prefect; will look again");
                None
            }
        }
    }

    /// What a look at run `id` found.
    fn seen(&self, id: &Uuid, run: &FlowRun, ended: bool, wait: Duration) -> RunSeen {
        let state_type = run.state_type.clone().unwrap_or_else(|| "UNKNOWN".into());
        let state_name = run.state_name.clone().unwrap_or_else(|| title(&state_type));
        RunSeen {
            flow_run_id: id.to_string(),
            state: (state_type, state_name),
            ended,
            next_check: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
        }
    }

    /// Records looks, then counts, logs and answers those waiting on what changed.
    async fn record(&self, seen: Vec<(&FlowRun, RunSeen)>) {
        if seen.is_empty() {
            return;
        }
        let runs: HashMap<String, &FlowRun> = seen
            .iter()
            .map(|(run, s)| (s.flow_run_id.clone(), *run))
            .collect();
        let ended_now: Vec<String> = seen
            .iter()
            .filter(|(_, s)| s.ended)
            .map(|(_, s)| s.flow_run_id.clone())
            .collect();
        let changed = match self
            .journal
            .runs_seen(seen.into_iter().map(|(_, s)| s).collect())
            .await
        {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record flow run states in the journal; will look again");
                return;
            }
        };
        for c in &changed {
            let r = &c.run;
            tracing::info!(
                event_id = %r.event_id, route = %r.route, flow_run_id = %r.flow_run_id,
                flow_run_name = %r.flow_run_name, state = %r.state_name, ended = c.ended,
                "flow run state"
            );
            if c.ended && switchyard_prefect::TERMINAL_STATES.contains(&r.state_type.as_str()) {
                let ran = runs.get(&r.flow_run_id).and_then(|run| ran_for(run));
                crate::metrics::run_finished(&r.route, &r.state_type.to_lowercase(), ran);
            }
        }
        // Those waiting are answered from the journal: whichever instance recorded the end.
        for id in ended_now {
            self.answer(&id).await;
        }
    }

    /// Records a run Prefect no longer has.
    async fn record_gone(&self, gone: RunSeen) {
        let id = gone.flow_run_id.clone();
        match self.journal.runs_seen(vec![gone]).await {
            Ok(changed) => {
                for c in changed {
                    crate::metrics::run_finished(&c.run.route, "not_found", None);
                    tracing::warn!(
                        event_id = %c.run.event_id, route = %c.run.route, flow_run_id = %c.run.flow_run_id,
                        "flow run not found in Prefect (deleted?); no longer followed"
                    );
                }
                self.answer(&id).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a flow run as gone; will look again");
            }
        }
    }

    /// Hands the run as the journal holds it to everyone waiting on it.
    async fn answer(&self, flow_run_id: &str) {
        let Ok(id) = Uuid::parse_str(flow_run_id) else {
            return;
        };
        let senders = self
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        let Some(senders) = senders else { return };
        if let Ok(Some(run)) = self.journal.followed_run(flow_run_id).await {
            for s in senders {
                let _ = s.send(run.clone());
            }
        }
    }
}

/// How long a run ran, from Prefect's start and end times.
fn ran_for(run: &FlowRun) -> Option<Duration> {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    };
    let (start, end) = (parse(&run.start_time)?, parse(&run.end_time)?);
    (end - start).to_std().ok()
}

/// Time from `t` to `now` (zero when `t` is ahead).
fn since(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or_default()
}

/// `COMPLETED` as `Completed`.
fn title(state_type: &str) -> String {
    let lower = state_type.to_lowercase();
    let mut c = lower.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_from_prefects_times() {
        let run: FlowRun = serde_json::from_value(serde_json::json!({
            "id": Uuid::nil(), "name": "r", "flow_id": Uuid::nil(),
            "start_time": "2026-12-01T10:00:00.5+00:00", "end_time": "2026-12-01T10:00:03Z",
            "state_type": "COMPLETED",
        }))
        .unwrap();
        assert_eq!(ran_for(&run), Some(Duration::from_millis(2500)));
        assert!(run.is_terminal());
        let running: FlowRun = serde_json::from_value(serde_json::json!({
            "id": Uuid::nil(), "name": "r", "flow_id": Uuid::nil(),
            "start_time": "2026-12-01T10:00:00Z", "state_type": "RUNNING",
        }))
        .unwrap();
        assert_eq!(ran_for(&running), None);
        assert!(!running.is_terminal());
        assert_eq!(title("CANCELLED"), "Cancelled");
        assert_eq!(title(""), "");
    }
}
