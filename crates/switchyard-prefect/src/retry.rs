use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How transient failures are retried: exponential backoff with jitter, `Retry-After` wins
/// when the server sends it (capped at `max_delay`).
///
/// The first retry comes soon (25 ms, ±50 %): the common transient failure is a SQLite-backed
/// Prefect answering 503 while its own services hold the write lock for a few milliseconds,
/// and waiting a quarter of a second for that was the whole of the latency tail. The delay
/// doubles, so a Prefect that is really down is still given seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 8: 25 ms doubling to 3.2 s, ~6.4 s in all).
    pub max_retries: u32,
    /// Delay before the first retry (default 25 ms); doubles each time.
    pub base_delay: Duration,
    /// Longest single delay (default 30 s).
    pub max_delay: Duration,
    /// Random spread, as a fraction of the delay (default 0.5 = ±50 %, so clients that failed
    /// together do not retry together).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 8,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(30),
            jitter: 0.5,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (0-based), given the server's `Retry-After`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_delay);
        let spread = (fastrand::f64() * 2.0 - 1.0) * self.jitter.clamp(0.0, 1.0);
        exp.mul_f64(1.0 + spread).min(self.max_delay)
    }
}

/// Statuses worth retrying: the server is busy, overloaded or behind a struggling proxy.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 502 | 503 | 504)
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy::default();
        for retry in 0..4 {
            let nominal = p.base_delay * 2u32.pow(retry);
            let d = p.delay(retry, None);
            assert!(
                d >= nominal.mul_f64(0.5) && d <= nominal.mul_f64(1.5),
                "{retry}: {d:?}"
            );
        }
        assert!(p.delay(40, None) <= p.max_delay);
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(p.delay(0, Some(Duration::from_secs(700))), p.max_delay);
    }

    #[test]
    fn parses_retry_after() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(55) && d <= Duration::from_secs(60),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 502, 503, 504] {
            assert!(is_transient(StatusCode::from_u16(s).unwrap()));
        }
        for s in [200, 201, 400, 401, 404, 409, 422, 500] {
            assert!(!is_transient(StatusCode::from_u16(s).unwrap()));
        }
    }
}
