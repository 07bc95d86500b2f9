//! Never lose, never duplicate, never overload: the router killed mid-flood, Prefect stopped
//! mid-flood, many producers against a SQLite-backed Prefect, dead letters replayed after the
//! cause is fixed. All against real Prefect servers; every wait has a deadline.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{
    DEADLINE, Router, assert_exactly_once, counted_schema, deploy, post_until_accepted, runs_of,
    switchyard, wait_for_runs,
};
use serde_json::{Value, json};
use switchyard_testkit::{OwnedPrefect, PrefectServer, TempDir, free_port, unique, wait_until};

fn config(port: u16, flow: &str, extra: &str) -> String {
    format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
engine: {{queue_capacity: 32, max_consumers: 4}}
sources: [{{type: webhook, name: flood}}]
{extra}
routes:
  - name: count
    action:
      type: run_deployment
      deployment: "{flow}/counted"
      parameters: {{n: "{{{{ event.payload.n }}}}"}}
"#
    )
}

/// Posts `total` events from a thread, each until accepted (the sender's retry uses the same
/// Idempotency-Key, as a real webhook sender would).
fn flood(url: String, total: usize, accepted: Arc<AtomicUsize>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for n in 0..total {
            let key = format!("n-{n}");
            post_until_accepted(
                &url,
                &format!(r#"{{"n": {n}}}"#),
                &[("idempotency-key", &key)],
            );
            accepted.fetch_add(1, Ordering::SeqCst);
        }
    })
}

#[test]
fn router_killed_mid_flood_loses_and_duplicates_nothing() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("Killed");
    let dep = deploy(api, &flow, "counted", counted_schema());
    let dir = TempDir::new("durability");
    let port = free_port();
    let cfg = config(port, &flow, "");
    let url = format!("http://127.0.0.1:{port}/hooks/flood");
    let total = 80;
    let accepted = Arc::new(AtomicUsize::new(0));

    let mut router = Router::start(dir.path(), api, "flood.yaml", &cfg, &[]);
    router.wait_for_http(port);
    let producer = flood(url.clone(), total, Arc::clone(&accepted));
    for round in 1..=3 {
        wait_until("more events accepted", DEADLINE, || {
            (accepted.load(Ordering::SeqCst) >= round * 18).then_some(())
        });
        router.kill9();
        router = Router::start(dir.path(), api, "flood.yaml", &cfg, &[]);
        router.wait_for_http(port);
    }
    producer.join().unwrap();
    assert_exactly_once(api, dep, total);
    let resumed = router
        .logs()
        .into_iter()
        .any(|l| l["message"] == "resuming events accepted before the last stop");
    let replays = router
        .logs()
        .into_iter()
        .filter(|l| l["message"] == "flow run already existed for this event")
        .count();
    eprintln!(
        "last restart resumed pending events: {resumed}; idempotent replays seen in the last run: {replays}"
    );
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
    let (code, out, _) = switchyard(
        &["events", "list", "--status", "pending", "--json"],
        &[(
            "SWITCHYARD_JOURNAL",
            dir.path().join("journal.db").to_str().unwrap(),
        )],
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([]),
        "nothing left pending"
    );
}

#[test]
fn prefect_down_mid_flood_loses_and_duplicates_nothing() {
    let mut server = OwnedPrefect::start();
    let api = server.api_url.clone();
    let flow = unique("Outage");
    let dep = deploy(&api, &flow, "counted", counted_schema());
    let dir = TempDir::new("durability");
    let port = free_port();
    let delivery = "delivery: {max_attempts: 1000, backoff: 200ms, max_backoff: 2s}\nprefect: {max_retries: 1}";
    let cfg = config(port, &flow, delivery);
    let url = format!("http://127.0.0.1:{port}/hooks/flood");
    let total = 60;
    let accepted = Arc::new(AtomicUsize::new(0));

    let router = Router::start(dir.path(), &api, "outage.yaml", &cfg, &[]);
    router.wait_for_http(port);
    let producer = flood(url, total, Arc::clone(&accepted));
    wait_until("a first batch accepted", DEADLINE, || {
        (accepted.load(Ordering::SeqCst) >= 15).then_some(())
    });
    server.stop();
    // The outage is felt (retries logged), and the webhook keeps accepting into the journal
    // until the queue is full, then answers 503 so the sender waits.
    router.wait_for_log(&[
        ("message", "route failed, will retry"),
        ("error", "Prefect unavailable"),
    ]);
    router.wait_for_log(&[
        ("message", "event refused, sender should retry"),
        ("reason", "the event queue is full"),
    ]);
    server.restart();
    producer.join().unwrap();
    assert_exactly_once(&api, dep, total);
    let dlq = router
        .logs()
        .into_iter()
        .filter(|l| l["message"] == "route failed; event dead-lettered")
        .count();
    assert_eq!(dlq, 0, "an outage is retried, not dead-lettered");
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}

#[test]
fn many_producers_against_a_sqlite_prefect_all_land() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("Flood");
    let dep = deploy(api, &flow, "counted", counted_schema());
    let dir = TempDir::new("durability");
    let port = free_port();
    let router = Router::start(dir.path(), api, "many.yaml", &config(port, &flow, ""), &[]);
    router.wait_for_http(port);
    let url = format!("http://127.0.0.1:{port}/hooks/flood");
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let url = url.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let n = p * 25 + i;
                    post_until_accepted(
                        &url,
                        &format!(r#"{{"n": {n}}}"#),
                        &[("idempotency-key", &format!("p{n}"))],
                    );
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    assert_exactly_once(api, dep, 200);
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
    let journal = dir.path().join("journal.db");
    let (code, out, _) = switchyard(
        &["dlq", "list", "--json"],
        &[("SWITCHYARD_JOURNAL", journal.to_str().unwrap())],
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([]),
        "no failures"
    );
}

#[test]
fn dead_letters_keep_their_reason_and_replay_after_the_cause_is_fixed() {
    let api = &PrefectServer::shared().api_url;
    let flow = unique("Later");
    let dir = TempDir::new("durability");
    let port = free_port();
    let cfg = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
sources: [{{type: webhook, name: jobs}}]
routes:
  - name: job
    action:
      type: run_deployment
      deployment: "{flow}/counted"
      parameters: {{n: "{{{{ event.payload.n }}}}"}}
"#
    );
    let config_path = dir.path().join("later.yaml");
    let router = Router::start(dir.path(), api, "later.yaml", &cfg, &[]);
    router.wait_for_http(port);
    let url = format!("http://127.0.0.1:{port}/hooks/jobs");
    let missing_deployment = post_until_accepted(&url, r#"{"n": 1}"#, &[]);
    let poison = post_until_accepted(&url, r#"{"no_n": true}"#, &[]);
    router.wait_for_log(&[
        ("message", "event dead-lettered"),
        ("event_id", missing_deployment["id"].as_str().unwrap()),
    ]);
    router.wait_for_log(&[
        ("message", "event dead-lettered"),
        ("event_id", poison["id"].as_str().unwrap()),
    ]);

    let env = [
        (
            "SWITCHYARD_JOURNAL",
            dir.path().join("journal.db").to_string_lossy().into_owned(),
        ),
        ("PREFECT_API_URL", api.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out, err) = switchyard(&["dlq", "list", "--json"], &env);
    assert_eq!(code, 0, "{err}");
    let letters: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(letters.len(), 2);
    let reason_of = |id: &Value| {
        letters
            .iter()
            .find(|d| d["event_id"] == id["id"])
            .map(|d| {
                (
                    d["id"].as_i64().unwrap(),
                    d["reason"].as_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    let (missing_dl, missing_reason) = reason_of(&missing_deployment);
    assert_eq!(
        missing_reason,
        format!("deployment {flow}/counted not found")
    );
    let (poison_dl, poison_reason) = reason_of(&poison);
    assert!(
        poison_reason.contains("cannot render parameters")
            && poison_reason.contains("event.payload.n"),
        "{poison_reason}"
    );

    // Fix the cause, replay: the run is created, the dead letter resolved, the event done.
    let dep = deploy(api, &flow, "counted", counted_schema());
    let config_arg = config_path.to_str().unwrap();
    let (code, out, err) = switchyard(
        &[
            "dlq",
            "--config",
            config_arg,
            "replay",
            &missing_dl.to_string(),
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("replayed: flow run"), "{out}");
    let runs = wait_for_runs(api, dep, 1);
    assert_eq!(runs[0].parameters["n"], 1);
    let (_, out, _) = switchyard(
        &[
            "events",
            "show",
            missing_deployment["id"].as_str().unwrap(),
            "--json",
        ],
        &env,
    );
    let detail: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(detail["status"], "done");
    let kinds: Vec<&str> = detail["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dead_lettered", "run_created"]);
    // As text, with the run's page in the Prefect UI.
    let (_, text, _) = switchyard(
        &["events", "show", missing_deployment["id"].as_str().unwrap()],
        &env,
    );
    assert!(
        text.contains(&format!("/runs/flow-run/{}", runs[0].id)) && !text.contains("/api/runs"),
        "{text}"
    );

    // The poison message still fails on replay and stays open; purge resolves it.
    let (code, out, _) = switchyard(&["dlq", "--config", config_arg, "replay", "--all"], &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("#{poison_dl}: replay failed")),
        "{out}"
    );
    let (code, _, _) = switchyard(&["dlq", "purge", &poison_dl.to_string()], &env);
    assert_eq!(code, 0);
    let (_, out, _) = switchyard(&["dlq", "list", "--json"], &env);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([]));
    assert_eq!(runs_of(api, dep).len(), 1);
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}
