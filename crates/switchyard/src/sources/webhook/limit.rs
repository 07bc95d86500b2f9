//! A hook's rate limit: a token bucket (`rate_limit: {per_second, burst}`).
//!
//! Written here rather than taken from a crate: it is a dozen lines, and the one decision that
//! matters — how long until the next token, for `Retry-After` — is easiest to see this way.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::RateLimit;

/// Refills at `per_second`, holds at most `burst` tokens.
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket. The limit's numbers are checked by `check` (see `SourceSpec`).
    pub fn new(limit: RateLimit) -> Self {
        let per_second = limit.per_second.max(f64::MIN_POSITIVE);
        let burst = limit
            .burst
            .map(f64::from)
            .unwrap_or(per_second.ceil())
            .max(1.0);
        Self {
            per_second,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_take(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.per_second).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - s.0) / self.per_second;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_sustained_rate() {
        let b = TokenBucket::new(RateLimit {
            per_second: 2.0,
            burst: Some(3),
        });
        for _ in 0..3 {
            assert!(b.try_take().is_ok());
        }
        let wait = b.try_take().unwrap_err();
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::ZERO,
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.try_take().is_ok());
        assert!(b.try_take().is_err());
    }
}
