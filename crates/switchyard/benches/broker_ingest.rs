//! MQTT and AMQP ingest: events/s through Switchyard with a no-op route (`when: false`: each
//! event is journaled, decided, settled and acknowledged, nothing is called) against a bare
//! client of the same broker receiving and acknowledging the same number of messages, in the
//! same run.
//! MQTT is timed from the first publish until the last message is acknowledged (bare) or
//! settled (Switchyard), with the router subscribed first; AMQP from the consumer's (or the
//! router's) start over a queue filled beforehand.
//! Run: `cargo bench -p switchyard --bench broker_ingest` (`SWITCHYARD_MQTT_EVENTS`, default
//! 900; `SWITCHYARD_AMQP_EVENTS`, default 5000). Needs the machine's Mosquitto
//! (127.0.0.1:1883) and RabbitMQ (127.0.0.1:5672).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Router;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use switchyard_testkit::{TempDir, unique};

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Seconds from `start` until `n` events are settled.
fn wait_settled(journal: &Path, n: usize, start: Instant) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(600);
    while common::settled_events(journal) < n {
        assert!(
            Instant::now() < deadline,
            "not all events settled in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed().as_secs_f64()
}

fn router(dir: &Path, source: &str) -> Router {
    let config = format!(
        "engine: {{queue_capacity: 4096, max_consumers: 8}}\nsources:\n  - {source}\nroutes:\n  - name: noop\n    when: \"false\"\n    action: {{type: run_deployment, deployment: \"none/none\"}}\n"
    );
    Router::start(
        dir,
        "http://127.0.0.1:9/api",
        "ingest.yaml",
        &config,
        &["--log-level", "info"],
    )
}

async fn mqtt_client(id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", 1883);
    opts.set_manual_acks(true);
    opts.set_clean_session(true);
    opts.set_inflight(1000);
    AsyncClient::new(opts, 1000)
}

/// Publishes `n` QoS 1 messages to `topic` as fast as the broker takes them.
async fn mqtt_publish(topic: String, n: usize) {
    let (client, mut events) = mqtt_client(&unique("pub")).await;
    let publisher = tokio::spawn(async move {
        for i in 0..n {
            let body = format!("{{\"n\": {i}}}");
            client
                .publish(&topic, QoS::AtLeastOnce, false, body)
                .await
                .expect("publish");
        }
        client
    });
    let mut acked = 0;
    while acked < n {
        if let Ok(MqttEvent::Incoming(Packet::PubAck(_))) = events.poll().await {
            acked += 1;
        }
    }
    drop(publisher.await);
}

fn mqtt(rt: &tokio::runtime::Runtime, n: usize) -> (f64, f64) {
    // Baseline: a bare subscriber acknowledging each message, timed from its first.
    let topic = unique("bench/bare");
    let bare = rt.block_on(async {
        let (client, mut events) = mqtt_client(&unique("bare")).await;
        client
            .subscribe(&topic, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        loop {
            if let Ok(MqttEvent::Incoming(Packet::SubAck(_))) = events.poll().await {
                break;
            }
        }
        let start = Instant::now();
        let publishing = tokio::spawn(mqtt_publish(topic.clone(), n));
        let mut got = 0;
        while got < n {
            if let Ok(MqttEvent::Incoming(Packet::Publish(p))) = events.poll().await {
                client.ack(&p).await.expect("ack");
                got += 1;
            }
        }
        let took = start.elapsed().as_secs_f64();
        drop(publishing.await);
        took
    });
    let topic = unique("bench/sy");
    let dir = TempDir::new("mqtt-ingest");
    let r = router(
        dir.path(),
        &format!(
            "{{type: mqtt, name: bus, url: \"mqtt://127.0.0.1:1883\", topics: [\"{topic}\"], client_id: {}}}",
            unique("sy")
        ),
    );
    r.wait_for_log(&[("message", "subscribed")]);
    let start = Instant::now();
    rt.block_on(mqtt_publish(topic.clone(), n));
    let through = wait_settled(&dir.path().join("journal.db"), n, start);
    r.stop(libc::SIGTERM);
    (bare, through)
}

async fn amqp_fill(queue: &str, n: usize) {
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), durable, FieldTable::default())
        .await
        .expect("declare");
    for i in 0..n {
        let body = format!("{{\"n\": {i}}}");
        let props = lapin::BasicProperties::default().with_message_id(format!("m-{i}").into());
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .expect("publish");
    }
    ch.wait_for_confirms().await.ok();
    let _ = conn.close(200, "done".into()).await;
}

fn amqp(rt: &tokio::runtime::Runtime, n: usize) -> (f64, f64) {
    // Baseline: a bare consumer (prefetch 64, as the source's default) acking each message.
    let queue = unique("bench-bare");
    let bare = rt.block_on(async {
        amqp_fill(&queue, n).await;
        let start = Instant::now();
        let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
            .await
            .expect("amqp");
        let ch = conn.create_channel().await.expect("channel");
        ch.basic_qos(64, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "bare".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        for _ in 0..n {
            let d = consumer.next().await.expect("delivery").expect("ok");
            d.acker.ack(BasicAckOptions::default()).await.expect("ack");
        }
        let took = start.elapsed().as_secs_f64();
        let _ = conn.close(200, "done".into()).await;
        took
    });
    let queue = unique("bench-sy");
    rt.block_on(amqp_fill(&queue, n));
    let dir = TempDir::new("amqp-ingest");
    let start = Instant::now();
    let r = router(
        dir.path(),
        &format!("{{type: amqp, name: bus, url: \"{AMQP_URL}\", queue: \"{queue}\"}}"),
    );
    let through = wait_settled(&dir.path().join("journal.db"), n, start);
    r.stop(libc::SIGTERM);
    (bare, through)
}

fn events(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("broker_ingest: bench");
        return;
    }
    // Mosquitto keeps at most 1,000 QoS 1 messages queued per client by default and drops
    // the rest: a live subscription that falls behind loses messages past that, whoever reads.
    let mqtt_n = events("SWITCHYARD_MQTT_EVENTS", 900);
    let amqp_n = events("SWITCHYARD_AMQP_EVENTS", 5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for (name, n, (bare, through)) in [
        ("mqtt", mqtt_n, mqtt(&rt, mqtt_n)),
        ("amqp", amqp_n, amqp(&rt, amqp_n)),
    ] {
        let (b, s) = (n as f64 / bare, n as f64 / through);
        println!(
            "{name}: {n} events  bare client {b:>9.0}/s  switchyard {s:>9.0}/s  ratio {:.2}",
            s / b
        );
    }
}
