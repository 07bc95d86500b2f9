//! Keeping Prefect healthy: an adaptive in-flight limit and a pacing rate limiter.

use std::pin::pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// An additive-increase / multiplicative-decrease limit on calls in flight.
///
/// It starts at `min`. Each success answered about as fast as an unloaded call (within 25 % of
/// the fastest recent answer) adds `1/limit`, so about one more call per round trip of such
/// successes. On a CPU-bound server a second call in flight only doubles latency, so the limit
/// stays where latency says concurrency still pays. Each overload signal (503, 429, 502, 504,
/// 408, timeout, connection failure) halves it, at most once per `cooldown` so a burst from one
/// overload counts once, and remembers it: growth is capped below the level that overloaded
/// until `probe_after` passes with no overload, then the cap rises one call at a time. (A
/// SQLite-backed Prefect answers 503 to a second concurrent writer: measured, holding one call
/// in flight gives nearly twice the runs per second of probing for two.) It never leaves
/// `[min, max]`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use switchyard_prefect::AdaptiveLimit;
/// let limit = AdaptiveLimit::new(1, 8);
/// let permit = limit.acquire().await;
/// permit.succeeded(std::time::Duration::from_millis(40));
/// assert!(limit.limit() >= 1.0);
/// # }
/// ```
pub struct AdaptiveLimit {
    state: Mutex<State>,
    freed: Notify,
    min: f64,
    max: f64,
    cooldown: Duration,
    probe_after: Duration,
}

struct State {
    limit: f64,
    /// Growth stops here; lowered by overloads, raised after quiet periods.
    cap: f64,
    in_flight: usize,
    fastest: Option<Duration>,
    last_decrease: Option<Instant>,
    /// Last overload or cap raise.
    last_event: Option<Instant>,
}

/// A call slot; report how the call went with [`succeeded`](Self::succeeded) or
/// [`overloaded`](Self::overloaded), or drop it to report nothing.
pub struct LimitPermit<'a> {
    owner: &'a AdaptiveLimit,
}

impl AdaptiveLimit {
    /// A limit between `min` and `max` calls (both at least 1), starting at `min`.
    pub fn new(min: usize, max: usize) -> Self {
        let min = min.max(1) as f64;
        let max = (max as f64).max(min);
        Self {
            state: Mutex::new(State {
                limit: min,
                cap: max,
                in_flight: 0,
                fastest: None,
                last_decrease: None,
                last_event: None,
            }),
            freed: Notify::new(),
            min,
            max,
            cooldown: Duration::from_millis(500),
            probe_after: Duration::from_secs(10),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current limit.
    pub fn limit(&self) -> f64 {
        self.lock().limit
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits for a slot.
    pub async fn acquire(&self) -> LimitPermit<'_> {
        loop {
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            {
                let mut s = self.lock();
                if (s.in_flight as f64) < s.limit.floor() {
                    s.in_flight += 1;
                    return LimitPermit { owner: self };
                }
            }
            freed.await;
        }
    }
}

impl LimitPermit<'_> {
    /// The call succeeded after `latency`.
    pub fn succeeded(self, latency: Duration) {
        let owner = self.owner;
        let mut s = owner.lock();
        let fastest = s.fastest.map_or(latency, |f| f.min(latency));
        // Let the reference drift up slowly (about 10 % per 100 answers) so one lucky answer
        // does not pin it forever.
        s.fastest = Some(fastest + fastest / 1000);
        let now = Instant::now();
        if s.cap < owner.max
            && s.last_event
                .is_none_or(|t| now.duration_since(t) >= owner.probe_after)
        {
            s.cap = (s.cap + 1.0).min(owner.max);
            s.last_event = Some(now);
        }
        if latency <= fastest + fastest / 4 {
            s.limit = (s.limit + 1.0 / s.limit).min(s.cap);
        }
    }

    /// The server signalled overload.
    pub fn overloaded(self) {
        let owner = self.owner;
        let mut s = owner.lock();
        let now = Instant::now();
        s.last_event = Some(now);
        if s.last_decrease
            .is_none_or(|t| now.duration_since(t) >= owner.cooldown)
        {
            s.cap = (s.limit.floor() - 1.0).max(owner.min);
            s.limit = (s.limit / 2.0).max(owner.min).min(s.cap);
            s.last_decrease = Some(now);
            tracing::info!(limit = s.limit, "Prefect overloaded; fewer calls in flight");
        }
    }
}

impl Drop for LimitPermit<'_> {
    fn drop(&mut self) {
        self.owner.lock().in_flight -= 1;
        self.owner.freed.notify_waiters();
    }
}

/// Paces calls to at most `per_second`, evenly spaced (no bursts).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `None` unless `per_second` is positive, finite and its interval fits a [`Duration`]
    /// (a rate of `1e-300` would not).
    pub fn per_second(per_second: f64) -> Option<Self> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        let interval = Duration::try_from_secs_f64(1.0 / per_second).ok()?;
        Some(Self {
            interval,
            next: Mutex::new(None),
        })
    }

    /// Waits for the next slot.
    pub async fn ready(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn grows_on_fast_success_and_halves_on_overload() {
        let l = AdaptiveLimit::new(1, 4);
        let fast = Duration::from_millis(50);
        for _ in 0..20 {
            l.acquire().await.succeeded(fast);
        }
        assert_eq!(l.limit(), 4.0, "capped at max");
        l.acquire().await.overloaded();
        assert_eq!(l.limit(), 2.0);
        l.acquire().await.overloaded();
        assert_eq!(
            l.limit(),
            2.0,
            "a second signal within the cooldown counts once"
        );
        for _ in 0..10 {
            l.acquire().await.succeeded(fast);
        }
        assert_eq!(
            l.limit(),
            3.0,
            "growth stays below the level that overloaded"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        l.acquire().await.overloaded();
        assert_eq!(l.limit(), 1.5);
        tokio::time::advance(Duration::from_secs(1)).await;
        l.acquire().await.overloaded();
        assert_eq!(l.limit(), 1.0, "never below min");
        for _ in 0..3 {
            l.acquire().await.succeeded(Duration::from_millis(500));
        }
        assert_eq!(l.limit(), 1.0, "slow answers do not grow it");
        for _ in 0..10 {
            l.acquire().await.succeeded(fast);
        }
        assert_eq!(
            l.limit(),
            1.0,
            "after an overload at one call, growth waits for quiet"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..10 {
            l.acquire().await.succeeded(fast);
        }
        assert_eq!(l.limit(), 2.0, "then probes one more call");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_a_free_slot() {
        let l = std::sync::Arc::new(AdaptiveLimit::new(1, 1));
        let first = l.acquire().await;
        let l2 = std::sync::Arc::clone(&l);
        let waiter = tokio::spawn(async move {
            let _p = l2.acquire().await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(l.in_flight(), 1);
        drop(first);
        waiter.await.unwrap();
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn paces_evenly() {
        let r = RateLimiter::per_second(10.0).unwrap();
        let start = Instant::now();
        for _ in 0..11 {
            r.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert!(RateLimiter::per_second(0.0).is_none());
    }
}
