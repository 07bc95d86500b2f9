//! The admin server against the `switchyard` binary and a Prefect server this test owns: the
//! token is required (and a wrong one refused), metrics move by exactly the events sent, an
//! event's API view has every route's decision with its reason and the run with its state
//! and Prefect UI address, a dead letter replayed through the API creates its run, and
//! `/readyz` turns 503 while Prefect is stopped and 200 when it is back.

mod common;

use common::{Router, sample};
use serde_json::{Value, json};
use switchyard_testkit::{OwnedPrefect, TempDir, free_port, unique, wait_until};

const TOKEN: &str = "admin-token-0123456789abcdef";

/// `(status, body)` of an admin request.
fn admin(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    common::rt().block_on(async {
        let client = reqwest::Client::new();
        let mut req = match method {
            "POST" => client.post(url),
            "DELETE" => client.delete(url),
            _ => client.get(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    })
}

fn json_of(url: &str) -> Value {
    let (status, body) = admin("GET", url, Some(TOKEN));
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_admin_server_counts_explains_replays_and_knows_when_prefect_is_away() {
    let mut prefect = OwnedPrefect::start();
    let api = prefect.api_url.clone();
    let flow = unique("Observed");
    let dep = common::deploy(&api, &flow, "ok", json!({}));
    let (port, admin_port) = (free_port(), free_port());
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin_port}", token: "{TOKEN}"}}
prefect: {{max_retries: 1}}
sources: [{{type: webhook, name: h}}]
routes:
  - name: ok
    when: event.payload.kind == "ok"
    action: {{type: run_deployment, deployment: "{flow}/ok", flow_run_name: "ok-{{{{ event.payload.n }}}}"}}
  - name: later
    when: event.payload.kind == "later"
    action: {{type: run_deployment, deployment: "{flow}/later"}}
  - name: many
    trigger: {{type: event, expect: [h.received], threshold: 100, within: 1h}}
    action: {{type: run_deployment, deployment: "{flow}/ok"}}
"#
    );
    let dir = TempDir::new("observe");
    let router = Router::start(dir.path(), &api, "observe.yaml", &config, &[]);
    router.wait_for_http(port);
    router.wait_for_http(admin_port);
    let base = format!("http://127.0.0.1:{admin_port}");

    // The token: needed everywhere but /healthz, and a wrong one is refused.
    assert_eq!(admin("GET", &format!("{base}/healthz"), None).0, 200);
    assert_eq!(admin("GET", &format!("{base}/metrics"), None).0, 401);
    assert_eq!(
        admin("GET", &format!("{base}/metrics"), Some("wrong")).0,
        401
    );
    assert_eq!(
        admin("GET", &format!("{base}/api/v1/events"), Some("wrong")).0,
        401
    );

    let hook = format!("http://127.0.0.1:{port}/hooks/h");
    for (body, key) in [
        (r#"{"kind": "ok", "n": 1}"#, "one"),
        (r#"{"kind": "ok", "n": 2}"#, "two"),
        (r#"{"kind": "later"}"#, "three"),
    ] {
        let (status, answer) = common::post(&hook, body, &[("idempotency-key", key)]);
        assert_eq!(status, 202, "{answer}");
    }
    assert_eq!(common::post(&hook, "{not json", &[]).0, 400);
    common::wait_for_runs(&api, dep, 2);
    let letters = wait_until("the dead letter", common::DEADLINE, || {
        let v = json_of(&format!("{base}/api/v1/dead-letters"));
        let l = v["dead_letters"].as_array()?.clone();
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["route"], "later");

    // Metrics move by exactly what was sent.
    let metrics = wait_until("every event settled", common::DEADLINE, || {
        let (_, text) = admin("GET", &format!("{base}/metrics"), Some(TOKEN));
        (sample(&text, "switchyard_journal_pending_events") == 0.0
            && sample(
                &text,
                r#"switchyard_route_decisions_total{route="later",decision="dead"}"#,
            ) == 1.0)
            .then_some(text)
    });
    for (series, want) in [
        (r#"switchyard_events_received_total{source="h"}"#, 4.0),
        (r#"switchyard_events_accepted_total{source="h"}"#, 3.0),
        (
            r#"switchyard_events_refused_total{source="h",reason="malformed"}"#,
            1.0,
        ),
        (
            r#"switchyard_route_decisions_total{route="ok",decision="ran"}"#,
            2.0,
        ),
        (
            r#"switchyard_route_decisions_total{route="ok",decision="skipped"}"#,
            1.0,
        ),
        (
            r#"switchyard_route_decisions_total{route="later",decision="skipped"}"#,
            2.0,
        ),
        (r#"switchyard_flow_runs_created_total{route="ok"}"#, 2.0),
        ("switchyard_dead_letters_open", 1.0),
        ("switchyard_queue_depth", 0.0),
        (r#"switchyard_source_up{source="h"}"#, 1.0),
        ("switchyard_event_to_run_seconds_count", 2.0),
    ] {
        assert_eq!(sample(&metrics, series), want, "{series} in\n{metrics}");
    }
    assert!(
        sample(
            &metrics,
            r#"switchyard_prefect_requests_total{operation="create_flow_run",status="201"}"#
        ) >= 2.0,
        "{metrics}"
    );
    assert!(!metrics.contains("h:one"), "no event id in a label");

    // An event's view: every route's decision and why, and its run, live from Prefect.
    let list = json_of(&format!("{base}/api/v1/events?source=h&route=ok&limit=10"));
    assert_eq!(list["events"].as_array().map(Vec::len), Some(3));
    let page = json_of(&format!("{base}/api/v1/events?source=h&limit=2"));
    let next = page["next"].as_str().unwrap().to_string();
    let rest = json_of(&format!(
        "{base}/api/v1/events?source=h&limit=2&cursor={next}"
    ));
    assert_eq!(rest["events"].as_array().map(Vec::len), Some(1), "{rest}");
    let found = json_of(&format!("{base}/api/v1/events?q=later"));
    assert_eq!(found["events"][0]["id"], "h:three", "{found}");
    let e = json_of(&format!("{base}/api/v1/events/h:one"));
    let decisions = e["decisions"].as_array().unwrap();
    let of = |route: &str| {
        decisions
            .iter()
            .find(|d| d["route"] == route)
            .unwrap_or_else(|| panic!("no decision of {route}: {e}"))
            .clone()
    };
    assert_eq!(of("ok")["kind"], "run_created");
    let run_id = of("ok")["flow_run_id"].as_str().unwrap().to_string();
    assert_eq!(of("later")["kind"], "skipped");
    assert!(
        of("later")["detail"].as_str().unwrap().contains("is false"),
        "{e}"
    );
    assert_eq!(e["runs"][0]["id"], run_id.as_str());
    assert_eq!(e["runs"][0]["state"]["type"], "SCHEDULED", "{e}");
    let url = e["runs"][0]["url"].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/runs/flow-run/{run_id}")) && !url.contains("/api/"),
        "{url}"
    );
    assert_eq!(
        admin("GET", &format!("{base}/api/v1/events/nope"), Some(TOKEN)).0,
        404
    );

    // The missing deployment appears; the dead letter replayed through the API runs.
    let later = common::deploy(&api, &flow, "later", json!({}));
    let id = letters[0]["id"].as_i64().unwrap();
    let (status, body) = admin(
        "POST",
        &format!("{base}/api/v1/dead-letters/{id}/replay"),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("replayed: flow run"), "{body}");
    assert_eq!(common::wait_for_runs(&api, later, 1).len(), 1);
    let (_, text) = admin("GET", &format!("{base}/metrics"), Some(TOKEN));
    assert_eq!(sample(&text, "switchyard_dead_letters_open"), 0.0);
    assert_eq!(
        admin(
            "DELETE",
            &format!("{base}/api/v1/dead-letters/{id}"),
            Some(TOKEN)
        )
        .0,
        409,
        "already resolved"
    );
    let routes = json_of(&format!("{base}/api/v1/routes"));
    assert_eq!(routes["routes"][0]["decisions"]["ran"], 2);
    // The overview counts what the metrics count.
    let o = json_of(&format!("{base}/api/v1/overview"));
    assert_eq!(o["sources"][0]["name"], "h", "{o}");
    assert_eq!(o["sources"][0]["received"], 4, "{o}");
    assert_eq!(o["sources"][0]["accepted"], 3, "{o}");
    assert_eq!(o["sources"][0]["refused"], 1, "{o}");
    assert_eq!(o["prefect"]["healthy"], true, "{o}");
    assert_eq!(o["journal"]["dead_letters_open"], 0, "{o}");
    // The OpenAPI document names every endpoint, and the UI's page needs no token.
    let doc = json_of(&format!("{base}/api/v1/openapi.json"));
    for path in [
        "/api/v1/events",
        "/api/v1/events/{id}",
        "/api/v1/dead-letters/{id}/replay",
        "/api/v1/tap",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} in {doc}");
    }
    let (status, page) = admin("GET", &format!("{base}/"), None);
    assert_eq!(status, 200);
    assert!(page.contains("/ui/app.js"), "{page}");
    // The trigger's open window: one bucket holding the three events so far.
    let many = &routes["routes"][2];
    assert_eq!(many["kind"], "stateful", "{routes}");
    assert_eq!(many["decisions"]["absorbed"], 3, "{routes}");
    assert_eq!(many["state"]["open_buckets"], 1, "{routes}");
    assert_eq!(many["state"]["buckets"][0]["count"], 3, "{routes}");
    assert!(many["state"]["next_deadline"].is_string(), "{routes}");

    // Readiness follows Prefect.
    let ready = |want: u16| {
        wait_until(&format!("/readyz {want}"), common::DEADLINE, || {
            let (status, body) = admin("GET", &format!("{base}/readyz"), Some(TOKEN));
            (status == want).then_some(body)
        })
    };
    ready(200);
    prefect.stop();
    let body = ready(503);
    assert!(body.contains("prefect"), "{body}");
    prefect.restart();
    ready(200);
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}

#[test]
fn switchyard_tap_prints_each_decision_as_it_happens() {
    use std::io::BufRead as _;
    let api = switchyard_testkit::PrefectServer::shared().api_url.clone();
    let flow = unique("Tapped");
    let dep = common::deploy(&api, &flow, "ok", json!({}));
    let (port, admin_port) = (free_port(), free_port());
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin_port}"}}
sources: [{{type: webhook, name: h}}]
routes:
  - name: ok
    action: {{type: run_deployment, deployment: "{flow}/ok", flow_run_name: "tapped-{{{{ event.payload.n }}}}"}}
  - name: quiet
    when: "false"
    action: {{type: run_deployment, deployment: "{flow}/ok"}}
"#
    );
    let dir = TempDir::new("tap");
    let router = Router::start(dir.path(), &api, "tap.yaml", &config, &[]);
    router.wait_for_http(admin_port);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args([
        "tap",
        "--admin",
        &format!("http://127.0.0.1:{admin_port}"),
        "--route",
        "ok",
    ])
    .env_remove("SWITCHYARD_ADMIN_TOKEN")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut tap = switchyard_testkit::ChildGuard::spawn(&mut cmd).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = tap.child().stdout.take().unwrap();
    let stderr = tap.child().stderr.take().unwrap();
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    let mut wait_for = |want: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + common::DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("not seen within the deadline; saw {seen:?}"),
            }
        }
    };
    wait_for(&|l| l.starts_with("tapping "));
    let hook = format!("http://127.0.0.1:{port}/hooks/h");
    let (status, _) = common::post(&hook, r#"{"n": 7}"#, &[("idempotency-key", "tap-1")]);
    assert_eq!(status, 202);
    let line = wait_for(&|l| l.contains("h/h:tap-1"));
    assert!(
        line.contains(" ok → ran run ") && line.contains("tapped-7"),
        "{line}"
    );
    assert_eq!(common::wait_for_runs(&api, dep, 1).len(), 1);
    assert!(
        !seen.iter().any(|l| l.contains("quiet")),
        "--route ok shows no other route: {seen:?}"
    );
    tap.signal(libc::SIGINT);
    assert_eq!(tap.wait_exit(std::time::Duration::from_secs(10)), Some(0));
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}
