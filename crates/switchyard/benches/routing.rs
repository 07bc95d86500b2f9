//! Matching cost against the number of rules: events/s through the engine with 1, 100 and
//! 10,000 routes on the same source, none of which can match the events (no dispatch, no
//! journal). Triggers on exact event names and routes whose `when` tests only `event.name` are
//! delivered by `<source>#<name>` topic, so rules for other names are never consulted; a `when`
//! on the payload must be evaluated by every rule (1, 100 and 1,000 rules: at 10,000 one
//! iteration takes minutes). Run: `cargo bench -p switchyard --bench routing`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard::pipeline::Inbound;
use switchyard::routes::Route;
use switchyard::template;
use switchyard::topic::keys_of;
use switchyard_core::Event;
use switchyard_core::engine::{
    BoxError, Collector, CollectorQueue, Context, Payload, ShutdownMode,
};

const EVENTS: u64 = 2_000;

#[derive(Clone, Copy)]
enum Rule {
    Trigger,
    WhenName,
    WhenPayload,
}

fn routes(n: usize, rule: Rule) -> Vec<Arc<Route>> {
    let mut yaml = String::from("sources: [{type: webhook, name: bus}]\nroutes:\n");
    for i in 0..n {
        let filter = match rule {
            Rule::Trigger => {
                format!("trigger: {{type: event, expect: [order.e{i}], threshold: 2, within: 60}}")
            }
            Rule::WhenName => format!("when: \"event.name == 'order.e{i}'\""),
            Rule::WhenPayload => format!("when: \"event.payload.n == {}\"", i + 2),
        };
        yaml.push_str(&format!(
            "  - {{name: r{i}, {filter}, action: {{type: run_deployment, deployment: f/d}}}}\n"
        ));
    }
    switchyard::routes::load_str(Path::new("bench.yaml"), &yaml, |_| None)
        .expect("config")
        .routes
}

/// A collector that does what a route does before any I/O: evaluate its `when`.
fn collector(route: Arc<Route>) -> Collector<Inbound, bool> {
    let topics = route.topics();
    Collector::new(
        route.name.clone(),
        move |p: Arc<Payload<Inbound>>, _: Context| {
            let route = Arc::clone(&route);
            async move {
                let ctx = template::context(&p.value().event);
                let applies = match &route.when {
                    Some(w) => w.eval(&ctx).unwrap_or(false),
                    None => true,
                };
                Ok::<_, BoxError>(applies)
            }
        },
    )
    .with_topics(topics)
}

async fn pump(queue: &CollectorQueue<Inbound, bool>, event: &Arc<Event>) {
    let publisher = queue.get_publisher();
    for _ in 0..EVENTS {
        let inbound = Inbound {
            event: Arc::clone(event),
            settled: Vec::new(),
        };
        let topics = keys_of(event);
        publisher
            .send(Payload::to_topics(inbound, topics))
            .await
            .expect("open");
    }
    publisher.wait().await;
}

fn matching(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let event =
        Arc::new(Event::builder("bus", "order.unrelated", serde_json::json!({"n": 1})).build());
    let mut group = c.benchmark_group("rules_that_cannot_match");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let big = [1usize, 100, 10_000];
    for (label, rule, sizes) in [
        ("trigger_on_exact_names", Rule::Trigger, &big[..]),
        ("when_on_event_name", Rule::WhenName, &big[..]),
        ("when_on_payload", Rule::WhenPayload, &[1, 100, 1_000][..]),
    ] {
        for &n in sizes {
            let queue = rt.block_on(async {
                let collectors = routes(n, rule).into_iter().map(collector).collect();
                let q = CollectorQueue::builder(collectors)
                    .min_consumers(4)
                    .max_consumers(4)
                    .autoscale(false)
                    .capacity(1024)
                    .build()
                    .expect("queue");
                q.start().await.expect("start");
                q
            });
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.to_async(&rt).iter(|| pump(&queue, &event));
            });
            rt.block_on(queue.shutdown(ShutdownMode::Drain {
                timeout: Duration::from_secs(5),
            }));
        }
    }
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
