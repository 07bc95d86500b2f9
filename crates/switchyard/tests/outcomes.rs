//! Runs followed to their end, against the real Prefect and a real process worker running
//! the flows (tests/flows/outcome.py): every state recorded in the journal, the end counted
//! in the metrics, a webhook answering with the run's final state, and the following
//! resumed by a restarted router.

mod common;

use common::{DEADLINE, Router, Worked, flow_run, post, sample, switchyard};
use serde_json::Value;
use std::time::Duration;

use switchyard_testkit::{PrefectServer, TempDir, free_port, wait_until};

/// The states a journal recorded for an event, in order (`events show --json`).
fn states_of(journal: &std::path::Path, event_id: &str) -> (Vec<String>, Value) {
    let env = [("SWITCHYARD_JOURNAL", journal.to_str().unwrap())];
    let (code, out, err) = switchyard(&["events", "show", event_id, "--json"], &env);
    assert_eq!(code, 0, "{err}");
    let detail: Value = serde_json::from_str(&out).unwrap();
    let states = detail["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "run_state")
        .map(|d| d["detail"].as_str().unwrap().to_string())
        .collect();
    (states, detail)
}

#[test]
fn a_webhook_answers_with_the_runs_end_and_the_journal_records_each_state() {
    let server = PrefectServer::shared();
    let api = &server.api_url;
    let worked = Worked::start(api);
    let dir = TempDir::new("outcomes-webhook");
    let (port, admin_port) = (free_port(), free_port());
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin_port}", token: "outcomes-token-0123456789"}}
prefect:
  follow: {{interval: 200ms}}
sources:
  - {{type: webhook, name: finished, event: job, respond: finished, respond_timeout: 90s}}
  - {{type: webhook, name: created, event: job, respond: created}}
  - {{type: webhook, name: impatient, event: job, respond: finished, respond_timeout: 1s}}
routes:
  - name: jobs
    action:
      type: run_deployment
      deployment: {reference}
      parameters:
        n: "{{{{ event.payload.n }}}}"
        fail: "{{{{ event.payload.fail | default(false) }}}}"
        seconds: "{{{{ event.payload.seconds | default(0) }}}}"
"#,
        reference = worked.reference
    );
    let router = Router::start(dir.path(), api, "outcomes.yaml", &config, &[]);
    router.wait_for_http(port);
    let hook = |name: &str| format!("http://127.0.0.1:{port}/hooks/{name}");

    // `respond: finished` holds the answer until the run has completed...
    let (status, body) = post(
        &hook("finished"),
        r#"{"n": 1, "seconds": 2}"#,
        &[("idempotency-key", "one")],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "finished", "{body}");
    let run = &body["runs"][0];
    assert_eq!(run["state_type"], "COMPLETED", "{body}");
    assert_eq!(run["state"], "Completed", "{body}");
    assert_eq!(run["ended"], true);
    assert_eq!(run["route"], "jobs");
    let run_id = run["flow_run_id"].as_str().unwrap().to_string();
    assert!(
        run["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/runs/flow-run/{run_id}")),
        "{body}"
    );
    // ...as Prefect itself says.
    assert_eq!(
        flow_run(api, &run_id).state_type.as_deref(),
        Some("COMPLETED")
    );

    // A run that fails is answered with its failure.
    let (status, body) = post(
        &hook("finished"),
        r#"{"n": 2, "fail": true}"#,
        &[("idempotency-key", "two")],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "finished");
    assert_eq!(body["runs"][0]["state_type"], "FAILED", "{body}");
    let failed_id = body["runs"][0]["flow_run_id"].as_str().unwrap().to_string();
    assert_eq!(
        flow_run(api, &failed_id).state_type.as_deref(),
        Some("FAILED")
    );

    // The same delivery again is answered from the journal: the same run, no second one.
    let (status, again) = post(
        &hook("finished"),
        r#"{"n": 1, "seconds": 2}"#,
        &[("idempotency-key", "one")],
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["runs"][0]["flow_run_id"], run_id.as_str());
    assert_eq!(again["runs"][0]["state_type"], "COMPLETED");

    // `respond: created` answers once the run exists, before it has run.
    let (status, body) = post(&hook("created"), r#"{"n": 3}"#, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "created", "{body}");
    assert_eq!(body["runs"][0]["ended"], false, "{body}");
    let created_id = body["runs"][0]["flow_run_id"].as_str().unwrap().to_string();

    // A wait shorter than the run is a 202 with where it stands; the run goes on.
    let (status, body) = post(&hook("impatient"), r#"{"n": 4}"#, &[]);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "running", "{body}");
    assert_eq!(body["runs"][0]["ended"], false, "{body}");
    let impatient_event = body["id"].as_str().unwrap().to_string();

    // Every state each run went through is in the journal, in order, ending with its end.
    let journal = dir.path().join("journal.db");
    let (states, detail) = states_of(&journal, "finished:one");
    assert_eq!(
        states.last().map(String::as_str),
        Some("Completed"),
        "{states:?}"
    );
    assert!(
        states.iter().any(|s| s == "Running"),
        "the run was seen running: {states:?}"
    );
    assert_eq!(detail["followed"][0]["flow_run_id"], run_id.as_str());
    assert!(detail["followed"][0]["ended_at"].is_string(), "{detail}");
    let (failed_states, _) = states_of(&journal, "finished:two");
    assert_eq!(failed_states.last().map(String::as_str), Some("Failed"));
    wait_until("the impatient run to end in the journal", DEADLINE, || {
        let (s, _) = states_of(&journal, &impatient_event);
        (s.last().map(String::as_str) == Some("Completed")).then_some(())
    });
    let created_event = wait_until("the created run's event", DEADLINE, || {
        let env = [("SWITCHYARD_JOURNAL", journal.to_str().unwrap())];
        let (_, out, _) = switchyard(&["events", "list", "--source", "created", "--json"], &env);
        let body: Value = serde_json::from_str(&out).ok()?;
        body.as_array()
            .and_then(|a| a.first())
            .and_then(|e| e["id"].as_str().map(str::to_string))
    });
    wait_until("the created run to end in the journal", DEADLINE, || {
        let (s, d) = states_of(&journal, &created_event);
        (s.last().map(String::as_str) == Some("Completed")
            && d["followed"][0]["flow_run_id"] == created_id.as_str())
        .then_some(())
    });

    // The text view says it in words.
    let env = [("SWITCHYARD_JOURNAL", journal.to_str().unwrap())];
    let (_, text, _) = switchyard(&["events", "show", "finished:one"], &env);
    assert!(
        text.contains(&format!("flow run {run_id}")) && text.contains("is Completed"),
        "{text}"
    );

    // The metrics count each end once, by state, and how long the runs ran.
    let metrics = wait_until("the ends counted", DEADLINE, || {
        let text = common::rt().block_on(async {
            reqwest::Client::new()
                .get(format!("http://127.0.0.1:{admin_port}/metrics"))
                .bearer_auth("outcomes-token-0123456789")
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
        })?;
        (sample(
            &text,
            r#"switchyard_flow_runs_finished_total{route="jobs",state="completed"}"#,
        ) == 3.0)
            .then_some(text)
    });
    assert_eq!(
        sample(
            &metrics,
            r#"switchyard_flow_runs_finished_total{route="jobs",state="failed"}"#
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"switchyard_flow_run_duration_seconds_count{route="jobs"}"#
        ),
        4.0,
        "{metrics}"
    );
    router.stop(libc::SIGINT);
}

#[test]
fn a_restarted_router_follows_the_runs_the_last_one_created() {
    let server = PrefectServer::shared();
    let api = &server.api_url;
    let worked = Worked::start(api);
    let dir = TempDir::new("outcomes-restart");
    let config = format!(
        r#"
sources: [{{type: stdin, name: in}}]
routes:
  - name: jobs
    action:
      type: run_deployment
      deployment: {reference}
      parameters: {{n: "{{{{ event.payload.n }}}}"}}
"#,
        reference = worked.reference
    );
    // Killed as soon as the run exists: it never saw the run move.
    let mut router = Router::start(dir.path(), api, "restart.yaml", &config, &[]);
    router.send_line(r#"{"n": 7}"#);
    let created = router.wait_for_log(&[("message", "flow run started")]);
    let run_id = created["flow_run_id"].as_str().unwrap().to_string();
    let event_id = created["event_id"].as_str().unwrap().to_string();
    router.kill9();
    let journal = dir.path().join("journal.db");
    let (states, detail) = states_of(&journal, &event_id);
    assert!(detail["followed"][0]["ended_at"].is_null(), "{detail}");
    assert!(!states.iter().any(|s| s == "Completed"), "{states:?}");

    // The run completes while no router is up; the next one records it from the journal.
    wait_until("the run to complete in Prefect", DEADLINE, || {
        (flow_run(api, &run_id).state_type.as_deref() == Some("COMPLETED")).then_some(())
    });
    let router = Router::start(dir.path(), api, "restart.yaml", &config, &[]);
    let ended = router.wait_for_log(&[("message", "flow run state"), ("ended", "true")]);
    assert_eq!(ended["flow_run_id"], run_id.as_str());
    assert_eq!(ended["state"], "Completed");
    let (states, detail) = states_of(&journal, &event_id);
    assert_eq!(states.last().map(String::as_str), Some("Completed"));
    assert!(detail["followed"][0]["ended_at"].is_string(), "{detail}");
    // One run for the event, whatever was restarted.
    assert_eq!(common::count_runs(api, worked.deployment), 1);
    router.stop(libc::SIGINT);
}

/// `max_backlog: 3` with no worker: the route stops at three scheduled runs, the other
/// events wait in the journal, and once a worker drains the backlog every event gets its one
/// run.
#[test]
fn max_backlog_holds_new_runs_until_a_worker_drains_them() {
    let server = PrefectServer::shared();
    let api = &server.api_url;
    let mut worked = Worked::idle(api);
    let dir = TempDir::new("outcomes-backlog");
    let config = format!(
        r#"
sources: [{{type: stdin, name: in}}]
routes:
  - name: jobs
    max_backlog: 3
    action:
      type: run_deployment
      deployment: {reference}
      parameters: {{n: "{{{{ event.payload.n }}}}"}}
"#,
        reference = worked.reference
    );
    let mut router = Router::start(dir.path(), api, "backlog.yaml", &config, &[]);
    for n in 0..8 {
        router.send_line(&format!(r#"{{"n": {n}}}"#));
    }
    let held = router.wait_for_log(&[("message", "holding new runs")]);
    assert_eq!(held["max_backlog"], 3);
    let journal = dir.path().join("journal.db");
    let env = [("SWITCHYARD_JOURNAL", journal.to_str().unwrap())];
    let pending = || {
        let (_, out, _) = switchyard(&["events", "list", "--status", "pending", "--json"], &env);
        serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
    };
    // Every event is journaled; three have runs, five wait.
    wait_until("all eight events journaled", DEADLINE, || {
        (pending() == Some(5) && common::count_runs(api, worked.deployment) == 3).then_some(())
    });
    // While held, no fourth run was started.
    let counts = |r: &Router| {
        r.logs()
            .iter()
            .filter(|l| l["message"] == "flow run started")
            .count()
    };
    assert_eq!(counts(&router), 3);
    worked.start_worker();
    router.wait_for_log(&[("message", "starting runs again")]);
    wait_until("every event to have its run", DEADLINE, || {
        (common::count_runs(api, worked.deployment) == 8 && pending() == Some(0)).then_some(())
    });
    let mut ns: Vec<i64> = common::runs_of(api, worked.deployment)
        .iter()
        .map(|r| r.parameters["n"].as_i64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..8).collect::<Vec<_>>());
    router.close_stdin();
    router.stop(libc::SIGINT);
}

/// `concurrency: {key: customer, limit: 1}`: for 3 customers × 5 events, never two runs of
/// one customer at once (checked from Prefect's own start and end times), and each
/// customer's runs in the order its events arrived.
#[test]
fn per_key_concurrency_runs_one_at_a_time_per_key_in_arrival_order() {
    let server = PrefectServer::shared();
    let api = &server.api_url;
    let worked = Worked::start(api);
    let dir = TempDir::new("outcomes-per-key");
    let config = format!(
        r#"
prefect: {{follow: {{interval: 200ms}}}}
engine: {{max_consumers: 16}}
sources: [{{type: stdin, name: in}}]
routes:
  - name: jobs
    concurrency: {{key: "{{{{ event.payload.customer }}}}", limit: 1}}
    action:
      type: run_deployment
      deployment: {reference}
      parameters: {{n: "{{{{ event.payload.n }}}}", seconds: 1}}
"#,
        reference = worked.reference
    );
    let mut router = Router::start(dir.path(), api, "per-key.yaml", &config, &[]);
    for n in 0..15 {
        router.send_line(&format!(r#"{{"n": {n}, "customer": "c{}"}}"#, n % 3));
        // One at a time, so arrival order is the order sent.
        wait_until("the event journaled", DEADLINE, || {
            (router
                .logs()
                .iter()
                .filter(|l| l["message"] == "event received")
                .count()
                > n)
                .then_some(())
        });
    }
    let runs = wait_until("15 completed runs", Duration::from_secs(300), || {
        let runs = common::runs_of(api, worked.deployment);
        (runs.len() == 15
            && runs
                .iter()
                .all(|r| r.state_type.as_deref() == Some("COMPLETED")))
        .then_some(runs)
    });
    let time =
        |t: &Option<String>| chrono::DateTime::parse_from_rfc3339(t.as_deref().unwrap()).unwrap();
    for c in 0..3 {
        let mut mine: Vec<_> = runs
            .iter()
            .filter(|r| r.parameters["n"].as_i64().unwrap() % 3 == c)
            .map(|r| {
                (
                    time(&r.start_time),
                    time(&r.end_time),
                    r.parameters["n"].as_i64().unwrap(),
                )
            })
            .collect();
        mine.sort();
        let order: Vec<i64> = mine.iter().map(|m| m.2).collect();
        let sent: Vec<i64> = (0..15).filter(|n| n % 3 == c).collect();
        assert_eq!(order, sent, "customer c{c}'s runs in arrival order");
        for pair in mine.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "customer c{c}: run n={} started before n={} ended",
                pair[1].2,
                pair[0].2
            );
        }
    }
    // The waits were real: later events of a key waited for its run.
    assert!(
        router
            .logs()
            .iter()
            .any(|l| l["message"] == "concurrency key busy; the event waits"),
        "no event waited"
    );
    router.close_stdin();
    router.stop(libc::SIGINT);
}
