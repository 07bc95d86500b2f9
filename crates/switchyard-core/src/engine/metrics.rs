use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

/// A snapshot of a queue's state and recent throughput.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// When the snapshot was taken.
    pub timestamp: DateTime<Utc>,
    /// Events waiting in the queue.
    pub qsize: usize,
    /// Consumers processing an event right now.
    pub busy: usize,
    /// Consumers in the pool (not counting ones asked to retire).
    pub consumers: usize,
    /// `(qsize + busy) / consumers`: above 1 the pool is short of consumers.
    pub load: f64,
    /// `load` averaged over the scale-down window.
    pub avg_load: f64,
    /// Moving average of processing time, in seconds.
    pub service_time: f64,
    /// Moving average of send-to-finish time, in seconds.
    pub wait_time: f64,
    /// Events sent per second over the rate window.
    pub arrival_rate: f64,
    /// Events finished per second over the rate window.
    pub departure_rate: f64,
    /// Events sent since the queue was built.
    pub arrived: u64,
    /// Events finished (processed or dropped) since the queue was built.
    pub event_count: u64,
    /// Events dropped at shutdown.
    pub dropped: u64,
}

/// Rolling statistics kept by the monitor and the consumers.
pub(crate) struct Stats {
    window: usize,
    loads: VecDeque<f64>,
    counts: VecDeque<(Instant, u64, u64)>,
    service: Option<f64>,
    wait: Option<f64>,
}

const EWMA_ALPHA: f64 = 0.1;

fn ewma(old: Option<f64>, sample: f64) -> Option<f64> {
    Some(match old {
        None => sample,
        Some(v) => v + EWMA_ALPHA * (sample - v),
    })
}

impl Stats {
    pub(crate) fn new(window: usize) -> Self {
        Self {
            window: window.max(2),
            loads: VecDeque::new(),
            counts: VecDeque::new(),
            service: None,
            wait: None,
        }
    }

    pub(crate) fn record_event(&mut self, service: Duration, wait: Duration) {
        self.service = ewma(self.service, service.as_secs_f64());
        self.wait = ewma(self.wait, wait.as_secs_f64());
    }

    pub(crate) fn sample(&mut self, load: f64, arrived: u64, departed: u64) {
        if self.loads.len() == self.window {
            self.loads.pop_front();
        }
        self.loads.push_back(load);
        if self.counts.len() == self.window {
            self.counts.pop_front();
        }
        self.counts.push_back((Instant::now(), arrived, departed));
    }

    /// Average load over the window; `None` until the window is full, so a queue that just
    /// started is never shrunk on too little evidence.
    pub(crate) fn avg_load(&self) -> Option<f64> {
        (self.loads.len() == self.window)
            .then(|| self.loads.iter().sum::<f64>() / self.loads.len() as f64)
    }

    fn rates(&self) -> (f64, f64) {
        match (self.counts.front(), self.counts.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                let dt = (b.0 - a.0).as_secs_f64();
                ((b.1 - a.1) as f64 / dt, (b.2 - a.2) as f64 / dt)
            }
            _ => (0.0, 0.0),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn snapshot(
        &self,
        qsize: usize,
        busy: usize,
        consumers: usize,
        arrived: u64,
        departed: u64,
        dropped: u64,
    ) -> Metrics {
        let (arrival_rate, departure_rate) = self.rates();
        let load = (qsize + busy) as f64 / consumers.max(1) as f64;
        Metrics {
            timestamp: Utc::now(),
            qsize,
            busy,
            consumers,
            load,
            avg_load: if self.loads.is_empty() {
                load
            } else {
                self.loads.iter().sum::<f64>() / self.loads.len() as f64
            },
            service_time: self.service.unwrap_or(0.0),
            wait_time: self.wait.unwrap_or(0.0),
            arrival_rate,
            departure_rate,
            arrived,
            event_count: departed,
            dropped,
        }
    }
}
