//! Events per second through a collector queue with a trivial processor, for 1 and many
//! consumers, and for the three queue orders. Run: `cargo bench -p switchyard-core`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard_core::engine::{
    BoxError, Collector, CollectorQueue, Context, Payload, QueueType, ShutdownMode,
};

const EVENTS: u64 = 10_000;

fn trivial() -> Collector<u64, u64> {
    Collector::new("noop", |p: Arc<Payload<u64>>, _: Context| async move {
        Ok::<_, BoxError>(*p.value() + 1)
    })
}

async fn pump(consumers: usize, queue_type: QueueType) {
    let queue = CollectorQueue::builder(vec![trivial()])
        .min_consumers(consumers)
        .max_consumers(consumers)
        .autoscale(false)
        .queue_type(queue_type)
        .capacity(1024)
        .build()
        .expect("valid queue");
    queue.start().await.expect("start");
    let publisher = queue.get_publisher();
    for i in 0..EVENTS {
        publisher.send(Payload::new(i)).await.expect("open");
    }
    publisher.wait().await;
    queue
        .shutdown(ShutdownMode::Drain {
            timeout: Duration::from_secs(5),
        })
        .await;
}

/// Baseline: the least an awaitable-result queue must do — a bounded channel to one task and
/// a oneshot reply per event.
async fn bare_channel() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, tokio::sync::oneshot::Sender<u64>)>(1024);
    let worker = tokio::spawn(async move {
        while let Some((v, reply)) = rx.recv().await {
            let _ = reply.send(v + 1);
        }
    });
    let mut replies = Vec::with_capacity(EVENTS as usize);
    for i in 0..EVENTS {
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        tx.send((i, rtx)).await.expect("open");
        replies.push(rrx);
    }
    drop(tx);
    for r in replies {
        r.await.expect("reply");
    }
    worker.await.expect("worker");
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("collector_queue");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(20);
    group.bench_function("baseline_mpsc_oneshot/1", |b| {
        b.to_async(&rt).iter(bare_channel)
    });
    for consumers in [1usize, 4, 16, 64] {
        group.bench_with_input(BenchmarkId::new("fifo", consumers), &consumers, |b, &n| {
            b.to_async(&rt).iter(|| pump(n, QueueType::Fifo));
        });
    }
    for (name, kind) in [("lifo", QueueType::Lifo), ("priority", QueueType::Priority)] {
        group.bench_with_input(BenchmarkId::new(name, 4), &4usize, |b, &n| {
            b.to_async(&rt).iter(|| pump(n, kind));
        });
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
