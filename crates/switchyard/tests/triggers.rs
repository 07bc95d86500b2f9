//! Triggers and batches end to end against a real Prefect: an automation created in Prefect,
//! imported with `switchyard import`, fires the same runs in Switchyard as in Prefect for the
//! same events; a micro-batch hands every event to one run and survives a kill -9 mid-batch.

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, Router, deploy, post_until_accepted, rt, runs_of, switchyard};
use serde_json::{Value, json};
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique, wait_until};
use uuid::Uuid;

fn prefect_post(api: &str, path: &str, body: &Value) -> Value {
    rt().block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{api}{path}"))
            .timeout(Duration::from_secs(30))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let answer = resp.json::<Value>().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer
    })
}

fn prefect_get(api: &str, path: &str) -> Value {
    rt().block_on(async {
        reqwest::Client::new()
            .get(format!("{api}{path}"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

fn prefect_delete(api: &str, path: &str) {
    rt().block_on(async {
        let _ = reqwest::Client::new()
            .delete(format!("{api}{path}"))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
    });
}

fn names(api: &str, dep: Uuid) -> Vec<String> {
    let mut n: Vec<String> = runs_of(api, dep)
        .iter()
        .filter_map(|r| {
            r.parameters
                .get("name")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect();
    n.sort();
    n
}

/// A Prefect event for resource `<prefix>.<device>`.
fn prefect_event(prefix: &str, device: &str, n: i64) -> Value {
    json!({
        "id": Uuid::new_v4(),
        "occurred": chrono::Utc::now().to_rfc3339(),
        "event": format!("{prefix}.reading"),
        "resource": {"prefect.resource.id": format!("{prefix}.{device}"), "prefect.resource.name": device},
        "payload": {"n": n},
    })
}

#[test]
fn an_imported_prefect_automation_fires_the_same_runs_as_prefect() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("Parity");
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}});
    let by_prefect = deploy(api, &flow, "by-prefect", schema.clone());
    let by_switchyard = deploy(api, &flow, "by-switchyard", schema);
    let prefix = unique("parity").replace('-', "");

    // The automation, in Prefect: two readings of one device within a minute.
    let created = prefect_post(
        api,
        "/automations/",
        &json!({
            "name": format!("{prefix} two readings"),
            "description": "Two readings of one device within a minute",
            "enabled": true,
            "trigger": {
                "type": "event", "match": {"prefect.resource.id": format!("{prefix}.*")},
                "expect": [format!("{prefix}.reading")], "for_each": ["prefect.resource.id"],
                "posture": "Reactive", "threshold": 2, "within": 60
            },
            "actions": [{
                "type": "run-deployment", "source": "selected", "deployment_id": by_prefect,
                // Prefect's most common variables: the resource's id and name.
                "parameters": {"name": "{{ event.resource.id }}:{{ event.resource.name }}:{{ event.payload.n }}"}
            }]
        }),
    );
    let id = created["id"].as_str().unwrap().to_string();

    // Imported as Prefect returns it; pointed at the twin deployment.
    let dir = TempDir::new("parity");
    let exported = dir.path().join("automation.json");
    std::fs::write(
        &exported,
        prefect_get(api, &format!("/automations/{id}")).to_string(),
    )
    .unwrap();
    let (code, routes, err) = switchyard(&["import", exported.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    // The import is a whole config (its `prefect-events` hook takes Prefect events): run as
    // printed, with only the port and the deployment changed.
    assert!(
        routes.contains("  # Two readings of one device within a minute\n  - name: "),
        "{routes}"
    );
    let imported = routes.replace(&by_prefect.to_string(), &by_switchyard.to_string());
    let port = free_port();
    let config = format!("http: {{listen: \"127.0.0.1:{port}\"}}\n{imported}");
    let router = Router::start(dir.path(), api, "parity.yaml", &config, &[]);
    router.wait_for_http(port);

    // Prefect loads automations a moment after they are created: probe until it fires (the
    // probes go to Prefect only, and are left out of the comparison).
    let mut probe = 0;
    let mut last = Instant::now() - Duration::from_secs(10);
    wait_until("the automation to be live in Prefect", DEADLINE, || {
        if last.elapsed() > Duration::from_secs(1) {
            probe += 1;
            let device = format!("probe{probe}");
            let pair = json!([
                prefect_event(&prefix, &device, 0),
                prefect_event(&prefix, &device, 0)
            ]);
            prefect_post(api, "/events", &pair);
            last = Instant::now();
        }
        names(api, by_prefect)
            .iter()
            .any(|n| n.contains(".probe"))
            .then_some(())
    });

    // The same events to both, in the same order: Prefect orders its trigger evaluation by
    // `follows` (without it, a burst is evaluated concurrently and its counts race), and each
    // event goes to Switchyard once the previous one is absorbed.
    let hook = format!("http://127.0.0.1:{port}/hooks/prefect-events");
    let plan = [
        ("A", 1),
        ("A", 2),
        ("B", 3),
        ("A", 4),
        ("B", 5),
        ("A", 6),
        ("B", 7),
    ];
    let mut events: Vec<Value> = Vec::new();
    for (device, n) in plan {
        let mut e = prefect_event(&prefix, device, n);
        if let Some(prev) = events.last() {
            e["follows"] = prev["id"].clone();
        }
        events.push(e);
    }
    prefect_post(api, "/events", &json!(events));
    for e in &events {
        post_until_accepted(&hook, &e.to_string(), &[]);
        let id = e["id"].as_str().unwrap_or_default();
        router.wait_for_log(&[("message", "event absorbed by trigger"), ("event_id", id)]);
    }
    let expected = [format!("{prefix}.A:A:2"), format!("{prefix}.B:B:5")];
    let prefect_runs = wait_until("Prefect's runs", DEADLINE, || {
        let n: Vec<String> = names(api, by_prefect)
            .into_iter()
            .filter(|n| !n.contains(".probe"))
            .collect();
        (n.len() >= expected.len()).then_some(n)
    });
    let switchyard_runs = wait_until("Switchyard's runs", DEADLINE, || {
        let n = names(api, by_switchyard);
        (n.len() >= expected.len()).then_some(n)
    });
    assert_eq!(prefect_runs, expected, "Prefect fired these");
    assert_eq!(switchyard_runs, prefect_runs, "Switchyard fires the same");
    prefect_delete(api, &format!("/automations/{id}"));
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

#[test]
fn a_batch_hands_every_event_to_one_run_and_survives_a_kill_mid_batch() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("Batch");
    let dep = deploy(
        api,
        &flow,
        "batched",
        json!({"type": "object", "properties": {"ns": {"type": "array", "items": {"type": "integer"}}, "size": {"type": "integer"}},
               "required": ["ns", "size"]}),
    );
    let dir = TempDir::new("batch");
    let port = free_port();
    let config = format!(
        "http: {{listen: \"127.0.0.1:{port}\"}}\nsources:\n  - {{type: webhook, name: orders}}\nroutes:\n  - name: batched\n    batch: {{max_events: 3, max_delay: 1h}}\n    action:\n      type: run_deployment\n      deployment: \"{flow}/batched\"\n      parameters:\n        ns: \"{{{{ events | map(attribute='payload') | map(attribute='n') | list }}}}\"\n        size: \"{{{{ events | length }}}}\"\n"
    );
    let hook = format!("http://127.0.0.1:{port}/hooks/orders");
    let send = |n: i64| {
        post_until_accepted(
            &hook,
            &json!({"n": n}).to_string(),
            &[("idempotency-key", &format!("k{n}"))],
        );
    };
    let mut router = Router::start(dir.path(), api, "batch.yaml", &config, &[]);
    router.wait_for_http(port);
    // Events accepted at once are routed concurrently, in no promised order: each is sent
    // once the one before is in the batch, so the batches are known.
    for n in 1..=4 {
        send(n);
        let id = format!("orders:k{n}");
        router.wait_for_log(&[("message", "event absorbed by trigger"), ("event_id", &id)]);
    }
    // 1..3 closed a batch; 4 waits in the next. Kill -9 with it half full.
    let runs = common::wait_for_runs(api, dep, 1);
    assert_eq!(runs[0].parameters["ns"], json!([1, 2, 3]));
    router.wait_for_log(&[
        ("message", "event absorbed by trigger"),
        ("event_id", "orders:k4"),
    ]);
    router.kill9();
    router = Router::start(dir.path(), api, "batch.yaml", &config, &[]);
    router.wait_for_http(port);
    send(5);
    send(4); // a redelivery of an absorbed event is not counted twice
    send(6);
    let runs = common::wait_for_runs(api, dep, 2);
    let mut batches: Vec<Value> = runs.iter().map(|r| r.parameters["ns"].clone()).collect();
    batches.sort_by_key(|b| b.to_string());
    assert_eq!(batches, [json!([1, 2, 3]), json!([4, 5, 6])]);
    assert!(runs.iter().all(|r| r.parameters["size"] == 3));
    // Every event is settled (absorbed), the firings finished.
    let journal = dir.path().join("journal.db");
    let env = [("SWITCHYARD_JOURNAL", journal.to_str().unwrap_or_default())];
    wait_until("nothing pending", DEADLINE, || {
        let (_, out, _) = switchyard(&["events", "list", "--status", "pending", "--json"], &env);
        (out.trim() == "[]").then_some(())
    });
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}
