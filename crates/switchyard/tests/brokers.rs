//! The contract every acknowledging broker source passes against its real broker:
//! N events → N runs; the router killed -9 mid-stream and restarted → nothing lost, nothing
//! run twice; a malformed message → dead-lettered with its reason and acknowledged (never
//! redelivered forever); the broker restarted mid-stream → the source reconnects, nothing
//! lost. Redis and NATS run as private instances (persistent, restartable); RabbitMQ is the
//! machine's own server with a queue per test.
#![cfg(all(
    feature = "redis-streams",
    feature = "nats",
    feature = "amqp",
    feature = "mqtt",
    feature = "zeromq"
))]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{DEADLINE, Router, count_runs, deploy, rt, runs_of, switchyard};
use serde_json::{Value, json};
use switchyard_testkit::{ChildGuard, PrefectServer, TempDir, free_port, unique, wait_until};
use uuid::Uuid;

trait Broker {
    /// The `sources:` entry for this broker, named `name`.
    fn source(&self, name: &str) -> String;
    /// Publishes one message: event number `n` (a key or message id where the protocol has
    /// one) or `None` for a raw body.
    fn send(&mut self, n: Option<i64>, body: &str);
    /// Publishes `{"n": n}`.
    fn publish(&mut self, n: i64) {
        self.send(Some(n), &json!({"n": n}).to_string());
    }
    /// Publishes a body that is not JSON.
    fn publish_raw(&mut self, body: &str) {
        self.send(None, body);
    }
    /// Messages not yet acknowledged by the router's consumer (after it stopped).
    fn unacknowledged(&mut self) -> usize;
    /// Restarts the broker, keeping its data, if this test controls it.
    fn restart(&mut self) -> bool;
    /// A log message to wait for before the first publish (a broker that keeps messages only
    /// for existing subscriptions).
    fn ready_log(&self) -> Option<&'static str> {
        None
    }
}

fn run_contract(broker: &mut dyn Broker) {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("Broker");
    let dep = deploy(
        api,
        &flow,
        "counted",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
    );
    let dir = TempDir::new("brokers");
    let config = format!(
        "sources:\n  - {}\nroutes:\n  - name: count\n    action: {{type: run_deployment, deployment: \"{flow}/counted\", parameters: {{n: \"{{{{ event.payload.n }}}}\"}}}}\n",
        broker.source("bus")
    );
    let total = 40;
    let mut router = Router::start(dir.path(), api, "broker.yaml", &config, &[]);
    if let Some(message) = broker.ready_log() {
        router.wait_for_log(&[("message", message)]);
    }
    for n in 0..15 {
        broker.publish(n);
    }
    broker.publish_raw("this is { not json");
    wait_until("some runs before the kill", DEADLINE, || {
        (count_runs(api, dep) >= 5).then_some(())
    });
    router.kill9();
    for n in 15..25 {
        broker.publish(n);
    }
    router = Router::start(dir.path(), api, "broker.yaml", &config, &[]);
    router.wait_for_log(&[("message", "event received")]);
    // The broker goes away mid-stream and comes back with its data: the source reconnects
    // (the NATS client does it transparently; the Redis source starts a new session).
    broker.restart();
    for n in 25..total {
        broker.publish(n);
    }
    let runs = common::wait_for_runs(api, dep, total as usize);
    let mut per_n: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &runs {
        *per_n
            .entry(r.parameters["n"].as_i64().unwrap_or(-1))
            .or_default() += 1;
    }
    assert_eq!(per_n.len(), total as usize, "every event ran: {per_n:?}");
    assert!(
        per_n.values().all(|c| *c == 1),
        "no event ran twice: {per_n:?}"
    );
    // The malformed message is a dead letter with its reason...
    let journal = dir.path().join("journal.db");
    let env = [("SWITCHYARD_JOURNAL", journal.to_str().unwrap_or_default())];
    let letters: Vec<Value> = wait_until("the decode dead letter", DEADLINE, || {
        let (_, out, _) = switchyard(&["dlq", "list", "--json"], &env);
        serde_json::from_str::<Vec<Value>>(&out)
            .ok()
            .filter(|l| !l.is_empty())
    });
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["route"], "decode");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("not valid JSON"),
        "{letters:?}"
    );
    // ...and nothing stays unacknowledged once the router has settled everything.
    wait_until("every message acknowledged", DEADLINE, || {
        let (_, out, _) = switchyard(&["events", "list", "--status", "pending", "--json"], &env);
        (out.trim() == "[]").then_some(())
    });
    // Redeliveries of what the killed router had received are recognised as settled and
    // acknowledged: the broker ends with nothing outstanding.
    wait_until(
        "the broker to have nothing unacknowledged",
        DEADLINE,
        || (broker.unacknowledged() == 0).then_some(()),
    );
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
    assert_eq!(broker.unacknowledged(), 0, "messages left unacknowledged");
    assert_eq!(runs_of(api, dep).len(), total as usize);
}

fn spawn(cmd: &mut Command) -> ChildGuard {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    ChildGuard::spawn(cmd).unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

fn wait_port(port: u16) {
    wait_until(&format!("port {port}"), DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

struct Redis {
    port: u16,
    dir: TempDir,
    server: Option<ChildGuard>,
    stream: String,
    conn: redis::Connection,
}

impl Redis {
    fn start_server(port: u16, dir: &Path) -> ChildGuard {
        let g = spawn(Command::new("redis-server").args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            dir.to_str().unwrap_or("."),
        ]));
        wait_port(port);
        g
    }

    fn new() -> Self {
        let port = free_port();
        let dir = TempDir::new("redis");
        let server = Some(Self::start_server(port, dir.path()));
        let conn = Self::connect(port);
        Self {
            port,
            dir,
            server,
            stream: unique("events"),
            conn,
        }
    }

    fn connect(port: u16) -> redis::Connection {
        wait_until("redis", DEADLINE, || {
            redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .ok()?
                .get_connection()
                .ok()
        })
    }
}

impl Broker for Redis {
    fn source(&self, name: &str) -> String {
        format!(
            "{{type: redis_streams, name: {name}, url: \"redis://127.0.0.1:{}\", stream: {}}}",
            self.port, self.stream
        )
    }
    fn send(&mut self, _: Option<i64>, body: &str) {
        let _: String = redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("payload")
            .arg(body)
            .query(&mut self.conn)
            .unwrap();
    }
    fn unacknowledged(&mut self) -> usize {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg("switchyard")
            .query(&mut self.conn)
            .unwrap();
        match reply {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n as usize,
                _ => 0,
            },
            _ => 0,
        }
    }
    fn restart(&mut self) -> bool {
        if let Some(mut s) = self.server.take() {
            s.signal(libc::SIGTERM);
            s.wait_exit(Duration::from_secs(20));
        }
        self.server = Some(Self::start_server(self.port, self.dir.path()));
        self.conn = Self::connect(self.port);
        true
    }
}

struct Nats {
    port: u16,
    dir: TempDir,
    server: Option<ChildGuard>,
    stream: String,
    rt: tokio::runtime::Runtime,
    js: Option<async_nats::jetstream::Context>,
}

impl Nats {
    fn start_server(port: u16, dir: &Path) -> ChildGuard {
        let bin = if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let g = spawn(Command::new(bin).args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-js",
            "-sd",
            dir.to_str().unwrap_or("."),
        ]));
        wait_port(port);
        g
    }

    fn new() -> Self {
        let port = free_port();
        let dir = TempDir::new("nats");
        let server = Some(Self::start_server(port, dir.path()));
        let mut me = Self {
            port,
            dir,
            server,
            stream: unique("EVENTS").replace('-', "_"),
            rt: rt(),
            js: None,
        };
        me.connect();
        me.rt.block_on(async {
            let js = me.js.as_ref().unwrap();
            js.get_or_create_stream(async_nats::jetstream::stream::Config {
                name: me.stream.clone(),
                subjects: vec![format!("{}.>", me.stream)],
                ..Default::default()
            })
            .await
            .unwrap();
        });
        me
    }

    fn connect(&mut self) {
        let url = format!("nats://127.0.0.1:{}", self.port);
        let js = self.rt.block_on(async {
            async_nats::jetstream::new(async_nats::connect(url).await.unwrap())
        });
        self.js = Some(js);
    }

    fn publish_body(&mut self, body: String) {
        let subject = format!("{}.orders", self.stream);
        let js = self.js.as_ref().unwrap();
        self.rt.block_on(async {
            js.publish(subject, body.into())
                .await
                .unwrap()
                .await
                .unwrap()
        });
    }
}

impl Broker for Nats {
    fn source(&self, name: &str) -> String {
        format!(
            "{{type: nats, name: {name}, url: \"nats://127.0.0.1:{}\", stream: {}, ack_wait: 2s}}",
            self.port, self.stream
        )
    }
    fn send(&mut self, _: Option<i64>, body: &str) {
        self.publish_body(body.to_string());
    }
    fn unacknowledged(&mut self) -> usize {
        let js = self.js.as_ref().unwrap();
        let stream = self.stream.clone();
        self.rt.block_on(async {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                .get_stream(&stream)
                .await
                .unwrap()
                .get_consumer("switchyard-bus")
                .await
                .unwrap();
            let info = consumer.info().await.unwrap();
            info.num_ack_pending + info.num_pending as usize
        })
    }
    fn restart(&mut self) -> bool {
        if let Some(mut s) = self.server.take() {
            s.signal(libc::SIGTERM);
            s.wait_exit(Duration::from_secs(20));
        }
        self.server = Some(Self::start_server(self.port, self.dir.path()));
        self.connect();
        true
    }
}

struct Amqp {
    queue: String,
    rt: tokio::runtime::Runtime,
    channel: lapin::Channel,
    next_id: usize,
}

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl Amqp {
    fn new() -> Self {
        let rt = rt();
        let queue = unique("switchyard-test");
        let channel = rt.block_on(async {
            let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
                .await
                .unwrap();
            let ch = conn.create_channel().await.unwrap();
            ch.confirm_select(Default::default()).await.unwrap();
            let options = lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            ch.queue_declare(queue.as_str().into(), options, Default::default())
                .await
                .unwrap();
            std::mem::forget(conn); // keep the connection for the channel's life
            ch
        });
        Self {
            queue,
            rt,
            channel,
            next_id: 0,
        }
    }

    fn publish_body(&mut self, body: String) {
        self.next_id += 1;
        let props = lapin::BasicProperties::default()
            .with_message_id(format!("m{}", self.next_id).as_str().into())
            .with_delivery_mode(2);
        let (ch, q) = (&self.channel, self.queue.as_str());
        self.rt.block_on(async {
            ch.basic_publish(
                "".into(),
                q.into(),
                Default::default(),
                body.as_bytes(),
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap()
        });
    }
}

impl Broker for Amqp {
    fn source(&self, name: &str) -> String {
        format!(
            "{{type: amqp, name: {name}, url: \"{AMQP_URL}\", queue: {}}}",
            self.queue
        )
    }
    fn send(&mut self, _: Option<i64>, body: &str) {
        self.publish_body(body.to_string());
    }
    fn unacknowledged(&mut self) -> usize {
        let (ch, q) = (&self.channel, self.queue.as_str());
        self.rt.block_on(async {
            let options = lapin::options::QueueDeclareOptions {
                passive: true,
                durable: true,
                ..Default::default()
            };
            ch.queue_declare(q.into(), options, Default::default())
                .await
                .unwrap()
                .message_count() as usize
        })
    }
    fn restart(&mut self) -> bool {
        false // the machine's shared RabbitMQ is not restarted by tests
    }
}

/// The machine's Mosquitto; messages published with `mosquitto_pub` at QoS 1.
struct Mqtt {
    base: String,
}

impl Mqtt {
    fn publish_body(&self, body: &str) {
        let status = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                "1883",
                "-q",
                "1",
                "-t",
                &format!("{}/orders", self.base),
                "-m",
                body,
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Broker for Mqtt {
    fn source(&self, name: &str) -> String {
        format!(
            "{{type: mqtt, name: {name}, url: \"mqtt://127.0.0.1:1883\", topics: [\"{}/+\"], client_id: {}, id_field: /n}}",
            self.base, self.base
        )
    }
    fn send(&mut self, _: Option<i64>, body: &str) {
        self.publish_body(body);
    }
    fn unacknowledged(&mut self) -> usize {
        0 // not observable from outside the broker; the run counts above are the check
    }
    fn ready_log(&self) -> Option<&'static str> {
        Some("subscribed")
    }
    fn restart(&mut self) -> bool {
        false // the machine's shared Mosquitto is not restarted by tests
    }
}

/// `journal: routed`: only the messages a route wants are journaled; the rest are
/// acknowledged without a journal write. Killed -9 mid-stream and restarted, every wanted
/// message still runs exactly once, the journal holds the wanted ones only, and the broker
/// ends with nothing unacknowledged.
fn run_routed(broker: &mut dyn Broker) {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("Routed");
    let dep = deploy(
        api,
        &flow,
        "wanted",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
    );
    let dir = TempDir::new("routed");
    let source = broker.source("bus");
    let source = format!(
        "{}, journal: routed}}",
        source.strip_suffix('}').unwrap_or(&source)
    );
    let admin = free_port();
    let config = format!(
        "admin: {{listen: \"127.0.0.1:{admin}\"}}\nsources:\n  - {source}\nroutes:\n  - name: wanted\n    when: event.payload.n % 4 == 0\n    action: {{type: run_deployment, deployment: \"{flow}/wanted\", parameters: {{n: \"{{{{ event.payload.n }}}}\"}}}}\n"
    );
    let total = 80;
    let wanted = (0..total).filter(|n| n % 4 == 0).count();
    let mut router = Router::start(dir.path(), api, "routed.yaml", &config, &[]);
    if let Some(message) = broker.ready_log() {
        router.wait_for_log(&[("message", message)]);
    }
    for n in 0..40 {
        broker.publish(n);
    }
    wait_until("some runs before the kill", DEADLINE, || {
        (count_runs(api, dep) >= 3).then_some(())
    });
    router.kill9();
    for n in 40..total {
        broker.publish(n);
    }
    router = Router::start(dir.path(), api, "routed.yaml", &config, &[]);
    let runs = common::wait_for_runs(api, dep, wanted);
    let mut per_n: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &runs {
        *per_n
            .entry(r.parameters["n"].as_i64().unwrap_or(-1))
            .or_default() += 1;
    }
    let want: Vec<i64> = (0..total).filter(|n| n % 4 == 0).collect();
    assert_eq!(per_n.keys().copied().collect::<Vec<_>>(), want, "{per_n:?}");
    assert!(
        per_n.values().all(|c| *c == 1),
        "no event ran twice: {per_n:?}"
    );
    // The unwanted ones were counted, not journaled.
    let metrics = format!("http://127.0.0.1:{admin}/metrics");
    wait_until("the unrouted count", DEADLINE, || {
        let text = rt().block_on(async { reqwest::get(&metrics).await.ok()?.text().await.ok() })?;
        let line = text
            .lines()
            .find(|l| l.starts_with("switchyard_events_unrouted_total{source=\"bus\"}"))?
            .to_string();
        (line.split(' ').nth(1)?.parse::<f64>().ok()? > 0.0).then_some(())
    });
    let journal = dir.path().join("journal.db");
    let env = [("SWITCHYARD_JOURNAL", journal.to_str().unwrap_or_default())];
    wait_until("nothing pending", DEADLINE, || {
        let (_, out, _) = switchyard(&["events", "list", "--status", "pending", "--json"], &env);
        (out.trim() == "[]").then_some(())
    });
    let (_, out, _) = switchyard(&["events", "list", "--limit", "1000", "--json"], &env);
    let events: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(events.len(), wanted, "only the wanted events are journaled");
    wait_until(
        "the broker to have nothing unacknowledged",
        DEADLINE,
        || (broker.unacknowledged() == 0).then_some(()),
    );
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
    assert_eq!(runs_of(api, dep).len(), wanted);
}

#[test]
fn kafka_journal_routed_keeps_its_guarantees_for_wanted_events() {
    run_routed(&mut Kafka::new(3));
}

#[test]
fn redis_streams_journal_routed_acknowledges_unwanted_entries_unjournaled() {
    run_routed(&mut Redis::new());
}

/// A private tansu broker (Kafka protocol, memory storage) from `scripts/kafka-env.sh`.
struct Kafka {
    port: u16,
    _server: ChildGuard,
    topic: String,
    rt: tokio::runtime::Runtime,
    producer: rdkafka::producer::FutureProducer,
    session: &'static str,
}

impl Kafka {
    fn new(partitions: i32) -> Self {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::config::ClientConfig;
        let (server, port) = switchyard_testkit::start_tansu();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let topic = unique("events");
        let bootstrap = format!("127.0.0.1:{port}");
        let producer = rt.block_on(async {
            let admin: AdminClient<_> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap();
            let new = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1));
            admin
                .create_topics(&[new], &AdminOptions::new())
                .await
                .unwrap();
            ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap()
        });
        Self {
            port,
            _server: server,
            topic,
            rt,
            producer,
            session: "6s",
        }
    }

    fn publish_body(&mut self, key: String, body: String) {
        use rdkafka::producer::FutureRecord;
        let (p, topic) = (&self.producer, self.topic.clone());
        self.rt.block_on(async move {
            p.send(
                FutureRecord::to(&topic).key(&key).payload(&body),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        });
    }
}

impl Broker for Kafka {
    fn source(&self, name: &str) -> String {
        format!(
            "{{type: kafka, name: {name}, brokers: \"127.0.0.1:{}\", topics: [{}], session_timeout: {}, options: {{heartbeat.interval.ms: \"1000\"}}}}",
            self.port, self.topic, self.session
        )
    }
    fn send(&mut self, n: Option<i64>, body: &str) {
        let key = n.map_or_else(|| "raw".to_string(), |n| format!("k{n}"));
        self.publish_body(key, body.to_string());
    }
    fn unacknowledged(&mut self) -> usize {
        0 // committed offsets are checked by the restart: nothing re-runs and nothing is missing
    }
    fn restart(&mut self) -> bool {
        false // tansu's memory storage does not survive a restart
    }
    fn ready_log(&self) -> Option<&'static str> {
        None
    }
}

#[test]
fn kafka_contract() {
    run_contract(&mut Kafka::new(3));
}

/// `switchyard_source_lag` has a series per partition the instance consumes, from
/// librdkafka's statistics, and it falls to 0 once everything is read and committed.
#[test]
fn kafka_lag_is_exported_per_partition() {
    let api = &PrefectServer::shared().api_url;
    let mut kafka = Kafka::new(2);
    let flow = unique("KafkaLag");
    let dep = deploy(api, &flow, "counted", json!({}));
    let admin = free_port();
    let config = format!(
        "admin: {{listen: \"127.0.0.1:{admin}\"}}\nsources:\n  - {}\nroutes:\n  - name: count\n    action: {{type: run_deployment, deployment: \"{flow}/counted\"}}\n",
        kafka.source("bus")
    );
    let dir = TempDir::new("kafka-lag");
    let router = Router::start(dir.path(), api, "lag.yaml", &config, &[]);
    for n in 0..10 {
        kafka.publish(n);
    }
    common::wait_for_runs(api, dep, 10);
    let url = format!("http://127.0.0.1:{admin}/metrics");
    let topic = kafka.topic.clone();
    wait_until("a lag of 0 on both partitions", DEADLINE, || {
        let text = rt().block_on(async { reqwest::get(&url).await.ok()?.text().await.ok() })?;
        let lag = |p: u8| {
            let series = format!(
                "switchyard_source_lag{{source=\"bus\",topic=\"{topic}\",partition=\"{p}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&series).map(str::trim).map(str::to_string))
        };
        (lag(0).as_deref() == Some("0") && lag(1).as_deref() == Some("0")).then_some(())
    });
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

/// Two instances in one consumer group split the partitions; when one is killed the other
/// takes its partitions over from the committed offsets, and nothing is lost or run twice
/// (each instance has its own journal: the idempotency key is what stops a second run).
#[test]
fn kafka_group_members_split_partitions_and_take_over_from_a_killed_one() {
    let api = &PrefectServer::shared().api_url;
    let mut kafka = Kafka::new(4);
    let flow = unique("KafkaGroup");
    let dep = deploy(
        api,
        &flow,
        "counted",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
    );
    let config = format!(
        "sources:\n  - {}\nroutes:\n  - name: count\n    action: {{type: run_deployment, deployment: \"{flow}/counted\", parameters: {{n: \"{{{{ event.payload.n }}}}\"}}}}\n",
        kafka.source("bus")
    );
    let (dir_a, dir_b) = (TempDir::new("kafka-a"), TempDir::new("kafka-b"));
    let a = Router::start(dir_a.path(), api, "a.yaml", &config, &[]);
    let b = Router::start(dir_b.path(), api, "b.yaml", &config, &[]);
    for n in 0..30 {
        kafka.publish(n);
    }
    wait_until("both members to run events", DEADLINE, || {
        let received = |r: &Router| {
            r.logs()
                .iter()
                .filter(|l| l["message"] == "event received")
                .count()
        };
        (received(&a) > 0 && received(&b) > 0).then_some(())
    });
    a.kill9();
    for n in 30..50 {
        kafka.publish(n);
    }
    let runs = common::wait_for_runs(api, dep, 50);
    let mut per_n: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &runs {
        *per_n
            .entry(r.parameters["n"].as_i64().unwrap_or(-1))
            .or_default() += 1;
    }
    assert_eq!(per_n.len(), 50, "every event ran: {per_n:?}");
    assert!(
        per_n.values().all(|c| *c == 1),
        "no event ran twice: {per_n:?}"
    );
    assert_eq!(b.stop(libc::SIGTERM), Some(0));
}

#[test]
fn mqtt_contract() {
    run_contract(&mut Mqtt {
        base: unique("switchyard-test"),
    });
}

#[test]
fn zeromq_pull_delivers_at_most_once_and_dead_letters_what_does_not_decode() {
    use zeromq::{Socket, SocketSend};
    let api = PrefectServer::shared().api_url.clone();
    let flow = unique("Zmq");
    let dep = deploy(
        &api,
        &flow,
        "counted",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
    );
    let dir = TempDir::new("zmq");
    let port = free_port();
    let config = format!(
        "sources:\n  - {{type: zeromq, name: zmq, endpoint: \"tcp://127.0.0.1:{port}\", socket: pull, bind: true}}\nroutes:\n  - name: count\n    action: {{type: run_deployment, deployment: \"{flow}/counted\", parameters: {{n: \"{{{{ event.payload.n }}}}\"}}}}\n"
    );
    let router = Router::start(dir.path(), &api, "zmq.yaml", &config, &[]);
    router.wait_for_log(&[("message", "ZeroMQ PULL socket ready")]);
    // The socket stays inside a running async context until the runs are seen: a ZeroMQ
    // socket only flushes while its runtime drives it, and dropping it drops what is unsent.
    let api2 = api.clone();
    let runs = rt().block_on(async move {
        let mut push = zeromq::PushSocket::new();
        push.connect(&format!("tcp://127.0.0.1:{port}"))
            .await
            .unwrap();
        for n in 0..10 {
            push.send(json!({"n": n}).to_string().into()).await.unwrap();
        }
        push.send("not json".into()).await.unwrap();
        let runs = tokio::task::spawn_blocking(move || common::wait_for_runs(&api2, dep, 10)).await;
        drop(push);
        runs.unwrap()
    });
    let mut ns: Vec<i64> = runs
        .iter()
        .map(|r| r.parameters["n"].as_i64().unwrap_or(-1))
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..10).collect::<Vec<_>>());
    router.wait_for_log(&[("message", "message does not decode; dead-lettered")]);
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

#[test]
fn redis_streams_contract() {
    run_contract(&mut Redis::new());
}

#[test]
fn nats_jetstream_contract() {
    run_contract(&mut Nats::new());
}

#[test]
fn amqp_contract() {
    run_contract(&mut Amqp::new());
}

#[test]
fn sources_of_types_this_build_lacks_or_bad_urls_are_config_errors() {
    let dir = TempDir::new("brokers-config");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "sources: [{type: redis_streams, name: r, url: \"http://x\", stream: s}]\nroutes: [{name: a, action: {type: run_deployment, deployment: a/b}}]\n").unwrap();
    let (code, _, err) = switchyard(&["check", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("at `sources[0].url`: expected a URL starting with redis://, rediss://"),
        "{err}"
    );
    let _ = Uuid::nil();
}

/// A private Azurite (queue service) keeping its data in a temporary directory, so a restart
/// keeps the queue; messages are sent with the reference SAS (signed by Azure's Python SDK),
/// while the router signs its own from the account key in its connection string.
#[cfg(feature = "azure")]
struct Azure {
    queue: String,
    port: u16,
    dir: TempDir,
    server: Option<ChildGuard>,
    rt: tokio::runtime::Runtime,
    client: azure_storage_queue::QueueClient,
}

#[cfg(feature = "azure")]
const AZURITE_SAS: &str = "se=2099-01-01T00%3A00%3A00Z&sp=rwdlacup&sv=2026-10-06&ss=q&srt=sco&sig=m%2BxUv0Helrey439xh92VXMws0xQjU1TPrTzn0PVWX18%3D";

#[cfg(feature = "azure")]
impl Azure {
    fn start_server(port: u16, dir: &Path) -> ChildGuard {
        let bin =
            switchyard_testkit::workspace_root().join(".azurite/node_modules/.bin/azurite-queue");
        assert!(bin.exists(), "run scripts/azure-env.sh first");
        let server = spawn(
            Command::new(bin)
                .args(["--queueHost", "127.0.0.1", "--queuePort", &port.to_string()])
                .args(["--disableTelemetry", "--skipApiVersionCheck", "--silent"])
                .arg("--location")
                .arg(dir),
        );
        wait_port(port);
        server
    }

    fn new() -> Self {
        let dir = TempDir::new("azurite");
        let port = free_port();
        let server = Some(Self::start_server(port, dir.path()));
        let queue = unique("switchyard-test").to_lowercase().replace('_', "-");
        let url = format!("http://127.0.0.1:{port}/devstoreaccount1/{queue}?{AZURITE_SAS}");
        let client =
            azure_storage_queue::QueueClient::new(url.parse().unwrap(), None, None).unwrap();
        let rt = rt();
        rt.block_on(client.create(None)).unwrap();
        Self {
            queue,
            port,
            dir,
            server,
            rt,
            client,
        }
    }

    fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};QueueEndpoint=http://127.0.0.1:{}/devstoreaccount1;",
            switchyard_testkit::AZURITE_KEY,
            self.port
        )
    }

    fn publish_body(&mut self, body: String) {
        let message = azure_storage_queue::models::QueueMessage {
            message_text: Some(body),
        };
        self.rt
            .block_on(self.client.send_message(message.try_into().unwrap(), None))
            .unwrap();
    }

    /// Receives the next visible message and lets it become visible again after 1 s: a
    /// consumer that died holding it.
    fn receive_and_abandon(&mut self) {
        wait_until("a visible message to receive", DEADLINE, || {
            let options = azure_storage_queue::models::QueueClientReceiveMessagesOptions {
                number_of_messages: Some(1),
                visibility_timeout: Some(1),
                ..Default::default()
            };
            let got = self
                .rt
                .block_on(self.client.receive_messages(Some(options)))
                .ok()?
                .into_model()
                .ok()?
                .items
                .unwrap_or_default();
            (!got.is_empty()).then_some(())
        });
    }
}

#[cfg(feature = "azure")]
impl Broker for Azure {
    fn source(&self, name: &str) -> String {
        format!(
            "{{type: azure_queue, name: {name}, connection_string: \"{}\", queue: {}, visibility_timeout: 2s, max_poll_interval: 500ms}}",
            self.connection_string(),
            self.queue
        )
    }
    fn send(&mut self, _: Option<i64>, body: &str) {
        self.publish_body(body.to_string());
    }
    fn unacknowledged(&mut self) -> usize {
        use azure_storage_queue::models::QueueClientGetPropertiesResultHeaders;
        let props = self.rt.block_on(self.client.get_properties(None)).unwrap();
        props.approximate_messages_count().unwrap().unwrap_or(0) as usize
    }
    fn restart(&mut self) -> bool {
        // Azurite keeps its metadata in memory and saves it on a graceful stop (a SIGKILL
        // would lose the queue itself, which no real Azure outage does).
        if let Some(mut server) = self.server.take() {
            server.signal(libc::SIGTERM);
            server.wait_exit(Duration::from_secs(30));
        }
        self.server = Some(Self::start_server(self.port, self.dir.path()));
        true
    }
}

#[cfg(feature = "azure")]
#[test]
fn azure_queue_contract() {
    run_contract(&mut Azure::new());
}

/// A message some consumer received more often than `max_dequeue_count` without settling it
/// is dead-lettered as poison and deleted, not received forever.
#[cfg(feature = "azure")]
#[test]
fn azure_poison_messages_are_dead_lettered_and_deleted() {
    let api = &PrefectServer::shared().api_url;
    let mut azure = Azure::new();
    azure.publish(7);
    azure.receive_and_abandon();
    azure.receive_and_abandon();
    let dir = TempDir::new("azure-poison");
    let config = format!(
        "sources:\n  - {{type: azure_queue, name: az, connection_string: \"{}\", queue: {}, max_dequeue_count: 2, max_poll_interval: 500ms}}\nroutes:\n  - name: never\n    action: {{type: run_deployment, deployment: \"nowhere/none\"}}\n",
        azure.connection_string(),
        azure.queue
    );
    let router = Router::start(dir.path(), api, "poison.yaml", &config, &[]);
    router.wait_for_log(&[("message", "poison message dead-lettered")]);
    let journal = dir.path().join("journal.db");
    let env = [("SWITCHYARD_JOURNAL", journal.to_str().unwrap_or_default())];
    let (_, out, _) = switchyard(&["dlq", "list", "--json"], &env);
    let letters: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["route"], "poison");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("received 3 times (max_dequeue_count 2)"),
        "{letters:?}"
    );
    wait_until("the poison message deleted", DEADLINE, || {
        (azure.unacknowledged() == 0).then_some(())
    });
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

/// The original router's config form, unchanged: an `AzureStorageQueue` thread with
/// `storage_account` and `queue_name`, credentials from the environment, and the original
/// message form.
#[cfg(feature = "azure")]
#[test]
fn legacy_azure_storage_queue_thread_runs_the_named_deployment() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("LegacyAzure");
    let dep = deploy(
        api,
        &flow,
        "from-queue",
        json!({"type": "object", "properties": {"name": {"type": "string"}}}),
    );
    let mut azure = Azure::new();
    let dir = TempDir::new("azure-legacy");
    let config = format!(
        r#"{{"threads": [{{"publisher_type": "AzureStorageQueue", "storage_account": "devstoreaccount1", "queue_name": "{}", "message_flow_actions": {{}}}}]}}"#,
        azure.queue
    );
    let conn = azure.connection_string();
    let router = Router::start_env(
        dir.path(),
        api,
        "legacy.json",
        &config,
        &[],
        &[("AZURE_STORAGE_CONNECTION_STRING", conn.as_str())],
    );
    azure.publish_body(
        json!({"flow_name": flow, "deployment_name": "from-queue", "payload": {"name": "Gordon"}})
            .to_string(),
    );
    let runs = common::wait_for_runs(api, dep, 1);
    assert_eq!(runs[0].parameters["name"], "Gordon");
    wait_until("the message deleted", DEADLINE, || {
        (azure.unacknowledged() == 0).then_some(())
    });
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}

/// Kafka, 3 partitions, 3 instances in one group sharing a PostgreSQL journal, one killed -9
/// and not restarted: every message is one run, and nothing is left pending.
#[test]
fn kafka_three_instances_on_a_shared_journal_with_one_killed_run_every_message_once() {
    let api = &PrefectServer::shared().api_url;
    let mut kafka = Kafka::new(3);
    let flow = unique("KafkaShared");
    let dep = deploy(
        api,
        &flow,
        "counted",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
    );
    let db = switchyard_testkit::TestDatabase::create("kafka_shared");
    let url = db.url();
    let source = kafka.source("bus");
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new("kafka-shared")).collect();
    let mut routers: Vec<Option<Router>> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let config = format!(
                "journal: {{instance: k{i}, lease: 2s, sweep_interval: 300ms, sweep_after: 1s}}\nsources:\n  - {source}\nroutes:\n  - name: count\n    action: {{type: run_deployment, deployment: \"{flow}/counted\", parameters: {{n: \"{{{{ event.payload.n }}}}\"}}}}\n"
            );
            Some(Router::start_env(
                dir.path(),
                api,
                "k.yaml",
                &config,
                &[],
                &[("SWITCHYARD_JOURNAL", url.as_str())],
            ))
        })
        .collect();
    let received = |r: &Router| {
        r.logs()
            .iter()
            .filter(|l| l["message"] == "event received")
            .count()
    };
    // Published while the group forms, until every member has run some: the first to join
    // may hold every partition until the others do.
    let mut published = 0;
    wait_until("every member to run events", DEADLINE, || {
        if published < 200 {
            kafka.publish(published);
            published += 1;
        }
        routers
            .iter()
            .flatten()
            .all(|r| received(r) > 0)
            .then_some(())
    });
    routers[0].take().unwrap().kill9();
    let total = published + 30;
    for n in published..total {
        kafka.publish(n);
    }
    let runs = common::wait_for_runs(api, dep, total as usize);
    let mut per_n: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &runs {
        *per_n
            .entry(r.parameters["n"].as_i64().unwrap_or(-1))
            .or_default() += 1;
    }
    assert_eq!(per_n.len(), total as usize, "every message ran: {per_n:?}");
    assert!(
        per_n.values().all(|c| *c == 1),
        "no message ran twice: {per_n:?}"
    );
    wait_until("nothing pending in the shared journal", DEADLINE, || {
        (db.query("SELECT COUNT(*) FROM switchyard.events WHERE status = 'pending'") == "0")
            .then_some(())
    });
    for r in routers.into_iter().flatten() {
        assert_eq!(r.stop(libc::SIGTERM), Some(0));
    }
}

/// A route `jobs` from `source` to the `outcome` deployment `reference`, settled when its
/// run ends, retrying a failed run once (`max_runs: 2`), runs followed every 200 ms.
fn retrying_finished(source: &str, reference: &str) -> String {
    format!(
        r#"
prefect: {{follow: {{interval: 200ms}}}}
delivery: {{backoff: 100ms, max_backoff: 1s}}
sources: [{source}]
routes:
  - name: jobs
    settle_on: finished
    on_failure: retry
    max_runs: 2
    action:
      type: run_deployment
      deployment: {reference}
      parameters:
        n: "{{{{ event.payload.n }}}}"
        fail: "{{{{ event.payload.fail | default(false) }}}}"
        seconds: "{{{{ event.payload.seconds | default(0) }}}}"
"#
    )
}

/// The runs of `worked`'s deployment for event number `n`.
fn runs_with_n(api: &str, worked: &common::Worked, n: i64) -> Vec<switchyard_prefect::FlowRun> {
    runs_of(api, worked.deployment)
        .into_iter()
        .filter(|r| r.parameters["n"] == json!(n))
        .collect()
}

/// `settle_on: finished` on RabbitMQ with a real worker: a message is acknowledged only once
/// its run has ended; a run that fails is retried (`on_failure: retry`, `max_runs: 2`) and
/// then dead-lettered; the router killed -9 while runs are running loses nothing and starts
/// no run twice.
#[test]
fn amqp_settle_on_finished_acknowledges_at_the_runs_end_and_retries_failed_runs() {
    let api = &PrefectServer::shared().api_url;
    let worked = common::Worked::start(api);
    let mut amqp = Amqp::new();
    let dir = TempDir::new("amqp-finished");
    let config = retrying_finished(&amqp.source("jobs-in"), &worked.reference);
    let runs_of_n = |n: i64| runs_with_n(api, &worked, n);
    let router = Router::start(dir.path(), api, "finished.yaml", &config, &[]);
    router.wait_for_log(&[("message", "AMQP")]);
    amqp.send(Some(1), r#"{"n": 1, "seconds": 5}"#);
    amqp.send(Some(2), r#"{"n": 2, "fail": true}"#);
    wait_until("run n=1 to be running", DEADLINE, || {
        runs_of_n(1)
            .iter()
            .any(|r| r.state_type.as_deref() == Some("RUNNING"))
            .then_some(())
    });
    router.kill9();
    // Neither was acknowledged: their runs had not ended (n=2 waits on its first or second).
    // The broker takes them back once it sees the connection gone.
    wait_until("both messages back with the broker", DEADLINE, || {
        (amqp.unacknowledged() == 2).then_some(())
    });

    let router = Router::start(dir.path(), api, "finished.yaml", &config, &[]);
    let letter = wait_until("n=2 dead-lettered after two failed runs", DEADLINE, || {
        let env = [("SWITCHYARD_JOURNAL", dir.path().join("journal.db"))];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
        let (_, out, _) = switchyard(&["dlq", "list", "--json"], &env);
        let list: Value = serde_json::from_str(&out).ok()?;
        list.as_array()?.first().cloned()
    });
    assert_eq!(letter["route"], "jobs");
    let reason = letter["reason"].as_str().unwrap();
    assert!(
        reason.contains("ended Failed") && reason.contains("2 run(s)"),
        "{reason}"
    );
    wait_until("run n=1 to complete", DEADLINE, || {
        let runs = runs_of_n(1);
        runs.iter()
            .all(|r| r.state_type.as_deref() == Some("COMPLETED"))
            .then_some(())
    });
    router.wait_for_log(&[("message", "flow run completed; event handled")]);
    router.stop(libc::SIGINT);
    // Both acknowledged once settled; none left with the broker.
    assert_eq!(amqp.unacknowledged(), 0);
    // One run for n=1, killed or not; two failed runs for n=2, each once.
    let one = runs_of_n(1);
    assert_eq!(one.len(), 1, "{one:?}");
    let two = runs_of_n(2);
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(
        two.iter()
            .all(|r| r.state_type.as_deref() == Some("FAILED")),
        "{two:?}"
    );
}

/// An AMQP message with `reply_to` and `correlation_id` gets its outcome on that queue once
/// its run has ended: the event id, the run's id, name, final state and page.
#[test]
fn amqp_reply_to_gets_the_outcome_once_the_run_has_ended() {
    let api = &PrefectServer::shared().api_url;
    let worked = common::Worked::start(api);
    let amqp = Amqp::new();
    let replies = unique("switchyard-replies");
    let dir = TempDir::new("amqp-reply");
    let config = format!(
        r#"
prefect: {{follow: {{interval: 200ms}}}}
sources: [{source}]
routes:
  - name: jobs
    action:
      type: run_deployment
      deployment: {reference}
      parameters: {{n: "{{{{ event.payload.n }}}}"}}
"#,
        source = amqp.source("asks"),
        reference = worked.reference
    );
    let router = Router::start(dir.path(), api, "reply.yaml", &config, &[]);
    router.wait_for_log(&[("message", "AMQP")]);
    let (ch, q) = (amqp.channel.clone(), amqp.queue.clone());
    let reply = amqp.rt.block_on(async {
        use futures::StreamExt;
        let options = lapin::options::QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        ch.queue_declare(replies.as_str().into(), options, Default::default())
            .await
            .unwrap();
        let mut consumer = ch
            .basic_consume(
                replies.as_str().into(),
                "test-replies".into(),
                lapin::options::BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        let props = lapin::BasicProperties::default()
            .with_message_id("asked-1".into())
            .with_reply_to(replies.as_str().into())
            .with_correlation_id("corr-42".into());
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            Default::default(),
            br#"{"n": 5}"#,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
        tokio::time::timeout(DEADLINE, consumer.next())
            .await
            .expect("a reply within the deadline")
            .expect("the consumer is open")
            .expect("a delivery")
    });
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("corr-42")
    );
    let body: Value = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(body["id"], "asks:asked-1", "{body}");
    assert_eq!(body["status"], "finished", "{body}");
    let run = &body["runs"][0];
    assert_eq!(run["state_type"], "COMPLETED", "{body}");
    let run_id = run["flow_run_id"].as_str().unwrap();
    assert!(
        run["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/runs/flow-run/{run_id}")),
        "{body}"
    );
    assert_eq!(
        common::flow_run(api, run_id).state_type.as_deref(),
        Some("COMPLETED")
    );
    router.wait_for_log(&[("message", "outcome replied"), ("status", "finished")]);
    router.stop(libc::SIGINT);
}

/// `settle_on: finished` on Kafka with a real worker: the router killed -9 while a run is
/// running loses nothing and starts no run twice (the offsets were not committed: both
/// messages come again); a failing run is retried then dead-lettered; a third start runs
/// only what is new.
#[test]
fn kafka_settle_on_finished_commits_past_ended_runs_only() {
    let api = &PrefectServer::shared().api_url;
    let worked = common::Worked::start(api);
    let mut kafka = Kafka::new(1);
    let dir = TempDir::new("kafka-finished");
    let config = retrying_finished(&kafka.source("bus"), &worked.reference);
    let runs_of_n = |n: i64| runs_with_n(api, &worked, n);
    let router = Router::start(dir.path(), api, "finished.yaml", &config, &[]);
    router.wait_for_log(&[("message", "consuming Kafka")]);
    kafka.send(Some(1), r#"{"n": 1, "seconds": 5}"#);
    kafka.send(Some(2), r#"{"n": 2, "fail": true}"#);
    wait_until("run n=1 to be running", DEADLINE, || {
        runs_of_n(1)
            .iter()
            .any(|r| r.state_type.as_deref() == Some("RUNNING"))
            .then_some(())
    });
    router.kill9();

    let router = Router::start(dir.path(), api, "finished.yaml", &config, &[]);
    let env = [("SWITCHYARD_JOURNAL", dir.path().join("journal.db"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
    let letter = wait_until("n=2 dead-lettered after two failed runs", DEADLINE, || {
        let (_, out, _) = switchyard(&["dlq", "list", "--json"], &env);
        let list: Value = serde_json::from_str(&out).ok()?;
        list.as_array()?.first().cloned()
    });
    assert!(
        letter["reason"].as_str().unwrap().contains("ended Failed"),
        "{letter}"
    );
    wait_until("run n=1 to complete", DEADLINE, || {
        runs_of_n(1)
            .iter()
            .all(|r| r.state_type.as_deref() == Some("COMPLETED"))
            .then_some(())
    });
    router.wait_for_log(&[("message", "flow run completed; event handled")]);
    // Not committed while their runs ran: once the killed member's session has expired the
    // broker gives the partition to this one and delivers both messages again, and the
    // journal knows them (no new run).
    for offset in [":0:0", ":0:1"] {
        router.wait_for_log(&[("message", "event received"), ("event_id", offset)]);
    }
    wait_until("nothing pending in the journal", DEADLINE, || {
        let (_, out, _) = switchyard(&["events", "list", "--status", "pending", "--json"], &env);
        let list: Value = serde_json::from_str(&out).ok()?;
        list.as_array()?.is_empty().then_some(())
    });
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
    assert_eq!(runs_of_n(1).len(), 1, "n=1 ran once, killed or not");
    assert_eq!(runs_of_n(2).len(), 2, "n=2 ran twice (max_runs), no more");

    // A third start runs the new message and nothing again, whatever it reads again.
    let router = Router::start(dir.path(), api, "finished.yaml", &config, &[]);
    router.wait_for_log(&[("message", "consuming Kafka")]);
    kafka.send(Some(3), r#"{"n": 3}"#);
    router.wait_for_log(&[("message", "flow run completed; event handled")]);
    assert_eq!(runs_of_n(3).len(), 1);
    assert_eq!(runs_of_n(1).len(), 1);
    assert_eq!(runs_of_n(2).len(), 2);
    router.stop(libc::SIGTERM);
}
