//! Hot reload against a real Prefect: a webhook flood while the config is reloaded ten times
//! (routes changed each time) ends with every accepted event run exactly once, under the
//! config in force when it was routed; a config that fails keeps the running one and says
//! why; a trigger keeps its state when it did not change and starts afresh when it did;
//! SIGHUP and `--watch` reload too, and a webhook's hooks change without a restart.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{DEADLINE, Router, count_runs, deploy, post};
use serde_json::{Value, json};
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique, wait_until};

/// `POST /api/v1/reload`: `(status, answer)`.
fn reload(base: &str) -> (u16, Value) {
    common::rt().block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/reload"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    })
}

fn get(url: &str) -> Value {
    common::rt().block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

fn metrics(base: &str) -> String {
    common::rt().block_on(async {
        let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
        r.text().await.unwrap()
    })
}

fn route_names(base: &str) -> Vec<String> {
    get(&format!("{base}/api/v1/routes"))["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

/// Events each sender posts under one generation.
const PER_GENERATION: u64 = 6;

#[test]
fn a_flood_across_ten_reloads_runs_every_event_once_under_the_config_in_force() {
    let api = PrefectServer::shared().api_url.clone();
    let flow = unique("Reloaded");
    let schema = json!({"type": "object", "properties": {
        "n": {"type": "integer"}, "generation": {"type": "integer"}}});
    let dep = deploy(&api, &flow, "d", schema);
    let (port, admin) = (free_port(), free_port());
    // Generation g's routes: `flood` stamps its runs with g; every other generation also has
    // a route of its own name (added, then removed) that never runs. Runs are not followed:
    // what generations the flood meets depends on how fast Prefect drains the queue, and
    // reads of run states (tested in outcomes.rs) only take from that on a shared CI box.
    let config = |g: u64| {
        let extra = if g % 2 == 1 {
            format!(
                "  - name: audit-{g}\n    when: \"false\"\n    action: {{type: run_deployment, deployment: \"{flow}/d\"}}\n"
            )
        } else {
            String::new()
        };
        format!(
            r#"
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin}"}}
prefect: {{max_in_flight: 8, follow: {{enabled: false}}}}
sources: [{{type: webhook, name: h}}]
routes:
  - name: flood
    when: "event.payload.n >= 0 and {g} > 0"
    action:
      type: run_deployment
      deployment: "{flow}/d"
      parameters: {{n: "{{{{ event.payload.n }}}}", generation: {g}}}
      flow_run_name: "n-{{{{ event.payload.n }}}}"
{extra}"#
        )
    };
    let dir = TempDir::new("reload-flood");
    let path = dir.path().join("c.yaml");
    let router = Router::start(dir.path(), &api, "c.yaml", &config(1), &[]);
    router.wait_for_http(port);
    router.wait_for_http(admin);
    let base = format!("http://127.0.0.1:{admin}");
    let hook = format!("http://127.0.0.1:{port}/hooks/h");

    // Four senders post until told to stop; each event remembers the generation that was in
    // force (its reload answered) before it was sent.
    let applied = Arc::new(AtomicU64::new(1));
    let accepted = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4u64)
        .map(|s| {
            let (applied, accepted, done, hook) = (
                Arc::clone(&applied),
                Arc::clone(&accepted),
                Arc::clone(&done),
                hook.clone(),
            );
            std::thread::spawn(move || {
                let poster = common::Poster::default();
                let mut sent = Vec::new();
                let mut i = 0u64;
                while !done.load(Ordering::SeqCst) {
                    // A few events per generation, so Prefect keeps up with the flood.
                    let floor = applied.load(Ordering::SeqCst);
                    for _ in 0..PER_GENERATION {
                        let n = s * 1_000_000 + i;
                        poster.post_until_accepted(
                            &hook,
                            &format!("{{\"n\": {n}}}"),
                            &format!("e{n}"),
                        );
                        accepted.fetch_add(1, Ordering::SeqCst);
                        sent.push((n, floor));
                        i += 1;
                    }
                    wait_until("the next reload", DEADLINE, || {
                        (done.load(Ordering::SeqCst) || applied.load(Ordering::SeqCst) > floor)
                            .then_some(())
                    });
                }
                sent
            })
        })
        .collect();
    for g in 2..=11u64 {
        let before = accepted.load(Ordering::SeqCst);
        wait_until("the flood to go on between reloads", DEADLINE, || {
            (accepted.load(Ordering::SeqCst) >= before + 2 * PER_GENERATION).then_some(())
        });
        std::fs::write(&path, config(g)).unwrap();
        let (status, answer) = reload(&base);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"], "applied", "{answer}");
        assert_eq!(answer["generation"], g, "{answer}");
        let changes = answer["changes"].to_string();
        assert!(changes.contains("route flood: changed"), "{changes}");
        // Odd generations add their audit route; even ones remove the one before.
        let audit = match g % 2 {
            1 => format!("route audit-{g}: added"),
            _ => format!("route audit-{}: removed", g - 1),
        };
        assert!(changes.contains(&audit), "{audit} in {changes}");
        applied.store(g, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    let sent: Vec<(u64, u64)> = senders
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let total = sent.len();
    assert!(total >= 100, "only {total} events sent");

    let runs = common::wait_for_runs(&api, dep, total);
    // Nothing lost, nothing run twice: one run per accepted event.
    let mut by_n: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for r in &runs {
        let n = r.parameters["n"].as_u64().unwrap();
        let g = r.parameters["generation"].as_u64().unwrap();
        by_n.entry(n).or_default().push(g);
    }
    let twice: Vec<String> = runs
        .iter()
        .filter(|r| by_n[&r.parameters["n"].as_u64().unwrap()].len() > 1)
        .map(|r| format!("{} {:?} {:?}", r.name, r.idempotency_key, r.parameters))
        .collect();
    assert!(twice.is_empty(), "events ran twice: {twice:#?}");
    assert_eq!(runs.len(), total, "runs {} for {total} events", runs.len());
    assert_eq!(by_n.len(), total, "an event did not run");
    // Under the config in force when it was routed: never one older than the generation
    // that was in force when it was sent.
    for (n, floor) in &sent {
        let g = by_n[n][0];
        assert!(
            (*floor..=11).contains(&g),
            "event {n} sent under generation {floor} ran under {g}"
        );
    }
    let generations: std::collections::BTreeSet<u64> = by_n.values().map(|g| g[0]).collect();
    // Events queue while Prefect is slower than the senders, so an event can be routed a few
    // reloads after it was accepted: many generations ran, not necessarily every one.
    assert!(
        generations.len() >= 3 && generations.contains(&11),
        "the reloads took effect during the flood: {generations:?}"
    );
    wait_until("nothing pending", DEADLINE, || {
        let o = get(&format!("{base}/api/v1/overview"));
        (o["journal"]["pending_events"] == 0).then_some(())
    });
    let text = metrics(&base);
    assert!(
        text.contains(r#"switchyard_config_reloads_total{result="applied"} 10"#),
        "{text}"
    );
    assert_eq!(route_names(&base), ["flood", "audit-11"]);
    assert_eq!(count_runs(&api, dep), total as u64);
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

#[test]
fn a_failing_reload_keeps_the_running_config_and_triggers_keep_what_they_counted() {
    let api = PrefectServer::shared().api_url.clone();
    let flow = unique("ReloadTriggers");
    let schema = json!({"type": "object", "properties": {"v": {"type": "string"}}});
    let plain = deploy(&api, &flow, "plain", schema.clone());
    let fired = deploy(&api, &flow, "fired", schema);
    let (port, admin) = (free_port(), free_port());
    let config = |v: &str, threshold: u32, extra: &str| {
        format!(
            r#"{extra}
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin}"}}
sources: [{{type: webhook, name: h}}]
routes:
  - name: plain
    action: {{type: run_deployment, deployment: "{flow}/plain", parameters: {{v: "{v}"}}}}
  - name: three
    trigger: {{type: event, expect: [h.received], threshold: {threshold}, within: 1h}}
    action: {{type: run_deployment, deployment: "{flow}/fired", parameters: {{v: "{v}"}}}}
"#
        )
    };
    let dir = TempDir::new("reload-triggers");
    let path = dir.path().join("c.yaml");
    let router = Router::start(dir.path(), &api, "c.yaml", &config("a", 3, ""), &[]);
    router.wait_for_http(port);
    router.wait_for_http(admin);
    let base = format!("http://127.0.0.1:{admin}");
    let hook = format!("http://127.0.0.1:{port}/hooks/h");
    let send = |key: &str| {
        let (status, body) = post(&hook, "{}", &[("idempotency-key", key)]);
        assert_eq!(status, 202, "{body}");
    };
    send("1");
    send("2");
    common::wait_for_runs(&api, plain, 2);

    // The plain route changes, the trigger does not: it keeps its two events.
    std::fs::write(&path, config("b", 3, "")).unwrap();
    let (status, answer) = reload(&base);
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("applied")),
        "{answer}"
    );
    assert_eq!(
        answer["changes"],
        json!([
            "route plain: changed",
            "route three: changed (trigger state kept)"
        ]),
        "{answer}"
    );
    send("3");
    let runs = common::wait_for_runs(&api, fired, 1);
    assert_eq!(
        runs[0].parameters["v"], "b",
        "the firing runs the new action"
    );
    let runs = common::wait_for_runs(&api, plain, 3);
    assert_eq!(
        runs.iter().filter(|r| r.parameters["v"] == "b").count(),
        1,
        "the third event ran under the new config"
    );

    // A config that fails: the running one stays, the answer and the metric say why.
    let unchanged = std::fs::read_to_string(&path).unwrap();
    let broken = unchanged.replace(r#"v: "b""#, r#"v: "{{ event.payload.x | nosuchfilter }}""#);
    std::fs::write(&path, broken).unwrap();
    let (status, answer) = reload(&base);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["result"], "failed");
    assert_eq!(answer["generation"], 2);
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("routes[0].action.parameters") && error.contains("nosuchfilter"),
        "{error}"
    );
    std::fs::write(&path, config("b", 3, "engine: {queue_capacity: 77}")).unwrap();
    let (status, answer) = reload(&base);
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("engine changed"),
        "{answer}"
    );
    send("4");
    let runs = common::wait_for_runs(&api, plain, 4);
    assert_eq!(runs.iter().filter(|r| r.parameters["v"] == "b").count(), 2);
    std::fs::write(&path, config("b", 3, "")).unwrap();
    let (status, answer) = reload(&base);
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("unchanged")),
        "{answer}"
    );

    // The trigger changes: what it counted is dropped, with a log line; a new window starts.
    send("5");
    std::fs::write(&path, config("c", 2, "")).unwrap();
    let (status, answer) = reload(&base);
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["changes"]
            .to_string()
            .contains("route three: trigger changed (its state dropped)"),
        "{answer}"
    );
    router.wait_for_log(&[
        ("message", "trigger changed: its state was dropped"),
        ("route", "three"),
    ]);
    send("6");
    common::wait_for_runs(&api, plain, 6);
    assert_eq!(
        count_runs(&api, fired),
        1,
        "events 4 and 5 were dropped with the old trigger"
    );
    send("7");
    let runs = common::wait_for_runs(&api, fired, 2);
    assert!(runs.iter().any(|r| r.parameters["v"] == "c"));

    // SIGHUP reloads too.
    std::fs::write(&path, config("d", 2, "")).unwrap();
    router.process.signal(libc::SIGHUP);
    router.wait_for_log(&[("message", "config reloaded"), ("cause", "SIGHUP")]);
    send("8");
    let runs = common::wait_for_runs(&api, plain, 8);
    assert!(runs.iter().any(|r| r.parameters["v"] == "d"));
    let text = metrics(&base);
    for line in [
        r#"switchyard_config_reloads_total{result="applied"} 3"#,
        r#"switchyard_config_reloads_total{result="failed"} 2"#,
        r#"switchyard_config_reloads_total{result="unchanged"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

#[test]
fn watch_reloads_when_the_file_changes_and_hooks_change_without_a_restart() {
    let api = PrefectServer::shared().api_url.clone();
    let flow = unique("Watched");
    let dep = deploy(
        &api,
        &flow,
        "d",
        json!({"type": "object", "properties": {}}),
    );
    let (port, admin) = (free_port(), free_port());
    let config = |hook: &str, route: &str| {
        format!(
            r#"
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin}"}}
sources: [{{type: webhook, name: {hook}}}]
routes:
  - name: {route}
    action: {{type: run_deployment, deployment: "{flow}/d"}}
"#
        )
    };
    let dir = TempDir::new("reload-watch");
    let path = dir.path().join("c.yaml");
    let router = Router::start(
        dir.path(),
        &api,
        "c.yaml",
        &config("old", "first"),
        &["--watch"],
    );
    router.wait_for_http(port);
    router.wait_for_http(admin);
    let base = format!("http://127.0.0.1:{admin}");
    let url = |hook: &str| format!("http://127.0.0.1:{port}/hooks/{hook}");
    assert_eq!(post(&url("old"), "{}", &[]).0, 202);

    std::fs::write(&path, config("new", "second")).unwrap();
    router.wait_for_log(&[("message", "config reloaded"), ("cause", "file changed")]);
    assert_eq!(route_names(&base), ["second"]);
    // The same server, the same port: the old hook is gone, the new one answers.
    assert_eq!(post(&url("old"), "{}", &[]).0, 404);
    assert_eq!(post(&url("new"), "{}", &[]).0, 202);
    common::wait_for_runs(&api, dep, 2);

    // A broken file is reported and leaves the running config; fixing it applies.
    std::fs::write(&path, "sources: [").unwrap();
    router.wait_for_log(&[("message", "config reload failed")]);
    assert_eq!(post(&url("new"), "{}", &[]).0, 202);
    std::fs::write(&path, config("new", "third")).unwrap();
    wait_until("the fixed file to be in force", DEADLINE, || {
        (route_names(&base) == ["third"]).then_some(())
    });
    common::wait_for_runs(&api, dep, 3);
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

/// A broker source added by a reload starts; changed, it restarts and finishes what it had
/// in flight first (nothing left pending at Redis); the webhook keeps answering throughout.
#[cfg(feature = "redis-streams")]
#[test]
fn a_changed_source_restarts_and_the_others_keep_running() {
    let api = PrefectServer::shared().api_url.clone();
    let flow = unique("Restarted");
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
    let dep = deploy(&api, &flow, "d", schema);
    let (port, admin) = (free_port(), free_port());
    let stream = unique("reload-stream");
    let config = |redis: &str| {
        format!(
            r#"
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin}"}}
sources:
  - {{type: webhook, name: h}}
{redis}
routes:
  - name: all
    action: {{type: run_deployment, deployment: "{flow}/d", parameters: {{n: "{{{{ event.payload.n }}}}"}}}}
"#
        )
    };
    let redis = |batch: u32| {
        format!("  - {{type: redis_streams, name: r, stream: \"{stream}\", batch: {batch}}}")
    };
    let dir = TempDir::new("reload-source");
    let path = dir.path().join("c.yaml");
    let router = Router::start(dir.path(), &api, "c.yaml", &config(""), &[]);
    router.wait_for_http(port);
    router.wait_for_http(admin);
    let base = format!("http://127.0.0.1:{admin}");
    let hook = format!("http://127.0.0.1:{port}/hooks/h");
    let mut conn = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_connection()
        .unwrap();
    let mut xadd = |n: u64| {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("payload")
            .arg(format!("{{\"n\": {n}}}"))
            .query(&mut conn)
            .unwrap();
    };
    let hook_keeps_answering = |n: u64| {
        let (status, body) = post(&hook, &format!("{{\"n\": {n}}}"), &[]);
        assert_eq!(status, 202, "{body}");
    };

    hook_keeps_answering(0);
    std::fs::write(&path, config(&redis(64))).unwrap();
    let (status, answer) = reload(&base);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["changes"],
        json!(["route all: listens to h, r", "source r: started"]),
        "{answer}"
    );
    for n in 1..=20 {
        xadd(n);
    }
    hook_keeps_answering(21);
    std::fs::write(&path, config(&redis(8))).unwrap();
    let (status, answer) = reload(&base);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["changes"],
        json!(["source r: restarted"]),
        "{answer}"
    );
    for n in 22..=40 {
        xadd(n);
    }
    hook_keeps_answering(41);
    let runs = common::wait_for_runs(&api, dep, 42);
    let mut ns: Vec<u64> = runs
        .iter()
        .map(|r| r.parameters["n"].as_u64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..=41).collect::<Vec<_>>(), "each event once");
    std::fs::write(&path, config("")).unwrap();
    let (_, answer) = reload(&base);
    assert_eq!(
        answer["changes"],
        json!(["route all: listens to h", "source r: stopped"]),
        "{answer}"
    );
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("switchyard")
        .query(
            &mut redis::Client::open("redis://127.0.0.1:6379")
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    assert!(
        matches!(&pending, redis::Value::Array(items) if matches!(items.first(), Some(redis::Value::Int(0)))),
        "entries left pending at Redis: {pending:?}"
    );
    assert_eq!(count_runs(&api, dep), 42);
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
    let mut conn = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_connection()
        .unwrap();
    let _: i64 = redis::cmd("DEL").arg(&stream).query(&mut conn).unwrap();
}
