//! Trigger and batch settings, in Prefect's own shape where Prefect has one, so automations
//! and `prefect.yaml` `triggers:` move over unchanged (`within` in seconds, `posture` as
//! `Reactive` / `Proactive`).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A trigger, tagged by `type` as in Prefect.
// Deserialized by hand (see below), so an error inside names its field:
// `routes[0].trigger.within`, not `routes[0].trigger`.
#[derive(Debug, Clone, PartialEq, schemars::JsonSchema)]
#[schemars(tag = "type", rename_all = "snake_case")]
pub enum TriggerConfig {
    /// Counts matching events per bucket (Prefect's `EventTrigger`).
    Event(EventTriggerConfig),
    /// Fires when `require` of its triggers have fired within `within`.
    Compound(CompoundTriggerConfig),
    /// Fires when its triggers fire in order within `within`.
    Sequence(SequenceTriggerConfig),
}

/// The start of an error message that says where inside a value it happened; the config
/// loader moves it into the error's key.
pub(crate) const AT: &str = "at `";

/// An error at `path` inside a value, as [`AT`] messages nest.
pub(crate) fn located(path: &str, message: &str) -> String {
    let path = path.trim_start_matches('.');
    match message.strip_prefix(AT).and_then(|m| m.split_once("`: ")) {
        Some((inner, rest)) if path.is_empty() || path == "." => format!("{AT}{inner}`: {rest}"),
        Some((inner, rest)) => format!("{AT}{path}.{inner}`: {rest}"),
        None if path.is_empty() || path == "." => message.to_string(),
        None => format!("{AT}{path}`: {message}"),
    }
}

fn variant<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    value: serde_json::Value,
) -> Result<T, E> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        E::custom(located(&path, &e.into_inner().to_string()))
    })
}

impl<'de> Deserialize<'de> for TriggerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = serde_json::Value::deserialize(d)?;
        let Some(map) = value.as_object_mut() else {
            return Err(D::Error::custom(
                "expected a trigger: a mapping with `type: event | compound | sequence`",
            ));
        };
        let kind = match map.remove("type") {
            Some(serde_json::Value::String(t)) => t,
            Some(other) => {
                return Err(D::Error::custom(located(
                    "type",
                    &format!("expected event, compound or sequence, got {other}"),
                )));
            }
            None => {
                return Err(D::Error::custom(
                    "missing field `type` (event, compound or sequence)",
                ));
            }
        };
        match kind.as_str() {
            "event" => variant(value).map(Self::Event),
            "compound" => variant(value).map(Self::Compound),
            "sequence" => variant(value).map(Self::Sequence),
            other => Err(D::Error::custom(located(
                "type",
                &format!("unknown trigger type {other:?}; expected event, compound or sequence"),
            ))),
        }
    }
}

/// Prefect's reactive / proactive posture.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
pub enum Posture {
    /// Fires when `threshold` expected events arrive within `within`.
    #[default]
    #[serde(alias = "reactive")]
    Reactive,
    /// Fires when fewer than `threshold` expected events arrive within `within`.
    #[serde(alias = "proactive")]
    Proactive,
}

/// One label pattern or several (any may match), as Prefect's `match` values.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single pattern.
    One(String),
    /// Any of these.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The patterns.
    pub fn patterns(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// Prefect's `EventTrigger`, plus `when` (a predicate over the payload) and `key` (a template
/// that buckets events by any field, e.g. `{{ event.payload.dataset_id }}`).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTriggerConfig {
    /// Label patterns the event must match (`*` wildcards, `!` negation).
    #[serde(default, rename = "match")]
    pub match_labels: BTreeMap<String, OneOrMany>,
    /// Prefect's related-resource match; Switchyard events carry no related resources, so a
    /// non-empty value is refused rather than silently ignored.
    #[serde(default)]
    pub match_related: serde_json::Value,
    /// Event names that count (wildcards); empty: every matching event.
    #[serde(default)]
    pub expect: Vec<String>,
    /// Event names that must be seen first, opening the bucket.
    #[serde(default)]
    pub after: Vec<String>,
    /// Labels whose values split events into separate buckets.
    #[serde(default)]
    pub for_each: Vec<String>,
    /// Reactive (default) or Proactive.
    #[serde(default)]
    pub posture: Posture,
    /// Events needed (reactive) or expected (proactive); default 1.
    #[serde(default = "one")]
    pub threshold: u64,
    /// The window: seconds (Prefect) or a duration such as `10m`; 0 = no window (reactive).
    #[serde(default, deserialize_with = "seconds_or_duration")]
    #[schemars(with = "crate::durations::Seconds")]
    pub within: Duration,
    /// Jinja predicate over `event`; only events for which it is true count.
    pub when: Option<String>,
    /// Template rendering a bucket key from the event (combined with `for_each`).
    pub key: Option<String>,
    /// How many of the counted events are kept for the run's `events` (default 100).
    #[serde(default = "default_keep")]
    pub keep_events: NonZeroUsize,
}

/// How many of a compound trigger's triggers must fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    /// Any one.
    Any,
    /// All.
    All,
    /// At least this many.
    AtLeast(usize),
}

impl schemars::JsonSchema for Require {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Require".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`any`, `all`, or how many of the triggers (at least 1).",
            "anyOf": [{"enum": ["any", "all"]}, {"type": "integer", "minimum": 1}]
        })
    }
}

impl<'de> Deserialize<'de> for Require {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self::AtLeast(n)),
            Raw::S(s) if s == "any" => Ok(Self::Any),
            Raw::S(s) if s == "all" => Ok(Self::All),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "expected \"any\", \"all\" or a number, got {s:?}"
            ))),
        }
    }
}

/// Prefect's `CompoundTrigger`, plus `key` (a keyed join: each child's events are bucketed by
/// the same key, so `file.landed` and `schema.ready` join on `dataset_id`).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompoundTriggerConfig {
    /// `any`, `all` or a number.
    pub require: Require,
    /// The window in which the required triggers must fire.
    #[serde(default, deserialize_with = "seconds_or_duration")]
    #[schemars(with = "crate::durations::Seconds")]
    pub within: Duration,
    /// The triggers (event triggers).
    pub triggers: Vec<TriggerConfig>,
    /// Template rendering the join key from each event.
    pub key: Option<String>,
}

/// Prefect's `SequenceTrigger`, plus `key`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SequenceTriggerConfig {
    /// The window in which the whole sequence must happen.
    #[serde(default, deserialize_with = "seconds_or_duration")]
    #[schemars(with = "crate::durations::Seconds")]
    pub within: Duration,
    /// The triggers (event triggers), in order.
    pub triggers: Vec<TriggerConfig>,
    /// Template rendering the join key from each event.
    pub key: Option<String>,
}

/// Micro-batching: events that pass `when` gather in a batch (per `key`), which closes at
/// `max_events`, `max_delay` after its first event, or `idle` after its last, whichever comes
/// first; the action then runs once with every event as `events`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Close when this many events are in (default 100, at most 10,000).
    #[serde(default = "default_keep")]
    pub max_events: NonZeroUsize,
    /// Close this long after the first event (default `1m`).
    #[serde(
        default = "default_max_delay",
        deserialize_with = "seconds_or_duration"
    )]
    #[schemars(with = "crate::durations::Seconds")]
    pub max_delay: Duration,
    /// Close when no event arrived for this long (a sliding window of inactivity).
    #[serde(default, deserialize_with = "optional_duration")]
    #[schemars(with = "Option<crate::durations::Seconds>")]
    pub idle: Option<Duration>,
    /// Template rendering a batch key: one batch per key.
    pub key: Option<String>,
}

fn one() -> u64 {
    1
}
fn default_keep() -> NonZeroUsize {
    NonZeroUsize::new(100).unwrap_or(NonZeroUsize::MIN)
}
fn default_max_delay() -> Duration {
    Duration::from_secs(60)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(f64),
    Text(String),
}

fn to_duration<E: serde::de::Error>(raw: RawDuration) -> Result<Duration, E> {
    let max = super::bounds::MAX_WINDOW;
    let too_long = || {
        E::custom(format!(
            "expected at most {} (ten years)",
            humantime_serde::re::humantime::format_duration(max)
        ))
    };
    let d = match raw {
        RawDuration::Seconds(s) if s >= 0.0 && s.is_finite() => {
            Duration::try_from_secs_f64(s).map_err(|_| too_long())?
        }
        RawDuration::Seconds(s) => {
            return Err(E::custom(format!(
                "expected a non-negative number of seconds, got {s}"
            )));
        }
        RawDuration::Text(t) => {
            humantime_serde::re::humantime::parse_duration(&t).map_err(|e| {
                E::custom(format!(
                    "expected seconds or a duration such as \"10m\", got {t:?}: {e}"
                ))
            })?
        }
    };
    if d > max {
        return Err(too_long());
    }
    Ok(d)
}

/// Seconds (as Prefect writes `within`) or a duration string.
pub(crate) fn seconds_or_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    to_duration(RawDuration::deserialize(d)?)
}

pub(crate) fn optional_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<RawDuration>::deserialize(d)?
        .map(to_duration)
        .transpose()
}

/// A duration as a person writes it (`10m`, `1h 30m`, `250ms`).
fn human(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

fn names(names: &[String]) -> String {
    match names {
        [] => "any event".into(),
        [one] => one.clone(),
        many => many.join(" | "),
    }
}

fn per(key: Option<&str>, for_each: &[String]) -> String {
    let mut by: Vec<String> = for_each.to_vec();
    // A key that is one expression reads better without its braces.
    by.extend(key.map(|k| {
        let t = k.trim();
        t.strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .map_or(t, str::trim)
            .to_string()
    }));
    if by.is_empty() {
        String::new()
    } else {
        format!(" per {}", by.join(", "))
    }
}

impl TriggerConfig {
    /// What the trigger waits for, in a line (`check` prints it):
    /// `on 3 × order.failed within 10m per customer`.
    pub fn describe(&self) -> String {
        match self {
            Self::Event(t) => {
                let within = if t.within.is_zero() {
                    String::new()
                } else {
                    format!(" within {}", human(t.within))
                };
                let after = if t.after.is_empty() {
                    String::new()
                } else {
                    format!(" after {}", names(&t.after))
                };
                let filter = t
                    .when
                    .as_ref()
                    .map(|w| format!(" where {w}"))
                    .unwrap_or_default();
                let by = per(t.key.as_deref(), &t.for_each);
                match t.posture {
                    Posture::Reactive => format!(
                        "on {} × {}{filter}{after}{within}{by}",
                        t.threshold,
                        names(&t.expect)
                    ),
                    Posture::Proactive => format!(
                        "when fewer than {} × {}{filter}{after} arrive{within}{by}",
                        t.threshold,
                        names(&t.expect)
                    ),
                }
            }
            Self::Compound(c) => {
                let require = match c.require {
                    Require::Any => "any".to_string(),
                    Require::All => "all".to_string(),
                    Require::AtLeast(n) => n.to_string(),
                };
                let parts: Vec<String> = c.triggers.iter().map(Self::describe).collect();
                format!(
                    "on {require} of [{}] within {}{}",
                    parts.join("; "),
                    human(c.within),
                    per(c.key.as_deref(), &[])
                )
            }
            Self::Sequence(s) => {
                let parts: Vec<String> = s.triggers.iter().map(Self::describe).collect();
                format!(
                    "on [{}] in this order within {}{}",
                    parts.join("; then "),
                    human(s.within),
                    per(s.key.as_deref(), &[])
                )
            }
        }
    }
}

impl BatchConfig {
    /// How batches close, in a line: `in batches of up to 100, closed 1m after the first
    /// event or after 30s idle per event.payload.customer`.
    pub fn describe(&self) -> String {
        let idle = self
            .idle
            .map(|d| format!(" or after {} idle", human(d)))
            .unwrap_or_default();
        format!(
            "in batches of up to {}, closed {} after the first event{idle}{}",
            self.max_events,
            human(self.max_delay),
            per(self.key.as_deref(), &[])
        )
    }
}
