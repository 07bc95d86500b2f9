//! Shadow routes against a real Prefect: a `mode: shadow` route decides, renders and checks
//! its parameters against the deployment's schema, records would-runs (journal, API,
//! metrics) and creates no run (counted in Prefect); with `mode: shadow` removed the route
//! starts runs from the next event on; `run --shadow` makes every route a shadow.

mod common;

use common::{DEADLINE, Router, count_runs, deploy, post};
use serde_json::{Value, json};
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique, wait_until};

fn get(url: &str) -> Value {
    common::rt().block_on(async {
        let r = reqwest::get(url).await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    })
}

fn metrics(base: &str) -> String {
    common::rt().block_on(async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// The decision `route` recorded for event `id`, once it is there.
fn decision(base: &str, id: &str, route: &str) -> Value {
    wait_until(&format!("{route}'s decision for {id}"), DEADLINE, || {
        let e = common::rt().block_on(async {
            reqwest::get(format!("{base}/api/v1/events/{id}"))
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        })?;
        (e["status"] != "pending")
            .then(|| {
                e["decisions"]
                    .as_array()?
                    .iter()
                    .rev()
                    .find(|d| d["route"] == route)
                    .cloned()
            })
            .flatten()
    })
}

#[test]
fn a_shadow_route_records_what_it_would_run_and_runs_nothing_until_it_goes_live() {
    let api = PrefectServer::shared().api_url.clone();
    let flow = unique("Shadowed");
    let dep = deploy(
        &api,
        &flow,
        "d",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
    );
    let (port, admin) = (free_port(), free_port());
    let config = |mode: &str| {
        format!(
            r#"
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin}"}}
sources: [{{type: webhook, name: h}}]
routes:
  - name: candidate
    {mode}
    action: {{type: run_deployment, deployment: "{flow}/d", parameters: {{n: "{{{{ event.payload.n }}}}"}}, flow_run_name: "n-{{{{ event.payload.n }}}}"}}
"#
        )
    };
    let dir = TempDir::new("shadow");
    let hook = format!("http://127.0.0.1:{port}/hooks/h");
    let base = format!("http://127.0.0.1:{admin}");

    let router = Router::start(dir.path(), &api, "c.yaml", &config("mode: shadow"), &[]);
    router.wait_for_http(port);
    router.wait_for_http(admin);
    for (n, key) in [("1", "one"), ("2", "two"), ("\"x\"", "bad")] {
        let (status, body) = post(
            &hook,
            &format!("{{\"n\": {n}}}"),
            &[("idempotency-key", key)],
        );
        assert_eq!(status, 202, "{body}");
    }
    let one = decision(&base, "h:one", "candidate");
    assert_eq!(one["kind"], "would_run", "{one}");
    assert_eq!(one["deployment"], format!("{flow}/d"));
    assert_eq!(one["flow_run_name"], "n-1");
    let detail: Value = serde_json::from_str(one["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["parameters"], json!({"n": 1}));
    assert_eq!(detail["idempotency_key"], "candidate:h:one");
    assert_eq!(decision(&base, "h:two", "candidate")["kind"], "would_run");
    // The schema is checked in shadow too: what would fail live fails here, with the reason.
    let bad = decision(&base, "h:bad", "candidate");
    assert_eq!(bad["kind"], "dead_lettered", "{bad}");
    assert!(bad["detail"].as_str().unwrap().contains("schema"), "{bad}");
    let text = metrics(&base);
    assert!(
        text.contains(r#"switchyard_route_decisions_total{route="candidate",decision="shadow"} 2"#),
        "{text}"
    );
    let routes = get(&format!("{base}/api/v1/routes"));
    assert_eq!(routes["routes"][0]["decisions"]["shadow"], 2, "{routes}");
    assert_eq!(count_runs(&api, dep), 0, "a shadow route creates no run");
    assert_eq!(router.stop(libc::SIGTERM), Some(0));

    // Live: runs from the next event on; the shadowed events stay settled.
    let router = Router::start(dir.path(), &api, "c.yaml", &config(""), &[]);
    router.wait_for_http(port);
    router.wait_for_http(admin);
    let (status, _) = post(&hook, r#"{"n": 3}"#, &[("idempotency-key", "three")]);
    assert_eq!(status, 202);
    let runs = common::wait_for_runs(&api, dep, 1);
    assert_eq!(runs[0].parameters["n"], 3);
    assert_eq!(
        decision(&base, "h:three", "candidate")["kind"],
        "run_created"
    );
    assert_eq!(router.stop(libc::SIGTERM), Some(0));

    // `run --shadow`: the same live config, every route a shadow.
    let router = Router::start(dir.path(), &api, "c.yaml", &config(""), &["--shadow"]);
    router.wait_for_http(port);
    router.wait_for_http(admin);
    router.wait_for_log(&[("message", "shadow routes")]);
    let (status, _) = post(&hook, r#"{"n": 4}"#, &[("idempotency-key", "four")]);
    assert_eq!(status, 202);
    assert_eq!(decision(&base, "h:four", "candidate")["kind"], "would_run");
    assert_eq!(count_runs(&api, dep), 1, "still only the live run");
    assert_eq!(router.stop(libc::SIGTERM), Some(0));

    // Replay over the journal with the live config: a dry run says what would run now
    // beside what was decided then (the shadowed events differ), and starts nothing.
    let config_path = dir.path().join("c.yaml");
    std::fs::write(&config_path, config("")).unwrap();
    let journal = dir.path().join("journal.db");
    let args = |dry: bool| {
        let mut a = vec![
            "replay".to_string(),
            "--config".into(),
            config_path.to_str().unwrap().into(),
            "--journal".into(),
            journal.to_str().unwrap().into(),
        ];
        if dry {
            a.push("--dry-run".into());
        }
        a
    };
    let env = [("PREFECT_API_URL", api.as_str())];
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        common::switchyard(&a, &env)
    };
    let (code, out, err) = run(args(true));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("5 event(s) from the journal"), "{out}");
    assert!(
        out.contains("h:one [h.received] candidate: now would run")
            && out.contains("then would run"),
        "{out}"
    );
    assert!(
        !out.contains("h:three"),
        "h:three ran then and would now: {out}"
    );
    assert!(out.contains("2 decision(s) the same, 3 different"), "{out}");
    assert_eq!(count_runs(&api, dep), 1, "a dry run starts nothing");
    // Live: the runs the shadow only recorded start now; h:three's run is found, not doubled;
    // the event whose parameters never fit fails again.
    let (code, out, err) = run(args(false));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("3 run(s) started, 1 already existed, 1 failed"),
        "{out}"
    );
    assert_eq!(count_runs(&api, dep), 4);
    let (_, out, _) = run(args(false));
    assert!(
        out.contains("0 run(s) started, 4 already existed, 1 failed"),
        "{out}"
    );
    assert_eq!(
        count_runs(&api, dep),
        4,
        "a second replay starts nothing new"
    );
}
