//! The autoscaler: grows the pool as soon as demand exceeds it, shrinks it when the average
//! load stays low, and samples the statistics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::MissedTickBehavior;

use super::pool::spawn_consumer;
use super::{Shared, lock};

pub(super) async fn monitor_load<T: Send + Sync + 'static, R: Send + Sync + 'static>(
    shared: Arc<Shared<T, R>>,
) {
    let mut tick = tokio::time::interval(shared.monitor_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_report = tokio::time::Instant::now();
    loop {
        let sample = tokio::select! {
            _ = shared.root.cancelled() => return,
            _ = tick.tick() => true,
            _ = shared.demand.notified() => false,
        };
        let qsize = shared.qsize();
        let busy = shared.busy.load(Ordering::SeqCst);
        let consumers = shared.effective_consumers();
        let demand = qsize + busy;
        let load = demand as f64 / consumers.max(1) as f64;
        // Statistics are sampled on the tick only, so their window keeps its length in time.
        let avg_load = {
            let mut stats = lock(&shared.stats);
            if sample {
                stats.sample(
                    load,
                    shared.arrived.load(Ordering::SeqCst),
                    shared.departed.load(Ordering::SeqCst),
                );
            }
            stats.avg_load()
        };
        if shared.autoscale {
            let wanted = ((demand as f64) * (1.0 + shared.wip_margin)).ceil() as usize;
            let target = wanted.clamp(shared.min_consumers, shared.max_consumers);
            if load >= 1.0 && target > consumers {
                let mut add = target - consumers;
                // Take back pending retirements before spawning anyone new.
                while add > 0 && shared.try_retire() {
                    add -= 1;
                }
                for _ in 0..add {
                    spawn_consumer(&shared);
                }
            } else if load < 1.0
                && consumers > target
                && avg_load.is_some_and(|avg| avg < REDUCTION_THRESHOLD)
            {
                shared
                    .retire
                    .fetch_add(consumers - target, Ordering::SeqCst);
                shared.retire_notify.notify_waiters();
            } else if shared.retire.load(Ordering::SeqCst) > 0 {
                // Wake idle consumers again in case one missed the first call.
                shared.retire_notify.notify_waiters();
            }
        }
        if let Some(every) = shared.report_interval
            && last_report.elapsed() >= every
        {
            last_report = tokio::time::Instant::now();
            let m = shared.metrics();
            tracing::info!(
                queue = %shared.name, qsize = m.qsize, busy = m.busy, consumers = m.consumers,
                load = m.load, avg_load = m.avg_load, service_time = m.service_time,
                wait_time = m.wait_time, arrival_rate = m.arrival_rate,
                departure_rate = m.departure_rate, event_count = m.event_count,
                "collector queue metrics"
            );
        }
    }
}

/// Average load under which the pool shrinks.
const REDUCTION_THRESHOLD: f64 = 0.5;
