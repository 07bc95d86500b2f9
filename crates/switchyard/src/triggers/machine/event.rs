//! One event trigger: which events count, per bucket, and when its windows open, fire and
//! end.

use super::*;

impl EventSpec {
    pub(super) fn compile(cfg: &TriggerConfig, at: &str) -> Result<Self, (String, String)> {
        let TriggerConfig::Event(c) = cfg else {
            return Err((
                at.to_string(),
                "expected an event trigger here (compound and sequence triggers take event triggers)"
                    .into(),
            ));
        };
        if !(c.match_related.is_null()
            || c.match_related.as_object().is_some_and(|m| m.is_empty())
            || c.match_related.as_array().is_some_and(|a| a.is_empty()))
        {
            return Err((
                format!("{at}match_related"),
                "Switchyard events carry no related resources; express the condition with `match` on labels or `when` on the payload".into(),
            ));
        }
        if c.threshold == 0 {
            return Err((format!("{at}threshold"), "expected at least 1".into()));
        }
        if c.posture == Posture::Proactive && c.within.is_zero() {
            return Err((
                format!("{at}within"),
                "a Proactive trigger needs a window (how long to wait for the expected events)"
                    .into(),
            ));
        }
        Ok(Self {
            labels: c
                .match_labels
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.patterns().iter().map(|p| Pattern::new(p)).collect(),
                    )
                })
                .collect(),
            expect: c.expect.iter().map(|p| Pattern::new(p)).collect(),
            after: c.after.iter().map(|p| Pattern::new(p)).collect(),
            for_each: c.for_each.clone(),
            key: c
                .key
                .as_deref()
                .map(TextTemplate::compile)
                .transpose()
                .map_err(|e| (format!("{at}key"), e))?,
            when: c
                .when
                .as_deref()
                .map(Predicate::compile)
                .transpose()
                .map_err(|e| (format!("{at}when"), e))?,
            posture: c.posture,
            threshold: c.threshold,
            within: c.within,
            keep: c.keep_events.get(),
        })
    }

    /// Whether the event is for this trigger: labels match, `when` holds, and its name is
    /// expected or an `after` event.
    pub(super) fn relevant(&self, event: &Event, ctx: &minijinja::Value) -> Result<bool, String> {
        let labels_ok = self.labels.iter().all(|(key, patterns)| {
            let value = match key.as_str() {
                "event" => Some(event.name.as_str()),
                "source" => Some(event.source.as_str()),
                k => event.labels.get(k).map(String::as_str),
            };
            matches_patterns(patterns, value)
        });
        if !labels_ok || !(self.is_expected(&event.name) || self.is_after(&event.name)) {
            return Ok(false);
        }
        match &self.when {
            Some(w) => w.eval(ctx),
            None => Ok(true),
        }
    }

    pub(super) fn is_expected(&self, name: &str) -> bool {
        self.expect.is_empty() || name_in(&self.expect, name)
    }

    pub(super) fn is_after(&self, name: &str) -> bool {
        !self.after.is_empty() && name_in(&self.after, name)
    }

    pub(super) fn bucket_key(
        &self,
        event: &Event,
        ctx: &minijinja::Value,
    ) -> Result<String, String> {
        let mut parts: Vec<String> = self
            .for_each
            .iter()
            .map(|l| event.labels.get(l).cloned().unwrap_or_default())
            .collect();
        if let Some(k) = &self.key {
            parts.push(
                k.render(ctx)
                    .map_err(|e| format!("cannot render key: {e}"))?,
            );
        }
        Ok(parts.join("|"))
    }

    pub(super) fn window_end(&self, b: &Bucket) -> Option<DateTime<Utc>> {
        match (b.opened, self.within.is_zero()) {
            (Some(o), false) => Some(after(o, self.within)),
            _ => None,
        }
    }

    /// Feeds a relevant event; returns the firing (without id/key) and a note. Windows due
    /// before `now` must have been ended with [`EventSpec::tick`] first.
    pub(super) fn feed(
        &self,
        b: &mut Bucket,
        event: &Event,
        now: DateTime<Utc>,
    ) -> (Option<(Vec<Event>, u64, String)>, String) {
        if self.is_after(&event.name) {
            // An `after` event opens a fresh window; it does not count itself (as in Prefect,
            // so `after` = `expect` is the heartbeat idiom: the *next* one must come in time).
            *b = Bucket {
                opened: Some(now),
                after_seen: true,
                ..Bucket::default()
            };
            return (None, "opened a window (`after` event)".into());
        }
        if !self.after.is_empty() && !b.after_seen {
            return (None, "waiting for an `after` event".into());
        }
        match self.posture {
            Posture::Reactive => {
                match b.opened {
                    // Fired in this period already: Prefect waits for the next one.
                    Some(o) if now < o => {
                        return (
                            None,
                            format!(
                                "ignored: fired this period; counting resumes at {}",
                                o.to_rfc3339()
                            ),
                        );
                    }
                    Some(_) => {}
                    None => b.opened = Some(now),
                }
                b.count += 1;
                push_kept(&mut b.events, event.clone(), self.keep);
                if b.count < self.threshold {
                    return (None, format!("counted {} of {}", b.count, self.threshold));
                }
                let reason = format!(
                    "{} of {} expected events{}",
                    b.count,
                    self.threshold,
                    if self.within.is_zero() {
                        String::new()
                    } else {
                        format!(" within {}", humantime(self.within))
                    }
                );
                let fired = (std::mem::take(&mut b.events), b.count, reason.clone());
                let next = self.window_end(b).map(|end| end.max(now));
                *b = Bucket::default();
                if self.after.is_empty() {
                    // The next period starts where this one ends (nothing with `within: 0`).
                    b.opened = next;
                }
                (Some(fired), format!("fired: {reason}"))
            }
            Posture::Proactive => {
                let note = if b.fired {
                    b.fired = false;
                    "resolved: the expected event is back".to_string()
                } else {
                    format!("counted {} of {} expected", b.count + 1, self.threshold)
                };
                b.opened.get_or_insert(now);
                b.count += 1;
                push_kept(&mut b.events, event.clone(), self.keep);
                (None, note)
            }
        }
    }

    /// Ends a window that is over at `now`. A proactive trigger short of its threshold fires
    /// (and, without `after`, keeps watching: each silent period fires, as in Prefect); a
    /// reactive window that ended short of its threshold is dropped. The next period starts at
    /// the later of the window's end and `now`, so a long outage fires once, not once per
    /// missed period.
    pub(super) fn tick(
        &self,
        b: &mut Bucket,
        now: DateTime<Utc>,
    ) -> Option<(Vec<Event>, u64, String, DateTime<Utc>)> {
        let end = self.window_end(b)?;
        if now < end {
            return None;
        }
        let next = |b: &mut Bucket, fired: bool| {
            *b = Bucket::default();
            if self.after.is_empty() {
                b.opened = Some(end.max(now));
                b.fired = fired;
            }
        };
        match self.posture {
            Posture::Reactive => {
                *b = Bucket::default();
                None
            }
            Posture::Proactive if b.count < self.threshold => {
                let reason = format!(
                    "{} of {} expected events within {}",
                    b.count,
                    self.threshold,
                    humantime(self.within)
                );
                let events = std::mem::take(&mut b.events);
                let count = b.count;
                next(b, true);
                Some((events, count, reason, end))
            }
            Posture::Proactive => {
                next(b, false);
                None
            }
        }
    }

    pub(super) fn deadline(&self, b: &Bucket) -> Option<DateTime<Utc>> {
        self.window_end(b)
    }

    /// The event names this trigger can use, when they are all exact names (so the engine
    /// can deliver only those events to the route).
    pub(super) fn exact_names(&self) -> Option<Vec<String>> {
        if self.expect.is_empty() {
            return None;
        }
        self.expect
            .iter()
            .chain(&self.after)
            .map(|p| p.exact().map(str::to_string))
            .collect()
    }

    /// Proactive and unkeyed with no `after`: the watch starts at start-up.
    pub(super) fn starts_armed(&self) -> bool {
        self.posture == Posture::Proactive
            && self.after.is_empty()
            && self.for_each.is_empty()
            && self.key.is_none()
    }
}

pub(super) fn push_kept(events: &mut Vec<Event>, e: Event, keep: usize) {
    events.push(e);
    if events.len() > keep {
        let extra = events.len() - keep;
        events.drain(..extra);
    }
}

pub(super) fn humantime(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}
