//! The trigger and batch state machines: pure functions of (state, event or time) → (state,
//! firings). Time is passed in, so tests drive it exactly and a restart resumes from stored
//! state with the wall clock.
//!
//! Semantics (documented in the README):
//! - **Reactive** event trigger: a bucket opens at its first counted event (or at an `after`
//!   event); when `threshold` counted events arrive within `within` of its opening it fires
//!   and starts over. A window that ends short of the threshold is dropped. `within: 0` means
//!   no window.
//! - **Proactive** event trigger: a window opens at an `after` event (with no `after`: at
//!   start-up for the unkeyed bucket, and at an expected event for a keyed one). When it ends
//!   with fewer than `threshold` expected events, the trigger fires once and waits: the next
//!   expected event *resolves* it and opens a new window. When it ends with enough, the next
//!   window starts at once (with `after`, the next `after` event opens it).
//! - **Compound**: each child counts on its own; the compound fires when `require` children
//!   have fired within `within` of the first. **Sequence**: the children must fire in order
//!   within `within` of the first; a first child firing again restarts the sequence.
//! - **Batch**: opens at its first event, closes at `max_events`, `max_delay` after opening,
//!   or `idle` after its last event.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::Event;

use crate::config::triggers::{BatchConfig, Posture, Require, TriggerConfig};
use crate::template::{self, Predicate, TextTemplate};

mod batch;
mod event;
mod joined;
mod pattern;

use batch::{batch_deadline, batch_fired};
use joined::{expire_hits, joined_ready, record_hit};
pub use pattern::Pattern;
use pattern::{matches_patterns, name_in};

/// A compiled event trigger.
#[derive(Debug)]
pub struct EventSpec {
    labels: Vec<(String, Vec<Pattern>)>,
    expect: Vec<Pattern>,
    after: Vec<Pattern>,
    for_each: Vec<String>,
    key: Option<TextTemplate>,
    when: Option<Predicate>,
    posture: Posture,
    threshold: u64,
    within: Duration,
    keep: usize,
}

/// A compiled batch.
#[derive(Debug)]
pub struct BatchSpec {
    max_events: usize,
    max_delay: Duration,
    idle: Option<Duration>,
    key: Option<TextTemplate>,
}

/// What a stateful route runs.
#[derive(Debug)]
pub enum Machine {
    /// One event trigger.
    Event(Box<EventSpec>),
    /// Compound (`ordered: false`) or sequence (`ordered: true`).
    Joined {
        /// How many children must fire.
        required: usize,
        /// In order.
        ordered: bool,
        /// The window.
        within: Duration,
        /// Join key.
        key: Option<TextTemplate>,
        /// The children.
        children: Vec<EventSpec>,
    },
    /// Micro-batching.
    Batch(BatchSpec),
}

/// One bucket's state, stored in the journal as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// When the current window opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened: Option<DateTime<Utc>>,
    /// Counted events in the window.
    #[serde(default)]
    pub count: u64,
    /// The last counted events (at most `keep_events`; every event for a batch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// An `after` event was seen.
    #[serde(default)]
    pub after_seen: bool,
    /// Proactive: fired and waiting for an expected event to resolve.
    #[serde(default)]
    pub fired: bool,
    /// When the last event arrived (batch idle rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<DateTime<Utc>>,
    /// Compound / sequence: each child's own bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Bucket>,
    /// Compound / sequence: when each child fired, and its events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hits: Vec<Option<(DateTime<Utc>, Vec<Event>)>>,
}

impl Bucket {
    fn is_idle(&self) -> bool {
        self.opened.is_none()
            && self.count == 0
            && self.events.is_empty()
            && !self.after_seen
            && !self.fired
            && self.children.iter().all(Bucket::is_idle)
            && self.hits.iter().all(Option::is_none)
    }
}

/// A firing: the action will run once for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The bucket key.
    pub key: String,
    /// Deterministic id: the same input always fires the same id, so a replay after a crash
    /// finds the firing already journaled instead of making a second one.
    pub id: String,
    /// `threshold`, `absence`, `compound`, `sequence` or `batch`.
    pub kind: &'static str,
    /// The contributing events, oldest first.
    pub events: Vec<Event>,
    /// How many events counted (may exceed `events.len()`).
    pub count: u64,
    /// Why, for the journal and logs.
    pub reason: String,
}

/// The result of feeding one event.
#[derive(Debug, Default)]
pub struct Step {
    /// Whether the event was relevant to the trigger at all.
    pub relevant: bool,
    /// What happened, for the event's decision.
    pub note: String,
    /// Buckets that changed (to store or, when idle, delete).
    pub changed: Vec<String>,
    /// Firings.
    pub fired: Vec<Fired>,
}

/// What a machine's templates said about one event (see [`Machine::judge`]).
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// The bucket key.
    key: String,
    /// Per trigger (one for an event trigger or a batch; one per child of a join): whether
    /// the event counts for it.
    relevant: Vec<bool>,
}

impl Judged {
    /// The bucket the event goes to.
    pub fn key(&self) -> &str {
        &self.key
    }
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `t + d`, or the end of time when that is past what a timestamp can hold (config bounds
/// keep windows far below that; this keeps the arithmetic total whatever reaches it).
fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(dur(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Machine {
    /// Compiles a route's trigger or batch; errors are `(key, message)`.
    pub fn compile(
        trigger: Option<&TriggerConfig>,
        batch: Option<&BatchConfig>,
    ) -> Result<Option<Self>, (String, String)> {
        match (trigger, batch) {
            (Some(_), Some(_)) => Err((
                "batch".into(),
                "a route has either a trigger or a batch, not both".into(),
            )),
            (None, None) => Ok(None),
            (None, Some(b)) => {
                if b.max_events.get() > 10_000 {
                    return Err(("batch.max_events".into(), "expected at most 10000".into()));
                }
                if b.max_delay.is_zero() {
                    return Err(("batch.max_delay".into(), "expected more than 0".into()));
                }
                Ok(Some(Self::Batch(BatchSpec {
                    max_events: b.max_events.get(),
                    max_delay: b.max_delay,
                    idle: b.idle.filter(|d| !d.is_zero()),
                    key: b
                        .key
                        .as_deref()
                        .map(TextTemplate::compile)
                        .transpose()
                        .map_err(|e| ("batch.key".to_string(), e))?,
                })))
            }
            (Some(t @ TriggerConfig::Event(_)), None) => {
                EventSpec::compile(t, "trigger.").map(|s| Some(Self::Event(Box::new(s))))
            }
            (Some(TriggerConfig::Compound(c)), None) => {
                let n = c.triggers.len();
                let required = match c.require {
                    Require::Any => 1,
                    Require::All => n,
                    Require::AtLeast(k) => k,
                };
                if required == 0 || required > n {
                    return Err((
                        "trigger.require".into(),
                        format!("expected 1 to {n} (the number of triggers), got {required}"),
                    ));
                }
                Self::joined(&c.triggers, required, false, c.within, c.key.as_deref())
            }
            (Some(TriggerConfig::Sequence(s)), None) => {
                let n = s.triggers.len();
                Self::joined(&s.triggers, n, true, s.within, s.key.as_deref())
            }
        }
    }

    fn joined(
        triggers: &[TriggerConfig],
        required: usize,
        ordered: bool,
        within: Duration,
        key: Option<&str>,
    ) -> Result<Option<Self>, (String, String)> {
        if triggers.is_empty() {
            return Err((
                "trigger.triggers".into(),
                "expected at least one trigger".into(),
            ));
        }
        let children = triggers
            .iter()
            .enumerate()
            .map(|(i, t)| EventSpec::compile(t, &format!("trigger.triggers[{i}].")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Self::Joined {
            required,
            ordered,
            within,
            key: key
                .map(TextTemplate::compile)
                .transpose()
                .map_err(|e| ("trigger.key".to_string(), e))?,
            children,
        }))
    }

    /// Buckets to create at start-up (a proactive watch that starts armed).
    pub fn start(&self, buckets: &mut BTreeMap<String, Bucket>, now: DateTime<Utc>) -> Vec<String> {
        match self {
            Self::Event(spec) if spec.starts_armed() && !buckets.contains_key("") => {
                buckets.insert(
                    String::new(),
                    Bucket {
                        opened: Some(now),
                        ..Bucket::default()
                    },
                );
                vec![String::new()]
            }
            _ => Vec::new(),
        }
    }

    /// Evaluates the templates an event meets (`when`, `key`) without touching any state:
    /// the slow, user-controlled part of a step, run on the evaluation pool.
    pub fn judge(&self, event: &Event) -> Result<Judged, String> {
        let ctx = template::context(event);
        let render_key = |k: &Option<TextTemplate>| -> Result<String, String> {
            match k {
                Some(k) => k
                    .render(&ctx)
                    .map_err(|e| format!("cannot render key: {e}")),
                None => Ok(String::new()),
            }
        };
        Ok(match self {
            Self::Event(spec) => {
                let relevant = spec.relevant(event, &ctx)?;
                let key = if relevant {
                    spec.bucket_key(event, &ctx)?
                } else {
                    String::new()
                };
                Judged {
                    key,
                    relevant: vec![relevant],
                }
            }
            Self::Joined { key, children, .. } => {
                let key = render_key(key)?;
                let relevant = children
                    .iter()
                    .map(|c| c.relevant(event, &ctx))
                    .collect::<Result<_, _>>()?;
                Judged { key, relevant }
            }
            Self::Batch(spec) => Judged {
                key: render_key(&spec.key)?,
                relevant: vec![true],
            },
        })
    }

    /// Feeds one event, judged by [`Machine::judge`].
    pub fn on_event(
        &self,
        route: &str,
        buckets: &mut BTreeMap<String, Bucket>,
        event: &Event,
        judged: Judged,
        now: DateTime<Utc>,
    ) -> Step {
        let Judged { key, relevant } = judged;
        let mut step = Step::default();
        match self {
            Self::Event(spec) => {
                if !relevant.first().copied().unwrap_or(false) {
                    step.note = "not matched by the trigger".into();
                    return step;
                }
                step.relevant = true;
                let b = buckets.entry(key.clone()).or_default();
                let (fired, note) = spec.feed(b, event, now);
                step.note = note;
                step.changed.push(key.clone());
                if let Some((events, count, reason)) = fired {
                    step.fired.push(Fired {
                        id: format!("trigger:{route}:{}", event.id),
                        key,
                        kind: "threshold",
                        events,
                        count,
                        reason,
                    });
                }
            }
            Self::Joined {
                required,
                ordered,
                within,
                children,
                ..
            } => {
                let b = buckets.entry(key.clone()).or_default();
                b.children.resize_with(children.len(), Bucket::default);
                b.hits.resize_with(children.len(), || None);
                let mut notes = Vec::new();
                for (i, child) in children.iter().enumerate() {
                    if !relevant.get(i).copied().unwrap_or(false) {
                        continue;
                    }
                    step.relevant = true;
                    let (fired, note) = child.feed(&mut b.children[i], event, now);
                    notes.push(format!("trigger {i}: {note}"));
                    if let Some((events, _, _)) = fired {
                        record_hit(b, i, *ordered, *within, now, events);
                    }
                }
                if !step.relevant {
                    step.note = "not matched by the trigger".into();
                    if b.is_idle() {
                        buckets.remove(&key);
                    }
                    return step;
                }
                step.changed.push(key.clone());
                if let Some(f) = joined_ready(b, *required, *ordered) {
                    step.fired.push(Fired {
                        id: format!("trigger:{route}:{}", event.id),
                        key,
                        kind: if *ordered { "sequence" } else { "compound" },
                        count: f.len() as u64,
                        events: f,
                        reason: format!(
                            "{} of {} triggers fired{}",
                            required,
                            children.len(),
                            if *ordered { " in order" } else { "" }
                        ),
                    });
                    notes.push("fired".into());
                }
                step.note = notes.join("; ");
            }
            Self::Batch(spec) => {
                step.relevant = true;
                let b = buckets.entry(key.clone()).or_default();
                b.opened.get_or_insert(now);
                b.last = Some(now);
                b.count += 1;
                b.events.push(event.clone());
                step.changed.push(key.clone());
                if b.events.len() >= spec.max_events {
                    let taken = std::mem::take(b);
                    step.fired
                        .push(batch_fired(route, &key, taken, "max_events reached"));
                    step.note = format!("closed the batch ({} events)", spec.max_events);
                } else {
                    step.note = format!("batched ({} so far)", b.events.len());
                }
            }
        }
        step
    }

    /// Ends what is due at `now`; returns the changed keys and the firings.
    pub fn tick(
        &self,
        route: &str,
        buckets: &mut BTreeMap<String, Bucket>,
        now: DateTime<Utc>,
    ) -> (Vec<String>, Vec<Fired>) {
        let (mut changed, mut fired) = (Vec::new(), Vec::new());
        for (key, b) in buckets.iter_mut() {
            match self {
                Self::Event(spec) => {
                    if spec.deadline(b).is_some_and(|d| d <= now) {
                        changed.push(key.clone());
                        if let Some((events, count, reason, end)) = spec.tick(b, now) {
                            fired.push(Fired {
                                id: format!("trigger:{route}:{key}:absence:{}", end.to_rfc3339()),
                                key: key.clone(),
                                kind: "absence",
                                events,
                                count,
                                reason,
                            });
                        }
                    }
                }
                Self::Joined {
                    ordered,
                    within,
                    children,
                    ..
                } => {
                    let mut touched = false;
                    for (i, child) in children.iter().enumerate() {
                        let Some(cb) = b.children.get_mut(i) else {
                            continue;
                        };
                        if child.deadline(cb).is_some_and(|d| d <= now) {
                            touched = true;
                            if let Some((events, _, _, _)) = child.tick(cb, now) {
                                record_hit(b, i, *ordered, *within, now, events);
                            }
                        }
                    }
                    if expire_hits(b, *within, now) {
                        touched = true;
                    }
                    if touched {
                        changed.push(key.clone());
                    }
                }
                Self::Batch(spec) => {
                    if batch_deadline(spec, b).is_some_and(|d| d <= now) {
                        changed.push(key.clone());
                        let reason = if b.opened.is_some_and(|o| after(o, spec.max_delay) <= now) {
                            "max_delay reached"
                        } else {
                            "idle"
                        };
                        let taken = std::mem::take(b);
                        fired.push(batch_fired(route, key, taken, reason));
                    }
                }
            }
        }
        (changed, fired)
    }

    /// When `tick` next has something to do.
    pub fn next_deadline(&self, buckets: &BTreeMap<String, Bucket>) -> Option<DateTime<Utc>> {
        buckets.values().filter_map(|b| self.deadline(b)).min()
    }

    /// When this machine will next act on one bucket on its own, if ever.
    pub fn deadline(&self, b: &Bucket) -> Option<DateTime<Utc>> {
        match self {
            Self::Event(spec) => spec.deadline(b),
            Self::Joined {
                within, children, ..
            } => {
                let first_hit = b.hits.iter().flatten().map(|(t, _)| *t).min();
                children
                    .iter()
                    .zip(&b.children)
                    .filter_map(|(c, cb)| c.deadline(cb))
                    .chain(
                        first_hit
                            .filter(|_| !within.is_zero())
                            .map(|t| after(t, *within)),
                    )
                    .min()
            }
            Self::Batch(spec) => batch_deadline(spec, b),
        }
    }

    /// The only event names that can matter to this machine, when that set is known exactly
    /// (every `expect`/`after` is an exact name); `None` for batches and wildcards.
    pub fn exact_names(&self) -> Option<Vec<String>> {
        let mut names = match self {
            Self::Event(spec) => spec.exact_names()?,
            Self::Joined { children, .. } => {
                let mut all = Vec::new();
                for c in children {
                    all.extend(c.exact_names()?);
                }
                all
            }
            Self::Batch(_) => return None,
        };
        names.sort();
        names.dedup();
        Some(names)
    }

    /// Whether a bucket can be deleted.
    pub fn idle(b: &Bucket) -> bool {
        b.is_idle()
    }
}
