//! Ranges for every configured number. A value outside its range is a config error naming
//! the key and the range, so no configured number reaches a clock, a cast or a division
//! unchecked (a `within: 1e14` would otherwise pass the load and overflow on the first event).

use std::fmt::Display;
use std::time::Duration;

use super::{Config, SourceConfig};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The longest trigger window, batch delay or idle time: ten years.
pub const MAX_WINDOW: Duration = Duration::from_secs(315_576_000);
/// The longest journal retention: a hundred years.
pub const MAX_RETENTION: Duration = Duration::from_secs(3_155_760_000);
/// The fastest rate limit, per second.
pub const MAX_RATE: f64 = 100_000.0;
/// The slowest rate limit, per second (one call in about 17 minutes).
pub const MIN_RATE: f64 = 0.001;

/// `(key, message)`, as the rest of the config checks report.
pub type Problem = (String, String);

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime_serde::re::humantime::format_duration(d).to_string()
    }
}

/// `min <= d <= max`.
pub fn duration(key: &str, d: Duration, min: Duration, max: Duration) -> Result<(), Problem> {
    if d < min || d > max {
        return Err((
            key.to_string(),
            format!(
                "expected between {} and {}, got {}",
                show(min),
                show(max),
                show(d)
            ),
        ));
    }
    Ok(())
}

/// `min <= v <= max`.
pub fn number<T: PartialOrd + Display>(key: &str, v: T, min: T, max: T) -> Result<(), Problem> {
    if v < min || v > max {
        return Err((
            key.to_string(),
            format!("expected between {min} and {max}, got {v}"),
        ));
    }
    Ok(())
}

/// A rate in calls per second: finite and in [`MIN_RATE`, `MAX_RATE`]. Zero or a negative
/// number is refused (it would otherwise read as "unlimited").
pub fn rate(key: &str, r: f64) -> Result<(), Problem> {
    if !r.is_finite() || !(MIN_RATE..=MAX_RATE).contains(&r) {
        return Err((
            key.to_string(),
            format!(
                "expected calls per second between {MIN_RATE} and {MAX_RATE} (leave it out for no limit), got {r}"
            ),
        ));
    }
    Ok(())
}

/// Every number of the config against its range.
pub fn check(c: &Config) -> Result<(), Problem> {
    let p = &c.prefect;
    duration(
        "prefect.request_timeout",
        p.request_timeout,
        Duration::from_millis(100),
        HOUR,
    )?;
    if let Some(r) = p.rate_limit {
        rate("prefect.rate_limit", r)?;
    }
    number("prefect.max_retries", p.max_retries, 0, 100)?;
    number("prefect.max_in_flight", p.max_in_flight.get(), 1, 256)?;
    let f = &p.follow;
    duration(
        "prefect.follow.interval",
        f.interval,
        Duration::from_millis(100),
        HOUR,
    )?;
    duration(
        "prefect.follow.max_interval",
        f.max_interval,
        f.interval,
        HOUR,
    )?;
    duration("prefect.follow.max_age", f.max_age, MINUTE, 365 * DAY)?;
    let e = &c.engine;
    number(
        "engine.queue_capacity",
        e.queue_capacity.get(),
        1,
        1_000_000,
    )?;
    number("engine.min_consumers", e.min_consumers.get(), 1, 1024)?;
    number("engine.max_consumers", e.max_consumers.get(), 1, 1024)?;
    duration(
        "engine.shutdown_timeout",
        e.shutdown_timeout,
        Duration::ZERO,
        DAY,
    )?;
    number(
        "http.max_body_bytes",
        c.http.max_body_bytes.get(),
        1,
        256 << 20,
    )?;
    let h = &c.http;
    duration("http.header_timeout", h.header_timeout, MS, HOUR)?;
    duration("http.body_timeout", h.body_timeout, MS, HOUR)?;
    duration("http.idle_timeout", h.idle_timeout, MS, DAY)?;
    number(
        "http.max_connections",
        h.max_connections.get(),
        1,
        1_000_000,
    )?;
    let r = &c.journal.retention;
    duration(
        "journal.retention.max_age",
        r.max_age,
        MINUTE,
        MAX_RETENTION,
    )?;
    number(
        "journal.retention.max_events",
        r.max_events,
        0,
        1_000_000_000_000,
    )?;
    let j = &c.journal;
    duration(
        "journal.check_interval",
        j.check_interval,
        Duration::from_millis(100),
        HOUR,
    )?;
    duration(
        "journal.sweep_interval",
        j.sweep_interval,
        Duration::from_millis(100),
        DAY,
    )?;
    duration("journal.sweep_after", j.sweep_after, SECOND, DAY)?;
    duration("journal.lease", j.lease, SECOND, HOUR)?;
    if let Some(url) = &j.url {
        super::check_journal_url(url).map_err(|e| ("journal.url".to_string(), e))?;
    }
    if let Some(name) = &j.instance
        && (name.is_empty() || name.len() > 200 || name.chars().any(char::is_control))
    {
        return Err((
            "journal.instance".into(),
            "expected a name of 1 to 200 printable characters".into(),
        ));
    }
    let d = &c.delivery;
    number("delivery.max_attempts", d.max_attempts.get(), 1, 1000)?;
    duration("delivery.max_age", d.max_age, Duration::ZERO, 365 * DAY)?;
    duration(
        "delivery.backoff",
        d.backoff,
        Duration::from_millis(1),
        HOUR,
    )?;
    duration("delivery.max_backoff", d.max_backoff, d.backoff, DAY)?;
    let t = &c.templates;
    number("templates.fuel", t.fuel, 100, 1_000_000_000)?;
    number(
        "templates.max_output_bytes",
        t.max_output_bytes,
        1024,
        256 << 20,
    )?;
    number("templates.threads", t.threads, 1, 64)?;
    for (i, s) in c.sources.iter().enumerate() {
        let key = |k: &str| format!("sources[{i}].{k}");
        match s {
            SourceConfig::Stdin(s) => {
                number(&key("max_line_bytes"), s.max_line_bytes.get(), 1, 256 << 20)?
            }
            SourceConfig::RedisStreams(r) => {
                number(&key("batch"), r.batch.get(), 1, 10_000)?;
                duration(&key("claim_idle"), r.claim_idle, SECOND, 7 * DAY)?;
            }
            SourceConfig::Nats(n) => {
                duration(&key("ack_wait"), n.ack_wait, SECOND, DAY)?;
                number(
                    &key("max_ack_pending"),
                    n.max_ack_pending.get(),
                    1,
                    1_000_000,
                )?;
            }
            SourceConfig::Kafka(k) => {
                duration(&key("session_timeout"), k.session_timeout, SECOND, HOUR)?
            }
            SourceConfig::AzureQueue(a) => duration(
                &key("max_poll_interval"),
                a.max_poll_interval,
                Duration::from_millis(10),
                HOUR,
            )?,
            SourceConfig::Amqp(a) => duration(&key("reply_timeout"), a.reply_timeout, SECOND, DAY)?,
            SourceConfig::Webhook(w) => {
                if let Some(t) = w.respond_timeout {
                    duration(&key("respond_timeout"), t, SECOND, HOUR)?;
                }
            }
            _ => {}
        }
    }
    for (i, r) in c.routes.iter().enumerate() {
        number(&format!("routes[{i}].max_runs"), r.max_runs, 1, 100)?;
        if let Some(n) = r.max_backlog {
            number(&format!("routes[{i}].max_backlog"), n, 1, 1_000_000)?;
        }
        duration(
            &format!("routes[{i}].finish_timeout"),
            r.finish_timeout,
            SECOND,
            30 * DAY,
        )?;
        if let Some(k) = &r.concurrency {
            number(&format!("routes[{i}].concurrency.limit"), k.limit, 1, 1000)?;
            if !c.prefect.follow.enabled {
                return Err((
                    format!("routes[{i}].concurrency"),
                    "needs the runs followed (prefect.follow.enabled: true)".into(),
                ));
            }
        }
        if r.settle_on == super::SettleOn::Finished && !c.prefect.follow.enabled {
            return Err((
                format!("routes[{i}].settle_on"),
                "`finished` needs the runs followed (prefect.follow.enabled: true)".into(),
            ));
        }
        let super::ActionConfig::RunDeployment(a) = &r.action;
        if let Some(rl) = a.rate_limit {
            rate(&format!("routes[{i}].action.rate_limit"), rl)?;
        }
        if let Some(n) = a.max_in_flight {
            number(
                &format!("routes[{i}].action.max_in_flight"),
                n.get(),
                1,
                256,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_range() {
        let e = duration("a.b", Duration::from_secs(0), SECOND, HOUR).unwrap_err();
        assert_eq!(e.0, "a.b");
        assert_eq!(e.1, "expected between 1s and 1h, got 0s");
        assert!(rate("r", 0.0).is_err());
        assert!(rate("r", -1.0).is_err());
        assert!(rate("r", 1e-300).is_err());
        assert!(rate("r", f64::INFINITY).is_err());
        assert!(rate("r", 10.0).is_ok());
        assert_eq!(
            number("n", 5, 1, 4).unwrap_err().1,
            "expected between 1 and 4, got 5"
        );
    }

    /// A journal URL that is not PostgreSQL's, or does not parse, or a name no one can read,
    /// is a config error at its key, the password never in the message.
    #[test]
    fn journal_urls_and_names_are_checked_without_echoing_secrets() {
        let with = |url: Option<&str>, instance: Option<&str>, lease: u64| {
            let mut journal = format!("lease: {lease}s");
            if let Some(u) = url {
                journal.push_str(&format!(", url: {u:?}"));
            }
            if let Some(i) = instance {
                journal.push_str(&format!(", instance: {i:?}"));
            }
            let text = format!(
                "journal: {{{journal}}}\nsources: [{{type: webhook, name: a}}]\nroutes: [{{name: r, action: {{type: run_deployment, deployment: a/b}}}}]\n"
            );
            super::super::parse_str(std::path::Path::new("app.yaml"), &text, |_| None)
                .map(|_| ())
                .map_err(|e| (e.key.unwrap_or_default(), e.message))
        };
        assert!(with(Some("postgres://u:pw@127.0.0.1:5432/db"), Some("a"), 20).is_ok());
        assert!(
            with(
                Some("postgresql://u@db/switchyard?connect_timeout=5"),
                None,
                20
            )
            .is_ok()
        );
        for (url, want) in [
            (
                "mysql://u:s3cret@h/db",
                "expected a postgres:// or postgresql:// URL",
            ),
            ("postgres://u:s3cret@h:notaport/db", "not a PostgreSQL URL"),
        ] {
            let (key, message) = with(Some(url), None, 20).unwrap_err();
            assert_eq!(key, "journal.url");
            assert!(message.contains(want), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        for bad in ["", "a\nb"] {
            assert_eq!(with(None, Some(bad), 20).unwrap_err().0, "journal.instance");
        }
        assert_eq!(with(None, None, 0).unwrap_err().0, "journal.lease");
        assert_eq!(with(None, None, 7200).unwrap_err().0, "journal.lease");
    }

    /// Following runs and waiting on them take only numbers in range, and `settle_on:
    /// finished` only with runs followed; each error names its key.
    #[test]
    fn following_and_waiting_are_bounded() {
        let check = |prefect: &str, source: &str, route: &str| {
            let text = format!(
                "prefect: {{{prefect}}}\nsources: [{{type: webhook, name: a{source}}}]\nroutes: [{{name: r{route}, action: {{type: run_deployment, deployment: a/b}}}}]\n"
            );
            super::super::parse_str(std::path::Path::new("app.yaml"), &text, |_| None)
                .map(|_| ())
                .map_err(|e| (e.key.unwrap_or_default(), e.message))
        };
        assert!(check("", ", respond: finished", ", settle_on: finished").is_ok());
        for (prefect, source, route, key) in [
            (
                "follow: {interval: 10ms}",
                "",
                "",
                "prefect.follow.interval",
            ),
            (
                "follow: {interval: 5s, max_interval: 1s}",
                "",
                "",
                "prefect.follow.max_interval",
            ),
            ("follow: {max_age: 1s}", "", "", "prefect.follow.max_age"),
            (
                "",
                ", respond_timeout: 0s",
                "",
                "sources[0].respond_timeout",
            ),
            (
                "",
                ", respond_timeout: 2h",
                "",
                "sources[0].respond_timeout",
            ),
            ("", "", ", max_runs: 0", "routes[0].max_runs"),
            ("", "", ", max_runs: 101", "routes[0].max_runs"),
            ("", "", ", finish_timeout: 0s", "routes[0].finish_timeout"),
            ("", "", ", max_backlog: 0", "routes[0].max_backlog"),
            (
                "",
                "",
                ", concurrency: {key: k, limit: 0}",
                "routes[0].concurrency.limit",
            ),
            (
                "follow: {enabled: false}",
                "",
                ", concurrency: {key: k}",
                "routes[0].concurrency",
            ),
            (
                "follow: {enabled: false}",
                "",
                ", settle_on: finished",
                "routes[0].settle_on",
            ),
        ] {
            let (k, message) = check(prefect, source, route).unwrap_err();
            assert_eq!(k, key, "{message}");
        }
        let (_, message) = check("", ", respond: later", "").unwrap_err();
        assert!(message.contains("accepted"), "{message}");
    }
}
