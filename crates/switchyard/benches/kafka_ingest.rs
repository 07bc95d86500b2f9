//! Kafka ingest: events/s through Switchyard with a no-op route (`when: false`: every event is
//! journaled, decided and settled, nothing is called) against a bare rdkafka consumer loop
//! reading the same topic in the same run that also decodes each message as JSON and stores
//! its offset. Then the same traffic on a `journal: routed` source, which no route wants (a
//! constant `when`, and a payload test evaluated on the template threads): acknowledged
//! without a journal write. Also reports Switchyard's peak RSS.
//! Run: `cargo bench -p switchyard --bench kafka_ingest` (`SWITCHYARD_KAFKA_EVENTS`, default
//! 20000; `SWITCHYARD_KAFKA_SLOW_SECONDS` for the slow-action phase, default 20;
//! `SWITCHYARD_KAFKA_ONLY=journaled` runs the bare loop and the journaled case alone, for
//! profiling; `SWITCHYARD_KAFKA_IN_FLIGHT` sets the journaled case's `engine.accepts_in_flight`).
//! Needs `scripts/kafka-env.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Router;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use switchyard_testkit::{TempDir, unique};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("kafka_ingest: bench");
        return;
    }
    let n: usize = std::env::var("SWITCHYARD_KAFKA_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (_broker, port) = switchyard_testkit::start_tansu();
    let bootstrap = format!("127.0.0.1:{port}");
    let topic = unique("ingest");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    rt.block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let body = r#"{"id": 1, "amount": 12.5, "customer": "acme"}"#;
        let sends: Vec<_> = (0..n)
            .map(|i| {
                let key = format!("k{i}");
                let p = producer.clone();
                let t = topic.clone();
                async move {
                    p.send(
                        FutureRecord::to(&t).key(&key).payload(body),
                        Duration::from_secs(30),
                    )
                    .await
                    .is_ok()
                }
            })
            .collect();
        let ok = futures::future::join_all(sends)
            .await
            .into_iter()
            .filter(|x| *x)
            .count();
        assert_eq!(ok, n, "produced");
    });

    // Baseline: a bare consumer loop over the same topic, timed from its first message (the
    // group join is not throughput).
    let bare = rt.block_on(async {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", unique("bare"))
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("enable.auto.offset.store", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic.as_str()]).expect("subscribe");
        std::hint::black_box(consumer.recv().await.expect("message"));
        let start = Instant::now();
        for _ in 1..n {
            use rdkafka::message::Message as _;
            let m = consumer.recv().await.expect("message");
            let v: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("json");
            std::hint::black_box(v);
            consumer
                .store_offset_from_message(&m)
                .expect("store offset");
        }
        start.elapsed().as_secs_f64()
    });

    // Switchyard: same topic, a route that never applies.
    let dir = TempDir::new("kafka-ingest");
    let in_flight = std::env::var("SWITCHYARD_KAFKA_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map(|n| format!(", accepts_in_flight: {n}"))
        .unwrap_or_default();
    let config = format!(
        "engine: {{queue_capacity: 4096, max_consumers: 8{in_flight}}}\nsources:\n  - {{type: kafka, name: bus, brokers: \"{bootstrap}\", topics: [{topic}], session_timeout: 6s}}\nroutes:\n  - name: noop\n    when: \"false\"\n    action: {{type: run_deployment, deployment: \"none/none\"}}\n"
    );
    let router = Router::start(
        dir.path(),
        "http://127.0.0.1:9/api",
        "ingest.yaml",
        &config,
        &["--log-level", "warn"],
    );
    let journal = dir.path().join("journal.db");
    let through = timed(n, || common::settled_events(&journal));
    let peak = peak_rss(router.process.pid());
    let _ = router.stop(libc::SIGTERM);
    if std::env::var("SWITCHYARD_KAFKA_ONLY").as_deref() == Ok("journaled") {
        println!(
            "kafka ingest: {n} events; bare loop {:.0}/s; journaled {:.0}/s ({:.3}); peak RSS {peak}",
            n as f64 / bare,
            n as f64 / through,
            bare / through
        );
        return;
    }

    // `journal: routed`: the same topic in a group of its own, no route wants the events.
    let routed = |label: &str, when: &str| -> (String, f64, String) {
        let dir = TempDir::new("kafka-routed");
        let admin = switchyard_testkit::free_port();
        let group = unique("routed");
        let config = format!(
            "admin: {{listen: \"127.0.0.1:{admin}\"}}\nengine: {{queue_capacity: 4096, max_consumers: 8}}\nsources:\n  - {{type: kafka, name: bus, brokers: \"{bootstrap}\", topics: [{topic}], group: {group}, session_timeout: 6s, journal: routed}}\nroutes:\n  - name: noop\n    when: '{when}'\n    action: {{type: run_deployment, deployment: \"none/none\"}}\n"
        );
        let router = Router::start(
            dir.path(),
            "http://127.0.0.1:9/api",
            "routed.yaml",
            &config,
            &["--log-level", "warn"],
        );
        let metrics = format!("http://127.0.0.1:{admin}/metrics");
        let unrouted = || -> usize {
            let text = rt
                .block_on(async { reqwest::get(&metrics).await.ok()?.text().await.ok() })
                .unwrap_or_default();
            text.lines()
                .find(|l| l.starts_with("switchyard_events_unrouted_total{source=\"bus\"}"))
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0, |v| v as usize)
        };
        let secs = timed(n, unrouted);
        let peak = peak_rss(router.process.pid());
        let journaled = common::settled_events(&dir.path().join("journal.db"));
        assert_eq!(
            journaled, 0,
            "journal: routed journaled {journaled} unwanted events"
        );
        let _ = router.stop(libc::SIGTERM);
        (label.to_string(), secs, peak)
    };
    let routed_cases = [
        routed("journal: routed, `when: false`", "false"),
        routed(
            "journal: routed, `when` on the payload",
            "event.payload.amount > 1000",
        ),
    ];

    // Slow action: the same backlog, a route that starts a real flow run for every event on a
    // SQLite Prefect (tens of runs per second). The engine queue fills, the source stops
    // reading, and memory must stay flat however large the backlog.
    let api = &switchyard_testkit::PrefectServer::shared().api_url;
    common::deploy(
        api,
        "slow",
        "slow",
        serde_json::json!({"type": "object", "properties": {}}),
    );
    let slow_dir = TempDir::new("kafka-slow");
    // A group of its own: the first router's group has already committed the whole topic.
    let slow_group = unique("slow");
    let slow_config = format!(
        "engine: {{queue_capacity: 4096, max_consumers: 8}}\nsources:\n  - {{type: kafka, name: bus, brokers: \"{bootstrap}\", topics: [{topic}], group: {slow_group}, session_timeout: 6s}}\nroutes:\n  - name: slow\n    action: {{type: run_deployment, deployment: \"slow/slow\"}}\n"
    );
    let slow = Router::start(
        slow_dir.path(),
        api,
        "slow.yaml",
        &slow_config,
        &["--log-level", "warn"],
    );
    let rss = |pid: u32, field: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0)
    };
    let slow_journal = slow_dir.path().join("journal.db");
    let accepted = || -> usize {
        rusqlite::Connection::open(&slow_journal)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0)))
            .map(|v| v as usize)
            .unwrap_or(0)
    };
    let watch = Instant::now();
    let mut samples = Vec::new();
    let slow_for = Duration::from_secs(
        std::env::var("SWITCHYARD_KAFKA_SLOW_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    while watch.elapsed() < slow_for {
        std::thread::sleep(Duration::from_millis(500));
        samples.push((accepted(), rss(slow.process.pid(), "VmRSS")));
    }
    let slow_peak = rss(slow.process.pid(), "VmHWM");
    let _ = slow.stop(libc::SIGKILL);

    println!(
        "kafka ingest: {n} events, 1 partition, tansu (memory); steady state, group join excluded\n"
    );
    println!(
        "{:<44} {:>8} {:>10} {:>8}",
        "case", "seconds", "events/s", "ratio"
    );
    println!(
        "{:<44} {:>8.2} {:>10.0} {:>8.2}",
        "bare rdkafka consumer loop",
        bare,
        n as f64 / bare,
        1.0
    );
    println!(
        "{:<44} {:>8.2} {:>10.0} {:>8.2}",
        "switchyard (journaled, no-op route)",
        through,
        n as f64 / through,
        bare / through
    );
    for (label, secs, _) in &routed_cases {
        println!(
            "{:<44} {:>8.2} {:>10.0} {:>8.2}",
            label,
            secs,
            n as f64 / secs,
            bare / secs
        );
    }
    println!(
        "\nswitchyard peak RSS: {peak} (journaled); {}",
        routed_cases
            .iter()
            .map(|(l, _, p)| format!("{p} ({l})"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "\nslow action (a real flow run per event), {n} events waiting, queue_capacity 4096, {} s:",
        slow_for.as_secs()
    );
    // Five samples, evenly spaced.
    let every = (samples.len() / 5).max(1);
    for (i, (events, kb)) in samples
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == every - 1)
    {
        println!(
            "  t={:>4.1}s accepted {events:>6} events, RSS {:>6.1} MB",
            (i + 1) as f64 * 0.5,
            *kb as f64 / 1024.0
        );
    }
    println!("  peak RSS {:.1} MB", slow_peak as f64 / 1024.0);
}

/// Seconds from the first counted event to the `n`th, polling `count` (the group join before
/// the first event is not throughput, as for the baseline).
fn timed(n: usize, count: impl Fn() -> usize) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(600);
    while count() == 0 {
        assert!(Instant::now() < deadline, "no event in 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    while count() < n {
        assert!(Instant::now() < deadline, "not every event in 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed().as_secs_f64()
}

/// A process's peak RSS, as /proc says it (`52032 kB`).
fn peak_rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        .unwrap_or_else(|| "?".into())
}
