//! Several instances, one PostgreSQL journal: a webhook flood spread over three instances with
//! one killed -9 and never restarted, and one sender's retries at every instance. Against the
//! real Prefect and the machine's PostgreSQL (a database per test); every wait has a deadline.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{
    DEADLINE, Router, assert_exactly_once, counted_schema, deploy, post, runs_of, switchyard,
    wait_for_runs,
};
use serde_json::{Value, json};
use switchyard_testkit::{PrefectServer, TempDir, TestDatabase, free_port, unique, wait_until};

/// One instance's config: its own port and name, a short lease and a quick sweep, so that a
/// dead instance's events are claimed within seconds; `rest` is the sources and routes.
fn config(port: u16, instance: &str, rest: &str) -> String {
    format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
engine: {{queue_capacity: 32, max_consumers: 4}}
journal: {{instance: "{instance}", lease: 2s, sweep_interval: 300ms, sweep_after: 1s}}
{rest}
"#
    )
}

/// A webhook `flood` and a run per event.
fn per_event(flow: &str) -> String {
    format!(
        r#"
sources: [{{type: webhook, name: flood}}]
routes:
  - name: count
    action:
      type: run_deployment
      deployment: "{flow}/counted"
      parameters: {{n: "{{{{ event.payload.n }}}}"}}
"#
    )
}

/// Three instances on one journal, each in a directory of its own.
struct Cluster {
    db: TestDatabase,
    ports: Vec<u16>,
    routers: Vec<Option<Router>>,
    _dirs: Vec<TempDir>,
}

impl Cluster {
    fn start(api: &str, rest: &str) -> Self {
        let db = TestDatabase::create("scale_out");
        let url = db.url();
        let mut ports = Vec::new();
        let mut routers = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..3 {
            let dir = TempDir::new("scale-out");
            let port = free_port();
            let cfg = config(port, &format!("i{i}"), rest);
            let env = [("SWITCHYARD_JOURNAL", url.as_str())];
            let r = Router::start_env(dir.path(), api, "app.yaml", &cfg, &[], &env);
            r.wait_for_http(port);
            ports.push(port);
            routers.push(Some(r));
            dirs.push(dir);
        }
        Self {
            db,
            ports,
            routers,
            _dirs: dirs,
        }
    }

    fn urls(&self) -> Vec<String> {
        self.urls_of("flood")
    }

    fn urls_of(&self, source: &str) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/hooks/{source}"))
            .collect()
    }

    fn pending(&self) -> i64 {
        self.db
            .query("SELECT COUNT(*) FROM switchyard.events WHERE status = 'pending'")
            .parse()
            .unwrap()
    }

    fn stop(mut self) {
        for r in self.routers.iter_mut().filter_map(Option::take) {
            assert_eq!(r.stop(libc::SIGTERM), Some(0));
        }
    }
}

#[test]
fn a_flood_over_three_instances_with_one_killed_ends_as_exactly_one_run_each() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("ScaleOut");
    let dep = deploy(api, &flow, "counted", counted_schema());
    let mut cluster = Cluster::start(api, &per_event(&flow));
    let urls = cluster.urls();
    let total = 150;
    let accepted = Arc::new(AtomicUsize::new(0));

    // A load balancer's way: round-robin, and on to the next instance when one does not
    // answer; the sender's retry keeps its Idempotency-Key.
    let sent = Arc::clone(&accepted);
    let producer = std::thread::spawn(move || {
        for n in 0..total {
            let key = format!("n-{n}");
            let body = format!(r#"{{"n": {n}}}"#);
            let mut at = n;
            wait_until(&format!("202 for event {n}"), DEADLINE, || {
                let (status, answer) =
                    post(&urls[at % urls.len()], &body, &[("idempotency-key", &key)]);
                assert!(matches!(status, 0 | 202 | 503), "HTTP {status}: {answer}");
                at += 1;
                (status == 202).then_some(())
            });
            sent.fetch_add(1, Ordering::SeqCst);
        }
    });
    wait_until("a third of the flood accepted", DEADLINE, || {
        (accepted.load(Ordering::SeqCst) >= total / 3).then_some(())
    });
    let killed = cluster.routers[2].take().unwrap();
    killed.kill9();
    producer.join().unwrap();

    assert_exactly_once(api, dep, total);
    wait_until("nothing pending in the shared journal", DEADLINE, || {
        (cluster.pending() == 0).then_some(())
    });
    // The survivors say who holds what: the dead one's lease lapsed, it owns nothing.
    let (code, out, err) = switchyard(&["status", "--json", "--journal", &cluster.db.url()], &[]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    let instances = status["instances"].as_array().unwrap();
    let dead = instances.iter().find(|i| i["id"] == "i2").unwrap();
    assert_eq!(
        (dead["alive"].clone(), dead["pending"].clone()),
        (json!(false), json!(0))
    );
    assert!(
        instances.iter().filter(|i| i["alive"] == true).count() == 2,
        "{status}"
    );
    assert_eq!(status["pending"], 0);
    cluster.stop();
}

#[test]
fn one_sender_retrying_at_every_instance_starts_one_run() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("ScaleOutRetry");
    let dep = deploy(api, &flow, "counted", counted_schema());
    let cluster = Cluster::start(api, &per_event(&flow));
    let key = "order-7";
    for url in cluster.urls() {
        let (status, answer) = post(&url, r#"{"n": 7}"#, &[("idempotency-key", key)]);
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["id"], "flood:order-7", "{answer}");
    }
    // And once more at each, after the first delivery finished.
    wait_until("the event finished", DEADLINE, || {
        (cluster.pending() == 0
            && cluster.db.query("SELECT COUNT(*) FROM switchyard.events") == "1")
            .then_some(())
    });
    for url in cluster.urls() {
        let (status, _) = post(&url, r#"{"n": 7}"#, &[("idempotency-key", key)]);
        assert_eq!(status, 202);
    }
    let runs = wait_for_runs(api, dep, 1);
    assert_eq!(runs.len(), 1);
    // The same key with another body is a conflict at any instance.
    let (status, _) = post(
        &cluster.urls()[1],
        r#"{"n": 8}"#,
        &[("idempotency-key", key)],
    );
    assert_eq!(status, 409);
    assert_eq!(runs_of(api, dep).len(), 1, "still one run");
    cluster.stop();
}

fn named_schema() -> Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
}

/// Prefect-shaped events, keyed by `customer` (or the resource id).
fn prefect_event(name: &str, resource: &str, customer: &str) -> String {
    json!({"event": name, "resource": {"prefect.resource.id": resource, "customer": customer}, "payload": {}})
        .to_string()
}

#[test]
fn a_threshold_fed_through_three_instances_fires_once_per_key() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("ScaleOutThreshold");
    let dep = deploy(api, &flow, "named", named_schema());
    let rest = format!(
        r#"
sources: [{{type: webhook, name: events, format: prefect_event}}]
routes:
  - name: repeated
    trigger: {{type: event, expect: [order.failed], for_each: [customer], threshold: 5, within: 1m}}
    action:
      type: run_deployment
      deployment: "{flow}/named"
      parameters: {{name: "{{{{ event.labels.customer }}}} x{{{{ events | length }}}}"}}
"#
    );
    let cluster = Cluster::start(api, &rest);
    let urls = cluster.urls_of("events");
    // Five events per key, each key's spread over all three instances (no instance sees more
    // than two of one key): counted in each instance alone, none would fire.
    let mut sent = 0;
    for round in 0..5 {
        for (k, customer) in ["c1", "c2", "c3"].iter().enumerate() {
            let url = &urls[(round + k) % urls.len()];
            let (status, answer) = post(url, &prefect_event("order.failed", "shop", customer), &[]);
            assert_eq!(status, 202, "{answer}");
            sent += 1;
        }
    }
    assert_eq!(sent, 15);
    let runs = wait_for_runs(api, dep, 3);
    wait_until("every event and firing finished", DEADLINE, || {
        (cluster.pending() == 0).then_some(())
    });
    let mut names: Vec<String> = runs_of(api, dep)
        .iter()
        .map(|r| {
            r.parameters["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["c1 x5", "c2 x5", "c3 x5"],
        "one firing per key: {runs:?}"
    );
    cluster.stop();
}

#[test]
fn a_proactive_trigger_whose_instance_dies_fires_once_from_another() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("ScaleOutProactive");
    let dep = deploy(api, &flow, "named", named_schema());
    let rest = format!(
        r#"
sources: [{{type: webhook, name: events, format: prefect_event}}]
routes:
  - name: quiet
    trigger:
      type: event
      after: [device.heartbeat]
      expect: [device.heartbeat]
      for_each: [prefect.resource.id]
      posture: Proactive
      threshold: 1
      within: 3
    action:
      type: run_deployment
      deployment: "{flow}/named"
      parameters: {{name: "{{{{ trigger.key }}}} went quiet"}}
"#
    );
    let mut cluster = Cluster::start(api, &rest);
    let urls = cluster.urls_of("events");
    // The heartbeat opens the bucket at instance 0, which dies before its deadline.
    let (status, answer) = post(
        &urls[0],
        &prefect_event("device.heartbeat", "dev-1", "-"),
        &[],
    );
    assert_eq!(status, 202, "{answer}");
    wait_until("the bucket stored", DEADLINE, || {
        (cluster
            .db
            .query("SELECT COUNT(*) FROM switchyard.trigger_states")
            == "1")
            .then_some(())
    });
    cluster.routers[0].take().unwrap().kill9();
    let runs = wait_for_runs(api, dep, 1);
    assert_eq!(runs[0].parameters["name"], "dev-1 went quiet");
    wait_until("the firing finished and the bucket ended", DEADLINE, || {
        (cluster.pending() == 0
            && cluster
                .db
                .query("SELECT COUNT(*) FROM switchyard.trigger_states")
                == "0")
            .then_some(())
    });
    let firings = cluster
        .db
        .query("SELECT COUNT(*) FROM switchyard.events WHERE source = 'trigger:quiet'");
    assert_eq!(firings, "1", "fired once");
    assert_eq!(runs_of(api, dep).len(), 1, "one run");
    cluster.stop();
}

/// The README's example as written: `examples/several-instances-{a,b}.yaml` on one database,
/// one order delivered at both, three orders of one customer spread over the two; `status`
/// names both instances.
#[test]
fn the_several_instances_example_shares_one_journal() {
    let api = &PrefectServer::shared().api_url;
    let orders = deploy(
        api,
        "process-order",
        "from-switchyard",
        json!({"type": "object", "properties": {"order_id": {"type": "integer"}, "amount": {"type": "number"}}}),
    );
    let greet = deploy(api, "greet", "from-switchyard", named_schema());
    let db = TestDatabase::create("example");
    let url = db.url();
    let examples = switchyard_testkit::workspace_root().join("examples");
    let mut started = Vec::new();
    for name in ["a", "b"] {
        let dir = TempDir::new("example");
        let (hooks, admin) = (free_port(), free_port());
        let text = std::fs::read_to_string(examples.join(format!("several-instances-{name}.yaml")))
            .unwrap();
        let (hooks_s, admin_s) = (hooks.to_string(), admin.to_string());
        let env = [
            ("SWITCHYARD_JOURNAL_URL", url.as_str()),
            ("HOOKS_PORT", hooks_s.as_str()),
            ("ADMIN_PORT", admin_s.as_str()),
        ];
        // No `--journal`: the file's `journal.url`, overridden by SWITCHYARD_JOURNAL_URL.
        let r = Router::start_env(dir.path(), api, "app.yaml", &text, &[], &env);
        r.wait_for_http(hooks);
        started.push((r, hooks, admin, dir));
    }
    let hook = |i: usize| format!("http://127.0.0.1:{}/hooks/orders", started[i].1);
    for (at, key, id) in [
        (0, "order-42", 42),
        (1, "order-42", 42),
        (1, "order-43", 43),
        (0, "order-44", 44),
    ] {
        let body = format!(r#"{{"id": {id}, "amount": 120.5, "customer": "ada"}}"#);
        let (status, answer) = post(&hook(at), &body, &[("idempotency-key", key)]);
        assert_eq!(status, 202, "{answer}");
    }
    assert_eq!(wait_for_runs(api, orders, 3).len(), 3);
    let greeted = wait_for_runs(api, greet, 1);
    assert_eq!(greeted[0].parameters["name"], "ada ordered 3 times");
    wait_until("nothing pending", DEADLINE, || {
        (db.query("SELECT COUNT(*) FROM switchyard.events WHERE status = 'pending'") == "0")
            .then_some(())
    });
    assert_eq!(runs_of(api, orders).len(), 3, "one run per order");
    assert_eq!(runs_of(api, greet).len(), 1, "one firing");
    let config = examples.join("several-instances-a.yaml");
    let (code, out, err) = switchyard(
        &["status", "--config", config.to_str().unwrap()],
        &[("SWITCHYARD_JOURNAL_URL", url.as_str())],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending       0"), "{out}");
    for name in ["a ", "b "] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(name) && l.contains("held")),
            "{out}"
        );
    }
    // The admin API of either says the same.
    let listed: Value = common::rt().block_on(async {
        let url = format!("http://127.0.0.1:{}/api/v1/instances", started[1].2);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    });
    let names: Vec<&str> = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "{listed}");
    assert_eq!(listed["instances"][1]["this"], true, "{listed}");
    for (r, _, _, _) in started {
        assert_eq!(r.stop(libc::SIGTERM), Some(0));
    }
}

/// `switchyard journal migrate` as the README gives it: a SQLite journal into a fresh
/// PostgreSQL database, then again (nothing copied twice); the events are listed from there.
#[test]
fn journal_migrate_moves_a_sqlite_journal_into_postgres() {
    use switchyard::journal::{SqliteStore, Store};
    let dir = TempDir::new("migrate");
    let file = dir.path().join("switchyard.db");
    common::rt().block_on(async {
        let j = SqliteStore::open(&file).unwrap();
        for id in ["kept", "waiting"] {
            let e = switchyard_core::Event::builder("hooks", "order.created", json!({"id": id}))
                .id(id)
                .build();
            j.accept(&e).await.unwrap();
        }
        j.finish("kept").await.unwrap();
    });
    let db = TestDatabase::create("migrate_cli");
    let url = db.url();
    let from = file.to_str().unwrap();
    let (code, out, err) = switchyard(&["journal", "migrate", "--from", from, "--to", &url], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("copied 2 events (1 pending"), "{out}");
    assert!(out.contains("0 were there already"), "{out}");
    let (code, out, _) = switchyard(
        &["journal", "migrate", "--from", from, "--json"],
        &[("SWITCHYARD_JOURNAL_URL", &url)],
    );
    assert_eq!(code, 0);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (again["events"].clone(), again["skipped"].clone()),
        (json!(0), json!(2))
    );
    let (code, out, _) = switchyard(&["events", "--journal", &url, "list", "--json"], &[]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&out).unwrap();
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["kept", "waiting"]);
    // A URL that is not PostgreSQL's is refused, naming the flag, its password unshown.
    let (code, _, err) = switchyard(
        &[
            "journal",
            "migrate",
            "--from",
            from,
            "--to",
            "mysql://u:s3cret@h/db",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--to: expected a postgres://") && !err.contains("s3cret"),
        "{err}"
    );
}
