//! Behaviour of the collector queue: routing, results, errors and panics, backpressure,
//! shutdown, lifecycles, autoscaling. Time is tokio's paused clock where it matters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use proptest::prelude::*;
use switchyard_core::engine::*;
use tokio::sync::Semaphore;

type Log = Arc<Mutex<Vec<String>>>;

fn recorder(key: &str, topics: &[&str], log: &Log) -> Collector<u32, String> {
    let log = Arc::clone(log);
    let k = key.to_string();
    Collector::new(key, move |p: Arc<Payload<u32>>, _ctx: Context| {
        let log = Arc::clone(&log);
        let k = k.clone();
        async move {
            log.lock().unwrap().push(format!("{k}:{}", p.value()));
            Ok::<_, BoxError>(format!("{k} saw {}", p.value()))
        }
    })
    .with_topics(topics.iter().copied())
}

/// Polls `cond` (yielding to the runtime) until it holds; panics after `deadline` of tokio
/// time, so a broken engine fails the test instead of hanging it.
async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn results_per_collector_and_empty_deliveries() {
    let log: Log = Arc::default();
    let queue = CollectorQueue::builder(vec![
        recorder("a", &["t1"], &log),
        recorder("b", &["t1", "t2"], &log),
    ])
    .build()
    .unwrap();
    queue
        .run(|publisher| async move {
            let ev = publisher.send(Payload::new(1)).await.unwrap();
            let results = ev.wait().await;
            assert_eq!(results.len(), 2);
            assert_eq!(results.first().unwrap(), "a saw 1");
            assert_eq!(results.get("b").unwrap().as_ref().unwrap(), "b saw 1");
            assert!(ev.service_time().is_some() && ev.wait_time().is_some());

            let ev = publisher.send(Payload::to_keys(2, ["b"])).await.unwrap();
            let keys: Vec<_> = ev
                .wait()
                .await
                .iter()
                .map(|r| r.collector.to_string())
                .collect();
            assert_eq!(keys, ["b"]);

            for unmatched in [
                Payload::to_keys(3, ["nobody"]),
                Payload::to_topics(3, ["nothing"]),
            ] {
                let ev = publisher.send(unmatched).await.unwrap();
                let results = ev.wait().await;
                assert!(results.is_empty() && results.all_ok());
                assert!(matches!(results.first(), Err(ProcessError::Empty)));
            }
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn errors_and_panics_become_results_and_the_queue_keeps_going() {
    let c = Collector::new("flaky", |p: Arc<Payload<u32>>, _: Context| async move {
        match *p.value() {
            0 => Err("zero is not allowed".into()),
            1 => panic!("boom on one"),
            n => Ok::<u32, BoxError>(n * 10),
        }
    });
    let queue = CollectorQueue::builder(vec![c])
        .max_consumers(1)
        .build()
        .unwrap();
    queue
        .run(|publisher| async move {
            let e0 = publisher.send(Payload::new(0)).await.unwrap();
            let e1 = publisher.send(Payload::new(1)).await.unwrap();
            let e2 = publisher.send(Payload::new(2)).await.unwrap();
            let err = e0.wait().await.first().unwrap_err();
            assert!(matches!(err, ProcessError::Failed(_)));
            assert_eq!(err.to_string(), "zero is not allowed");
            let err = e1.wait().await.first().unwrap_err();
            assert_eq!(err.to_string(), "processor panicked: boom on one");
            assert_eq!(*e2.wait().await.first().unwrap(), 20);
        })
        .await
        .unwrap();
}

fn gated(gate: &Arc<Semaphore>, seen: &Log) -> Collector<u32, u32> {
    let gate = Arc::clone(gate);
    let seen = Arc::clone(seen);
    Collector::new("gated", move |p: Arc<Payload<u32>>, _: Context| {
        let gate = Arc::clone(&gate);
        let seen = Arc::clone(&seen);
        async move {
            gate.acquire().await?.forget();
            seen.lock().unwrap().push(p.value().to_string());
            Ok::<_, BoxError>(*p.value())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_makes_send_wait_and_try_send_fail() {
    let gate = Arc::new(Semaphore::new(0));
    let seen: Log = Arc::default();
    let queue = CollectorQueue::builder(vec![gated(&gate, &seen)])
        .capacity(2)
        .max_consumers(1)
        .build()
        .unwrap();
    queue.start().await.unwrap();
    let publisher = queue.get_publisher();
    publisher.send(Payload::new(1)).await.unwrap();
    eventually(Duration::from_secs(5), || queue.metrics().busy == 1).await;
    publisher.send(Payload::new(2)).await.unwrap();
    publisher.send(Payload::new(3)).await.unwrap();
    let full = publisher.try_send(Payload::new(4)).unwrap_err();
    assert!(matches!(full, TrySendError::Full(_)));
    assert_eq!(*full.into_payload().value(), 4);

    let p2 = publisher.clone();
    let blocked = tokio::spawn(async move { p2.send(Payload::new(4)).await.map(|e| e.id()) });
    tokio::task::yield_now().await;
    assert!(
        !blocked.is_finished(),
        "send must wait while the queue is full"
    );
    gate.add_permits(10);
    blocked.await.unwrap().unwrap();
    publisher.wait().await;
    assert_eq!(*seen.lock().unwrap(), ["1", "2", "3", "4"]);
    let report = queue
        .shutdown(ShutdownMode::Drain {
            timeout: Duration::from_secs(1),
        })
        .await;
    assert_eq!(
        report,
        ShutdownReport {
            finished: 4,
            dropped: 0,
            timed_out: false
        }
    );
    assert!(matches!(
        publisher.send(Payload::new(5)).await,
        Err(SendError(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn abort_and_drain_timeout_complete_every_waiter_as_dropped() {
    let gate = Arc::new(Semaphore::new(0));
    let seen: Log = Arc::default();
    let queue = CollectorQueue::builder(vec![gated(&gate, &seen)])
        .max_consumers(1)
        .build()
        .unwrap();
    queue.start().await.unwrap();
    let publisher = queue.get_publisher();
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(publisher.send(Payload::new(i)).await.unwrap());
    }
    eventually(Duration::from_secs(5), || queue.metrics().busy == 1).await;
    let report = queue
        .shutdown(ShutdownMode::Drain {
            timeout: Duration::from_millis(200),
        })
        .await;
    assert!(report.timed_out);
    assert_eq!(report.dropped, 3, "one in flight and two queued");
    for ev in &events {
        assert!(matches!(
            ev.wait().await.first(),
            Err(ProcessError::Dropped(_))
        ));
    }
    assert!(seen.lock().unwrap().is_empty());

    let queue = CollectorQueue::builder(vec![gated(&gate, &seen)])
        .build()
        .unwrap();
    queue.start().await.unwrap();
    let ev = queue.get_publisher().send(Payload::new(9)).await.unwrap();
    let report = queue.shutdown(ShutdownMode::Abort).await;
    assert_eq!(report.dropped, 1);
    assert!(ev.is_done());
}

struct Recorded {
    name: &'static str,
    log: Log,
    fail: bool,
}

impl Lifecycle for Recorded {
    fn setup<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap()
                .push(format!("setup {}", self.name));
            if self.fail {
                return Err("cannot connect".into());
            }
            ctx.insert(format!("resource of {}", self.name));
            Ok(())
        })
    }
    fn teardown<'a>(&'a self, _ctx: &'a Context) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap()
                .push(format!("teardown {}", self.name))
        })
    }
}

fn with_lifecycle(name: &'static str, log: &Log, fail: bool) -> Collector<u32, String> {
    Collector::new(name, |_: Arc<Payload<u32>>, ctx: Context| async move {
        ctx.get::<String>()
            .map(|s| s.to_string())
            .ok_or_else(|| BoxError::from("no resource"))
    })
    .with_lifecycle(Recorded {
        name,
        log: Arc::clone(log),
        fail,
    })
}

#[tokio::test]
async fn lifecycles_wrap_the_queue_life_in_order() {
    let log: Log = Arc::default();
    let queue = CollectorQueue::builder(vec![
        with_lifecycle("a", &log, false),
        with_lifecycle("b", &log, false),
    ])
    .build()
    .unwrap();
    let seen = queue
        .run(|p| async move {
            p.send(Payload::to_keys(0, ["b"]))
                .await
                .unwrap()
                .wait()
                .await
                .first()
                .unwrap()
                .clone()
        })
        .await
        .unwrap();
    assert_eq!(seen, "resource of b");
    assert_eq!(
        *log.lock().unwrap(),
        ["setup a", "setup b", "teardown b", "teardown a"]
    );

    let log: Log = Arc::default();
    let queue = CollectorQueue::builder(vec![
        with_lifecycle("a", &log, false),
        with_lifecycle("b", &log, true),
        with_lifecycle("c", &log, false),
    ])
    .build()
    .unwrap();
    let err = queue.start().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "setup of collector \"b\" failed: cannot connect"
    );
    assert_eq!(*log.lock().unwrap(), ["setup a", "setup b", "teardown a"]);
}

#[test]
fn invalid_configurations_are_rejected() {
    let noop = || {
        Collector::new("x", |_: Arc<Payload<()>>, _: Context| async {
            Ok::<_, BoxError>(())
        })
    };
    let err = |b: CollectorQueueBuilder<(), ()>| b.build().err().map(|e| e.to_string());
    assert_eq!(
        err(CollectorQueue::builder(vec![noop(), noop()])),
        Some("two collectors share the key \"x\"".into())
    );
    assert!(
        err(CollectorQueue::builder(vec![noop()])
            .min_consumers(3)
            .max_consumers(2))
        .unwrap()
        .contains("min_consumers (3)")
    );
    assert!(err(CollectorQueue::builder(vec![noop()]).min_consumers(0)).is_some());
    assert!(err(CollectorQueue::builder(vec![noop()]).capacity(0)).is_some());
    let empty = Collector::new("", |_: Arc<Payload<()>>, _: Context| async {
        Ok::<_, BoxError>(())
    });
    assert_eq!(
        err(CollectorQueue::builder(vec![empty])),
        Some("a collector has an empty key".into())
    );
}

#[tokio::test(start_paused = true)]
async fn the_pool_grows_under_load_and_shrinks_when_idle() {
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (a, pk) = (Arc::clone(&active), Arc::clone(&peak));
    let slow = Collector::new("slow", move |_: Arc<Payload<u32>>, _: Context| {
        let (a, pk) = (Arc::clone(&a), Arc::clone(&pk));
        async move {
            let now = a.fetch_add(1, Ordering::SeqCst) + 1;
            pk.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            a.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, BoxError>(())
        }
    });
    let queue = CollectorQueue::builder(vec![slow])
        .min_consumers(2)
        .max_consumers(6)
        .capacity(100)
        .build()
        .unwrap();
    queue.start().await.unwrap();
    assert_eq!(queue.consumer_count(), 2);
    let publisher = queue.get_publisher();
    for i in 0..60 {
        publisher.send(Payload::new(i)).await.unwrap();
    }
    eventually(Duration::from_secs(5), || queue.consumer_count() == 6).await;
    publisher.wait().await;
    assert_eq!(
        peak.load(Ordering::SeqCst),
        6,
        "concurrency reaches the maximum and never passes it"
    );
    eventually(Duration::from_secs(10), || queue.consumer_count() == 2).await;
    let m = queue.metrics();
    assert_eq!((m.qsize, m.busy, m.event_count, m.arrived), (0, 0, 60, 60));
    queue.shutdown(ShutdownMode::Abort).await;
}

#[tokio::test(start_paused = true)]
async fn the_pool_grows_on_arrival_without_waiting_for_the_monitor_tick() {
    let gate = Arc::new(Semaphore::new(0));
    let seen: Log = Arc::default();
    let queue = CollectorQueue::builder(vec![gated(&gate, &seen)])
        .min_consumers(1)
        .max_consumers(4)
        .capacity(100)
        .monitor_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    queue.start().await.unwrap();
    // The first tick fires at once; after it, the next is an hour away.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let publisher = queue.get_publisher();
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(publisher.send(Payload::new(i)).await.unwrap());
    }
    eventually(Duration::from_secs(1), || queue.consumer_count() == 4).await;
    assert_eq!(
        queue.consumer_count(),
        4,
        "grown to the maximum, never past it"
    );
    gate.add_permits(10);
    for e in events {
        e.wait().await;
    }
    queue.shutdown(ShutdownMode::Abort).await;
}

#[tokio::test(start_paused = true)]
async fn metrics_report_rates() {
    let c = Collector::new("tick", |_: Arc<Payload<u32>>, _: Context| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, BoxError>(())
    });
    let queue = CollectorQueue::builder(vec![c])
        .max_consumers(1)
        .build()
        .unwrap();
    queue.start().await.unwrap();
    let publisher = queue.get_publisher();
    for i in 0..200 {
        publisher.send(Payload::new(i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = queue.metrics();
    assert!((40.0..60.0).contains(&m.arrival_rate), "{m:?}");
    assert!((40.0..60.0).contains(&m.departure_rate), "{m:?}");
    assert!((0.009..0.012).contains(&m.service_time), "{m:?}");
    queue.shutdown(ShutdownMode::Abort).await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

#[derive(Debug, Clone)]
enum Target {
    All,
    Keys(Vec<usize>),
    Topics(Vec<usize>),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::All),
        prop::collection::vec(0usize..6, 0..4).prop_map(Target::Keys),
        prop::collection::vec(0usize..4, 0..4).prop_map(Target::Topics),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every event reaches exactly the collectors its delivery names, exactly once.
    #[test]
    fn delivery_reaches_exactly_the_named_collectors(
        subs in prop::collection::vec(prop::collection::btree_set(0usize..4, 0..3), 1..6),
        targets in prop::collection::vec(target(), 1..40),
        consumers in 1usize..5,
    ) {
        let log: Log = Arc::default();
        let collectors: Vec<_> = subs.iter().enumerate().map(|(i, topics)| {
            let names: Vec<String> = topics.iter().map(|t| format!("t{t}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            recorder(&format!("c{i}"), &refs, &log)
        }).collect();
        let queue = CollectorQueue::builder(collectors).max_consumers(consumers).build().unwrap();
        let n = subs.len();
        runtime().block_on(async {
            queue.start().await.unwrap();
            let publisher = queue.get_publisher();
            let mut expected: BTreeMap<String, usize> = BTreeMap::new();
            for (id, t) in targets.iter().enumerate() {
                let (payload, reached): (_, Vec<usize>) = match t {
                    Target::All => (Payload::new(id as u32), (0..n).collect()),
                    Target::Keys(ks) => (
                        Payload::to_keys(id as u32, ks.iter().map(|k| format!("c{k}"))),
                        (0..n).filter(|c| ks.contains(c)).collect(),
                    ),
                    Target::Topics(ts) => (
                        Payload::to_topics(id as u32, ts.iter().map(|t| format!("t{t}"))),
                        (0..n).filter(|c| ts.iter().any(|t| subs[*c].contains(t))).collect(),
                    ),
                };
                for c in reached {
                    *expected.entry(format!("c{c}:{id}")).or_default() += 1;
                }
                publisher.send(payload).await.unwrap();
            }
            publisher.wait().await;
            queue.shutdown(ShutdownMode::Abort).await;
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for entry in log.lock().unwrap().iter() {
                *seen.entry(entry.clone()).or_default() += 1;
            }
            prop_assert_eq!(seen, expected);
            Ok(())
        })?;
    }

    /// With one consumer, a priority queue serves lowest priority first, FIFO among equals.
    #[test]
    fn priority_order_holds_for_a_single_consumer(prios in prop::collection::vec(prop::option::of(0i64..5), 1..50)) {
        let gate = Arc::new(Semaphore::new(0));
        let seen: Log = Arc::default();
        let queue = CollectorQueue::builder(vec![gated(&gate, &seen)])
            .queue_type(QueueType::Priority)
            .default_priority(2)
            .max_consumers(1)
            .capacity(100)
            .build()
            .unwrap();
        runtime().block_on(async {
            let publisher = queue.get_publisher();
            // Queued before the consumer starts, so the whole set is ordered.
            for (i, p) in prios.iter().enumerate() {
                let payload = Payload::new(i as u32);
                let payload = match p { Some(p) => payload.with_priority(*p), None => payload };
                publisher.send(payload).await.unwrap();
            }
            queue.start().await.unwrap();
            gate.add_permits(prios.len());
            publisher.wait().await;
            queue.shutdown(ShutdownMode::Abort).await;
        });
        let mut want: Vec<(i64, usize)> = prios.iter().enumerate().map(|(i, p)| (p.unwrap_or(2), i)).collect();
        want.sort();
        let want: Vec<String> = want.into_iter().map(|(_, i)| i.to_string()).collect();
        prop_assert_eq!(&*seen.lock().unwrap(), &want);
    }

    /// Under any burst pattern the pool stays within [min, max], and so does concurrency.
    #[test]
    fn the_pool_stays_within_bounds(
        min in 1usize..4,
        extra in 0usize..5,
        bursts in prop::collection::vec((1usize..30, 0u64..300), 1..6),
        work_ms in 1u64..50,
    ) {
        let max = min + extra;
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (a, pk) = (Arc::clone(&active), Arc::clone(&peak));
        let c = Collector::new("w", move |_: Arc<Payload<u32>>, _: Context| {
            let (a, pk) = (Arc::clone(&a), Arc::clone(&pk));
            async move {
                pk.fetch_max(a.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(work_ms)).await;
                a.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(())
            }
        });
        let queue = CollectorQueue::builder(vec![c])
            .min_consumers(min)
            .max_consumers(max)
            .scale_down_window(Duration::from_millis(100))
            .build()
            .unwrap();
        runtime().block_on(async {
            queue.start().await.unwrap();
            let publisher = queue.get_publisher();
            for (n, pause) in &bursts {
                for i in 0..*n {
                    publisher.send(Payload::new(i as u32)).await.unwrap();
                    let c = queue.consumer_count();
                    prop_assert!((min..=max).contains(&c), "consumers {c} outside {min}..={max}");
                }
                for _ in 0..*pause / 10 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let c = queue.consumer_count();
                    prop_assert!((min..=max).contains(&c), "consumers {c} outside {min}..={max}");
                }
            }
            publisher.wait().await;
            queue.shutdown(ShutdownMode::Abort).await;
            Ok(())
        })?;
        prop_assert!(peak.load(Ordering::SeqCst) <= max);
    }
}

#[tokio::test]
async fn reserved_places_count_against_capacity_and_come_back_when_unused() {
    let gate = Arc::new(Semaphore::new(0));
    let seen: Log = Arc::default();
    let queue = CollectorQueue::builder(vec![gated(&gate, &seen)])
        .capacity(2)
        .build()
        .unwrap();
    let publisher = queue.get_publisher();
    let first = publisher.try_reserve().unwrap();
    let second = publisher.reserve().await.unwrap();
    assert!(matches!(
        publisher.try_reserve(),
        Err(TrySendError::Full(_))
    ));
    drop(second);
    let again = publisher.try_reserve().unwrap();
    let ev = first.send(Payload::new(7));
    again.send(Payload::new(8));
    assert!(matches!(
        publisher.try_send(Payload::new(9)),
        Err(TrySendError::Full(_))
    ));
    queue.start().await.unwrap();
    gate.add_permits(2);
    assert_eq!(*ev.wait().await.first().unwrap(), 7);
    publisher.wait().await;
    queue.shutdown(ShutdownMode::Abort).await;
    assert!(publisher.try_reserve().is_err());
}
