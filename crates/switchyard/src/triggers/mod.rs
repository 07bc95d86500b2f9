//! Stateful routes: Prefect-style triggers and micro-batches.
//!
//! A stateful route does not run its action per event. Each event it matches is fed to its
//! [`Machine`]; the new bucket state, any firing, and the event's decision (`absorbed`) are
//! written to the journal in one transaction, so the source may acknowledge the event as soon
//! as it is absorbed and a restart resumes windows, counters, pending joins and batches.
//!
//! A firing is itself a journaled event (source `trigger:<route>`, name
//! `switchyard.trigger.<kind>`, payload `{trigger, events}`, a deterministic id) that the route
//! then runs its action for, with retries and dead letters like any event, and an idempotency
//! key from the firing's id: a replay never starts a second run. Its templates see `event`
//! (the last contributing event, or the firing itself for an absence), `events` (every
//! contributing event, oldest first) and `trigger` (`route`, `key`, `kind`, `count`, `reason`,
//! `fired_at`).

pub mod machine;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use switchyard_core::Event;
use tokio::sync::{Mutex, Notify, mpsc};

use crate::journal::{JournalError, Store, TriggerChange};
pub use machine::{Bucket, Fired, Judged, Machine};

pub use crate::topic::firing_source;

/// The template context of a firing: `event`, `events`, `trigger`.
pub fn firing_context(firing: &Event) -> minijinja::Value {
    let events = firing.payload.get("events").cloned().unwrap_or(json!([]));
    let last = events
        .as_array()
        .and_then(|a| a.last().cloned())
        .unwrap_or_else(|| serde_json::to_value(firing).unwrap_or(Value::Null));
    let trigger = firing
        .payload
        .get("trigger")
        .cloned()
        .unwrap_or(Value::Null);
    minijinja::context! {
        event => crate::template::value(&last),
        events => crate::template::value(&events),
        trigger => crate::template::value(&trigger),
    }
}

/// Wall-clock time that follows tokio's clock, so tests can pause and advance it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl Clock {
    /// Anchored now.
    pub fn new() -> Self {
        Self {
            wall: Utc::now(),
            at: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.at);
        self.wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }

    /// The tokio instant of a wall-clock time (now if past).
    pub fn instant(&self, t: DateTime<Utc>) -> tokio::time::Instant {
        let ahead = (t - self.now()).to_std().unwrap_or_default();
        let now = tokio::time::Instant::now();
        // A deadline past what an Instant holds is as good as never.
        now.checked_add(ahead)
            .unwrap_or_else(|| now + std::time::Duration::from_secs(30 * 365 * 24 * 3600))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Why an event could not be absorbed.
#[derive(Debug, thiserror::Error)]
pub enum AbsorbError {
    /// The event itself is the problem (a `when` or `key` template failed): permanent.
    #[error("{0}")]
    Event(String),
    /// The journal failed: the event stays pending.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What became of an event.
#[derive(Debug)]
pub enum Absorbed {
    /// The trigger does not match it (nothing recorded yet).
    Unmatched(String),
    /// Recorded, with the decision note and the firings to run.
    Recorded(String, Vec<Event>),
}

/// A stateful route's live state.
pub struct Stateful {
    route: String,
    machine: Machine,
    buckets: Mutex<BTreeMap<String, Bucket>>,
    clock: Clock,
    changed: Notify,
    firings: OnceLock<(mpsc::Sender<Event>, Arc<crate::owned::Owned>)>,
    simulated: OnceLock<Arc<SimulatedTime>>,
}

/// Time set by hand, for `switchyard test`: a route given one ([`Stateful::simulate`]) reads
/// it instead of the wall clock, so windows, absences and batch delays can be tested offline
/// in no time, by the same code that runs them live.
#[derive(Debug)]
pub struct SimulatedTime(std::sync::Mutex<DateTime<Utc>>);

impl SimulatedTime {
    /// Starting at `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(t))
    }

    /// Now.
    pub fn get(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves to `t`.
    pub fn set(&self, t: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = t;
    }
}

impl std::fmt::Debug for Stateful {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stateful")
            .field("route", &self.route)
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

impl Stateful {
    /// A route's state, empty until [`Stateful::restore`].
    pub fn new(route: &str, machine: Machine) -> Self {
        Self {
            route: route.to_string(),
            machine,
            buckets: Mutex::new(BTreeMap::new()),
            clock: Clock::new(),
            changed: Notify::new(),
            firings: OnceLock::new(),
            simulated: OnceLock::new(),
        }
    }

    /// Runs this route on `time` instead of the wall clock (`switchyard test`); set before
    /// the first event.
    pub fn simulate(&self, time: Arc<SimulatedTime>) {
        let _ = self.simulated.set(time);
    }

    fn now(&self) -> DateTime<Utc> {
        match self.simulated.get() {
            Some(t) => t.get(),
            None => self.clock.now(),
        }
    }

    /// When the route will next act on its own (a window's end, an absence, a batch).
    pub async fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let buckets = self.buckets.lock().await;
        self.machine.next_deadline(&buckets)
    }

    /// See [`Machine::exact_names`].
    pub fn exact_names(&self) -> Option<Vec<String>> {
        self.machine.exact_names()
    }

    /// The route.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Where firings go to be run (set once when the router starts), and the registry of
    /// events in hand: a firing is held from its journaling until its runner finishes it, so
    /// the sweep never resumes it a second time.
    pub fn set_firings(&self, tx: mpsc::Sender<Event>, owned: Arc<crate::owned::Owned>) {
        let _ = self.firings.set((tx, owned));
    }

    /// Marks journaled firings as held (see [`Stateful::set_firings`]).
    fn hold(&self, firings: &[Event]) {
        if let Some((_, owned)) = self.firings.get() {
            for f in firings {
                owned.claim(&f.id);
            }
        }
    }

    /// Hands firings to the route's runner; waits while it is busy (backpressure). Without a
    /// runner (not started), they stay pending in the journal and are resumed on restart.
    pub async fn run_firings(&self, firings: Vec<Event>) {
        if let Some((tx, owned)) = self.firings.get() {
            for f in firings {
                let id = f.id.clone();
                if tx.send(f).await.is_err() {
                    owned.release(&id);
                    break;
                }
            }
        }
    }

    /// Loads the stored buckets and starts what starts armed.
    pub async fn restore(&self, journal: &dyn Store) -> Result<usize, JournalError> {
        let stored = journal.trigger_states(&self.route).await?;
        let mut buckets = self.buckets.lock().await;
        buckets.clear();
        for (key, value) in stored {
            match serde_json::from_value::<Bucket>(value) {
                Ok(b) => {
                    buckets.insert(key, b);
                }
                Err(e) => {
                    tracing::warn!(route = %self.route, %key, error = %e, "stored trigger state does not parse; starting that bucket afresh")
                }
            }
        }
        let restored = buckets.len();
        if journal.shares_trigger_state() {
            // Armed once for every instance: the first to start stores it, the others find it.
            let now = self.now();
            let mut armed = None;
            journal
                .trigger_step(
                    &self.route,
                    vec![String::new()],
                    Box::new(|stored| {
                        let mut local = parse_buckets(&self.route, stored);
                        let started = self.machine.start(&mut local, now);
                        let change = (!started.is_empty())
                            .then(|| self.change(&local, started, Vec::new(), None));
                        armed = local.remove("");
                        change
                    }),
                )
                .await?;
            if let Some(b) = armed {
                buckets.insert(String::new(), b);
            }
            return Ok(restored);
        }
        let started = self.machine.start(&mut buckets, self.now());
        if !started.is_empty() {
            let change = self.change(&buckets, started, Vec::new(), None);
            journal.absorb(&change).await?;
        }
        Ok(restored)
    }

    /// Reloads the buckets other instances sharing the journal changed, so that this one's
    /// clock knows their deadlines (the state itself is read afresh, under the journal's
    /// lock, whenever it is acted on).
    pub async fn refresh(&self, journal: &dyn Store) -> Result<(), JournalError> {
        let stored = journal.trigger_states(&self.route).await?;
        let fresh = parse_buckets(&self.route, stored);
        *self.buckets.lock().await = fresh;
        Ok(())
    }

    /// Starts with no state, deleting what the journal holds for the route (a reload changed
    /// its trigger: buckets counted by the old one mean nothing to the new). Returns how many
    /// stored buckets were dropped.
    pub async fn start_afresh(&self, journal: &dyn Store) -> Result<usize, JournalError> {
        let stored = journal.trigger_states(&self.route).await?;
        let mut buckets = self.buckets.lock().await;
        buckets.clear();
        let started = self.machine.start(&mut buckets, self.now());
        let mut change = self.change(&buckets, started, Vec::new(), None);
        let dropped = stored.len();
        for (key, _) in stored {
            if !change.states.iter().any(|(k, _)| *k == key) {
                change.states.push((key, None));
            }
        }
        if !change.states.is_empty() {
            journal.absorb(&change).await?;
        }
        Ok(dropped)
    }

    fn change(
        &self,
        buckets: &BTreeMap<String, Bucket>,
        keys: Vec<String>,
        firings: Vec<Event>,
        settles: Option<(String, String)>,
    ) -> TriggerChange {
        let states = keys
            .into_iter()
            .map(|k| {
                let state = buckets
                    .get(&k)
                    .filter(|b| !Machine::idle(b))
                    .and_then(|b| serde_json::to_value(b).ok());
                (k, state)
            })
            .collect();
        TriggerChange {
            route: self.route.clone(),
            firings,
            states,
            settles,
        }
    }

    fn firing_event(&self, f: &Fired, now: DateTime<Utc>) -> Event {
        let payload = json!({
            "trigger": {
                "route": self.route, "key": f.key, "kind": f.kind, "count": f.count,
                "reason": f.reason, "fired_at": now.to_rfc3339(),
            },
            "events": f.events,
        });
        Event::builder(
            firing_source(&self.route),
            format!("switchyard.trigger.{}", f.kind),
            payload,
        )
        .id(&f.id)
        .occurred(now)
        .label("switchyard.route", &self.route)
        .label("switchyard.trigger.key", &f.key)
        .build()
    }

    /// Feeds one event and records the step (see the module docs).
    pub async fn absorb(
        self: &Arc<Self>,
        event: &Arc<Event>,
        journal: &dyn Store,
    ) -> Result<Absorbed, AbsorbError> {
        // The templates first, on the evaluation pool and before any state is touched.
        let (me, ev) = (Arc::clone(self), Arc::clone(event));
        let judged = crate::template::sandbox(move || me.machine.judge(&ev))
            .await
            .and_then(|j| j)
            .map_err(AbsorbError::Event)?;
        // Windows that ended before this event are settled first (the clock task may not
        // have woken yet), so the event lands in the right period.
        let due = self.tick(journal).await?;
        self.run_firings(due).await;
        if journal.shares_trigger_state() {
            return self.absorb_shared(event, judged, journal).await;
        }
        let mut buckets = self.buckets.lock().await;
        let now = self.now();
        let before = buckets.clone();
        let step = self
            .machine
            .on_event(&self.route, &mut buckets, event, judged, now);
        if !step.relevant {
            return Ok(Absorbed::Unmatched(step.note));
        }
        let (firings, note, change) = self.recorded(&step, &buckets, event, now);
        if let Err(e) = journal.absorb(&change).await {
            *buckets = before; // not recorded: as if the event had not arrived
            return Err(e.into());
        }
        buckets.retain(|_, b| !Machine::idle(b));
        drop(buckets);
        self.after_recorded(&step, &firings);
        Ok(Absorbed::Recorded(note, firings))
    }

    /// What one relevant step of an event records: its firings, the event's decision note,
    /// and the change (the buckets it touched, the firings, the decision) to journal.
    fn recorded(
        &self,
        step: &machine::Step,
        buckets: &BTreeMap<String, Bucket>,
        event: &Event,
        now: DateTime<Utc>,
    ) -> (Vec<Event>, String, TriggerChange) {
        let firings: Vec<Event> = step
            .fired
            .iter()
            .map(|f| self.firing_event(f, now))
            .collect();
        let note = match firings.first() {
            Some(f) => format!("{} (firing {})", step.note, f.id),
            None => step.note.clone(),
        };
        let change = self.change(
            buckets,
            step.changed.clone(),
            firings.clone(),
            Some((event.id.clone(), note.clone())),
        );
        (firings, note, change)
    }

    /// Once a step is journaled: its firings are held, the clock looks again, and the
    /// firings are announced.
    fn after_recorded(&self, step: &machine::Step, firings: &[Event]) {
        self.hold(firings);
        self.changed.notify_one();
        step.fired.iter().for_each(|f| self.announce(f));
    }

    /// [`Stateful::absorb`] on a journal other instances share: the event's bucket is read,
    /// stepped and written back under the journal's lock, so however the events of one key
    /// are spread over instances, each is counted once and a threshold fires once.
    async fn absorb_shared(
        &self,
        event: &Arc<Event>,
        judged: Judged,
        journal: &dyn Store,
    ) -> Result<Absorbed, AbsorbError> {
        let mut buckets = self.buckets.lock().await;
        let now = self.now();
        let key = judged.key().to_string();
        let mut outcome = None;
        journal
            .trigger_step(
                &self.route,
                vec![key.clone()],
                Box::new(|stored| {
                    let mut local = parse_buckets(&self.route, stored);
                    let step = self
                        .machine
                        .on_event(&self.route, &mut local, event, judged, now);
                    if !step.relevant {
                        outcome = Some((step, Vec::new(), String::new(), None));
                        return None;
                    }
                    let (firings, note, change) = self.recorded(&step, &local, event, now);
                    let bucket = local.remove(&key).filter(|b| !Machine::idle(b));
                    outcome = Some((step, firings, note, bucket));
                    Some(change)
                }),
            )
            .await?;
        let Some((step, firings, note, bucket)) = outcome else {
            return Err(AbsorbError::Event("the trigger step did not run".into()));
        };
        if !step.relevant {
            return Ok(Absorbed::Unmatched(step.note));
        }
        match bucket {
            Some(b) => buckets.insert(key, b),
            None => buckets.remove(&key),
        };
        drop(buckets);
        self.after_recorded(&step, &firings);
        Ok(Absorbed::Recorded(note, firings))
    }

    /// [`Stateful::tick`] on a journal other instances share: the buckets due by this
    /// instance's view are read afresh under the journal's lock and ended there; one that
    /// another instance ended first is found ended, and nothing fires twice.
    async fn tick_shared(&self, journal: &dyn Store) -> Result<Vec<Event>, JournalError> {
        let mut buckets = self.buckets.lock().await;
        let now = self.now();
        let due: Vec<String> = buckets
            .iter()
            .filter(|(_, b)| self.machine.deadline(b).is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut outcome = None;
        journal
            .trigger_step(
                &self.route,
                due.clone(),
                Box::new(|stored| {
                    let mut local = parse_buckets(&self.route, stored);
                    let (changed, fired) = self.machine.tick(&self.route, &mut local, now);
                    let firings: Vec<Event> =
                        fired.iter().map(|f| self.firing_event(f, now)).collect();
                    let change = (!changed.is_empty())
                        .then(|| self.change(&local, changed, firings.clone(), None));
                    outcome = Some((local, fired, firings));
                    change
                }),
            )
            .await?;
        let Some((mut local, fired, firings)) = outcome else {
            return Ok(Vec::new());
        };
        for key in due {
            match local.remove(&key).filter(|b| !Machine::idle(b)) {
                Some(b) => buckets.insert(key, b),
                None => buckets.remove(&key),
            };
        }
        self.hold(&firings);
        fired.iter().for_each(|f| self.announce(f));
        Ok(firings)
    }

    /// What the route holds open now, for the admin API: its buckets (at most 100, with
    /// counts, when their window opened, whether it fired), how many there are, and the next
    /// deadline a timer will act on.
    pub async fn snapshot(&self) -> Value {
        let buckets = self.buckets.lock().await;
        let next = self.machine.next_deadline(&buckets);
        let shown: Vec<Value> = buckets
            .iter()
            .take(100)
            .map(|(key, b)| {
                json!({
                    "key": key,
                    "opened": b.opened,
                    "count": b.count,
                    "events_kept": b.events.len(),
                    "after_seen": b.after_seen,
                    "fired": b.fired,
                    "last": b.last,
                    "children": b.children.iter().map(|c| json!({"opened": c.opened, "count": c.count})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"open_buckets": buckets.len(), "buckets": shown, "next_deadline": next})
    }

    /// Tells the log, the metrics and the tap that the trigger fired.
    fn announce(&self, f: &Fired) {
        tracing::info!(route = %self.route, key = %f.key, kind = f.kind, firing = %f.id, reason = %f.reason, events = f.count, "trigger fired");
        crate::metrics::decided(&self.route, "fired");
        crate::tap::publish(|| crate::tap::Tapped {
            at: chrono::Utc::now(),
            source: crate::topic::firing_source(&self.route),
            event_id: Some(f.id.clone()),
            event: None,
            route: Some(self.route.clone()),
            decision: "fired".into(),
            detail: Some(f.reason.clone()),
            flow_run_id: None,
        });
    }

    /// Ends what is due now; returns the firings (already journaled).
    pub async fn tick(&self, journal: &dyn Store) -> Result<Vec<Event>, JournalError> {
        if journal.shares_trigger_state() {
            return self.tick_shared(journal).await;
        }
        let mut buckets = self.buckets.lock().await;
        let now = self.now();
        let before = buckets.clone();
        let (changed, fired) = self.machine.tick(&self.route, &mut buckets, now);
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let firings: Vec<Event> = fired.iter().map(|f| self.firing_event(f, now)).collect();
        let change = self.change(&buckets, changed, firings.clone(), None);
        if let Err(e) = journal.absorb(&change).await {
            *buckets = before;
            return Err(e);
        }
        self.hold(&firings);
        buckets.retain(|_, b| !Machine::idle(b));
        fired.iter().for_each(|f| self.announce(f));
        Ok(firings)
    }

    /// Runs the route's clock until `stop`: whenever a window, deadline or batch is due, ticks
    /// and hands the firings on. A journal failure is retried a second later.
    pub async fn run_clock(
        self: Arc<Self>,
        journal: Arc<dyn Store>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let next = {
                let buckets = self.buckets.lock().await;
                self.machine.next_deadline(&buckets)
            };
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(self.clock.instant(t)).await,
                    None => std::future::pending().await,
                }
            };
            let shared = journal.shares_trigger_state();
            let refresh = async {
                if shared {
                    tokio::time::sleep(SHARED_REFRESH).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.changed.notified() => continue,
                () = refresh => {
                    if let Err(e) = self.refresh(journal.as_ref()).await {
                        tracing::warn!(route = %self.route, error = %e, "cannot reload the trigger's shared state");
                    }
                    continue;
                }
                _ = sleep => {}
            }
            match self.tick(journal.as_ref()).await {
                Ok(firings) => self.run_firings(firings).await,
                Err(e) => {
                    tracing::error!(route = %self.route, error = %e, "cannot record the trigger's state; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// A snapshot of the buckets (for tests and inspection).
    pub async fn buckets(&self) -> BTreeMap<String, Bucket> {
        self.buckets.lock().await.clone()
    }
}

/// How often a stateful route on a shared journal reloads the buckets (for their deadlines:
/// a bucket another instance opened ends on time here too, should that instance die).
const SHARED_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Stored bucket states, parsed; one that does not parse is left out (and logged).
fn parse_buckets(route: &str, stored: Vec<(String, Value)>) -> BTreeMap<String, Bucket> {
    stored
        .into_iter()
        .filter_map(|(key, value)| match serde_json::from_value::<Bucket>(value) {
            Ok(b) => Some((key, b)),
            Err(e) => {
                tracing::warn!(route = %route, %key, error = %e, "stored trigger state does not parse; starting that bucket afresh");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
