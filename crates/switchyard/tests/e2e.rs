//! End to end: the `switchyard` binary, driven as a user would (stdin, HTTP, signals), against
//! a real Prefect server started by the testkit. Every wait is a condition with a deadline.

mod common;

use std::path::Path;

use common::{DEADLINE, Router, post};
use serde_json::{Value, json};
use switchyard_prefect::FlowRun;
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique};
use uuid::Uuid;

fn api() -> &'static str {
    &PrefectServer::shared().api_url
}

fn deploy(flow: &str, deployment: &str, schema: Value) -> Uuid {
    common::deploy(api(), flow, deployment, schema)
}

fn runs_of(deployment: Uuid) -> Vec<FlowRun> {
    common::runs_of(api(), deployment)
}

fn wait_for_runs(deployment: Uuid, n: usize) -> Vec<FlowRun> {
    common::wait_for_runs(api(), deployment, n)
}

/// URL, body, headers.
type Request<'a> = (String, String, Vec<(&'a str, &'a str)>);

fn start(dir: &Path, name: &str, config: &str, extra: &[&str]) -> Router {
    Router::start(dir, api(), name, config, extra)
}

/// The original prefect-event-router's README flow, verbatim: its JSON config, its messages on
/// stdin, `PREFECT_API_URL` from the environment, running until SIGINT.
#[test]
fn original_router_config_and_messages_run_exactly_the_named_deployments() {
    let plain = deploy(
        "Test Flow",
        "integration-test",
        json!({"type": "object", "properties": {}}),
    );
    let with_params = deploy(
        "Test Flow with Params",
        "integration-test",
        json!({"type": "object", "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}, "required": ["name"]}),
    );
    let dir = TempDir::new("e2e");
    let mut router = start(
        dir.path(),
        "config.json",
        r#"{"threads":[{"publisher_type":"StdInput"}]}"#,
        &[],
    );
    router.send_line(
        r#"{"flow_name": "Test Flow", "deployment_name": "integration-test", "payload": {}}"#,
    );
    router.send_line("this is not json");
    router.send_line("");
    router.send_line(r#"{"flow_name": "Test Flow with Params", "deployment_name": "integration-test", "payload": {"name": "Marvin", "count": 2}}"#);
    router.send_line(
        r#"{"flow_name": "Test Flow", "deployment_name": "no-such-deployment", "payload": {}}"#,
    );
    router.send_line(r#"{"deployment_name": "integration-test"}"#);

    let runs = wait_for_runs(with_params, 1);
    assert_eq!(
        runs[0].parameters,
        *json!({"name": "Marvin", "count": 2}).as_object().unwrap()
    );
    let plain_runs = wait_for_runs(plain, 1);
    assert!(
        plain_runs[0]
            .tags
            .contains(&"prefect-event-router".to_string()),
        "{:?}",
        plain_runs[0].tags
    );

    router.wait_for_log(&[
        ("message", "malformed message, skipped"),
        ("line", "2"),
        ("error", "not valid JSON"),
    ]);
    router.wait_for_log(&[
        ("message", "malformed message, skipped"),
        ("line", "6"),
        ("error", "missing field `flow_name`"),
    ]);
    router.wait_for_log(&[
        ("message", "route failed"),
        ("error", "deployment Test Flow/no-such-deployment not found"),
        ("retryable", "false"),
    ]);
    let started = router.wait_for_log(&[
        ("message", "flow run started"),
        ("deployment", "Test Flow with Params/integration-test"),
    ]);
    assert_eq!(started["flow_run_id"], runs[0].id.to_string());
    assert_eq!(started["flow_run_name"], runs[0].name);

    // Still serving after the bad input; exact names: "Test Flow" never started the other one.
    router.send_line(
        r#"{"flow_name": "Test Flow", "deployment_name": "integration-test", "payload": {}}"#,
    );
    wait_for_runs(plain, 2);
    assert_eq!(runs_of(with_params).len(), 1);
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}

#[test]
fn webhook_events_become_runs_with_typed_templated_parameters() {
    let flow = unique("Orders");
    let dep = deploy(
        &flow,
        "from-hook",
        json!({"type": "object", "additionalProperties": false, "properties": {
            "order_id": {"type": "integer"}, "amount": {"type": "number"}, "customer": {"type": "string"},
            "lines": {"type": "array"}, "note": {"type": "string"}},
            "required": ["order_id", "amount"]}),
    );
    let port = free_port();
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}", max_body_bytes: 2048}}
sources:
  - {{type: webhook, name: orders, event: order.created}}
routes:
  - name: big-orders
    when: event.payload.amount > 100
    action:
      type: run_deployment
      deployment: "{flow}/from-hook"
      flow_run_name: "order-{{{{ event.payload.id }}}}"
      parameters:
        order_id: "{{{{ event.payload.id }}}}"
        amount: "{{{{ event.payload.amount }}}}"
        customer: "{{{{ event.payload.customer.name | upper }}}}"
        lines: "{{{{ event.payload.lines }}}}"
        note: "{{{{ event.name }}}} via {{{{ event.source }}}}"
"#
    );
    let dir = TempDir::new("e2e");
    let router = start(dir.path(), "webhook.yaml", &config, &[]);
    router.wait_for_http(port);
    let hook = format!("http://127.0.0.1:{port}/hooks/orders");

    // Malformed, oversized, unknown and valid requests at once.
    let valid = r#"{"id": 42, "amount": 120.5, "customer": {"name": "Ada"}, "lines": [{"sku": "A", "qty": 2}]}"#;
    let big = format!(
        r#"{{"id": 1, "amount": 500, "pad": "{}"}}"#,
        "x".repeat(4096)
    );
    let reqs: Vec<Request> = vec![
        (
            hook.clone(),
            valid.to_string(),
            vec![("idempotency-key", "order-42")],
        ),
        (hook.clone(), "{\"id\": 7, \"amount\":".to_string(), vec![]),
        (hook.clone(), big.clone(), vec![]),
        (
            format!("http://127.0.0.1:{port}/hooks/nope"),
            "{}".to_string(),
            vec![],
        ),
        (
            hook.clone(),
            r#"{"id": 5, "amount": 5}"#.to_string(),
            vec![],
        ),
        (
            hook.clone(),
            valid.to_string(),
            vec![("idempotency-key", "order-42")],
        ),
    ];
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = reqs
            .iter()
            .map(|(u, b, h)| s.spawn(move || post(u, b, h)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [202, 400, 413, 404, 202, 202], "{answers:?}");
    assert_eq!(answers[0].1["id"], "orders:order-42");

    let runs = wait_for_runs(dep, 1);
    let run = &runs[0];
    assert_eq!(run.name, "order-42");
    // The run says where it came from (Prefect 3 labels), and carries the `switchyard` tag.
    assert_eq!(run.labels["switchyard.event.id"], "orders:order-42");
    assert_eq!(run.labels["switchyard.route"], "big-orders");
    assert_eq!(run.labels["switchyard.source"], "orders");
    assert!(
        run.tags.contains(&"switchyard".to_string()),
        "{:?}",
        run.tags
    );
    assert_eq!(
        Value::Object(run.parameters.clone()),
        json!({"order_id": 42, "amount": 120.5, "customer": "ADA", "lines": [{"sku": "A", "qty": 2}], "note": "order.created via orders"})
    );
    // The redelivered event (same Idempotency-Key) found the same run instead of a second
    // one: either it came after the first was done and Prefect's idempotency key returned the
    // run, or it came while the first was in hand and ended with it.
    let run_id = run.id.to_string();
    switchyard_testkit::wait_until("the redelivery to be recognised", common::DEADLINE, || {
        router
            .logs()
            .iter()
            .any(|l| {
                (l["message"] == "flow run already existed for this event"
                    && l["flow_run_id"] == run_id.as_str())
                    || (l["message"] == "event already in hand; this delivery ends with it"
                        && l["event_id"] == "orders:order-42")
                    || (l["message"] == "event already settled; redelivery acknowledged"
                        && l["event_id"] == "orders:order-42")
            })
            .then_some(())
    });
    router.wait_for_log(&[("message", "request for an unknown hook"), ("hook", "nope")]);
    assert_eq!(
        runs_of(dep).len(),
        1,
        "the small order is skipped and the replay is not a new run"
    );
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

#[test]
fn unknown_deployments_and_rejected_parameters_are_reported_while_the_router_keeps_serving() {
    let flow = unique("Strict");
    let dep = deploy(
        &flow,
        "strict",
        json!({"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}),
    );
    let port = free_port();
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
sources: [{{type: webhook, name: jobs}}]
routes:
  - name: run-job
    action:
      type: run_deployment
      deployment: "{{{{ event.payload.flow }}}}/strict"
      parameters: {{count: "{{{{ event.payload.count }}}}"}}
"#
    );
    let dir = TempDir::new("e2e");
    let router = start(dir.path(), "strict.yaml", &config, &[]);
    router.wait_for_http(port);
    let hook = format!("http://127.0.0.1:{port}/hooks/jobs");

    let (status, unknown) = post(&hook, r#"{"flow": "No Such Flow", "count": 1}"#, &[]);
    assert_eq!(status, 202);
    let (_, rejected) = post(
        &hook,
        &format!(r#"{{"flow": "{flow}", "count": "three"}}"#),
        &[],
    );
    let (_, missing) = post(&hook, &format!(r#"{{"flow": "{flow}"}}"#), &[]);
    let (_, good) = post(&hook, &format!(r#"{{"flow": "{flow}", "count": 3}}"#), &[]);

    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    router.wait_for_log(&[
        ("event_id", &id(&unknown)),
        ("error", "deployment No Such Flow/strict not found"),
    ]);
    router.wait_for_log(&[
        ("event_id", &id(&rejected)),
        // Checked before the call: the schema's words, no 409 round trip.
        ("error", "parameters do not match the deployment's schema"),
        ("error", r#"/count: "three" is not of type "integer""#),
        ("retryable", "false"),
    ]);
    router.wait_for_log(&[
        ("event_id", &id(&missing)),
        ("error", "cannot render parameters"),
        ("error", "event.payload.count"),
    ]);
    router.wait_for_log(&[("event_id", &id(&good)), ("message", "flow run started")]);
    let runs = wait_for_runs(dep, 1);
    assert_eq!(runs[0].parameters["count"], 3);
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}

#[test]
fn stdin_json_lines_with_exit_when_sources_end() {
    let flow = unique("Lines");
    let dep = deploy(
        &flow,
        "lines",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
    );
    let config = format!(
        r#"
sources: [{{type: stdin, name: console}}]
routes:
  - name: odd
    when: event.payload.n is odd
    action: {{type: run_deployment, deployment: "{flow}/lines", parameters: {{n: "{{{{ event.payload.n }}}}"}}}}
"#
    );
    let dir = TempDir::new("e2e");
    let mut router = start(
        dir.path(),
        "lines.yaml",
        &config,
        &["--exit-when-sources-end"],
    );
    for n in 1..=5 {
        router.send_line(&format!(r#"{{"n": {n}}}"#));
    }
    router.close_stdin();
    assert_eq!(router.process.wait_exit(DEADLINE), Some(0));
    let mut ns: Vec<i64> = runs_of(dep)
        .iter()
        .map(|r| r.parameters["n"].as_i64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(
        ns,
        [1, 3, 5],
        "all accepted events were finished before exit"
    );
}

/// The demo's flows, deployed once per test binary as `scripts/demo.sh` deploys them
/// (`flows/deploy.py` to a process pool): the flows' real signatures become the deployments'
/// parameter schemas. Returns the ids of `greet/from-switchyard` and
/// `process-order/from-switchyard`.
fn demo_flows() -> (Uuid, Uuid) {
    static DEPLOYED: std::sync::OnceLock<(Uuid, Uuid)> = std::sync::OnceLock::new();
    *DEPLOYED.get_or_init(|| {
        let root = switchyard_testkit::workspace_root();
        let pool = unique("demo-pool");
        let (status, body) = post(
            &format!("{}/work_pools/", api()),
            &json!({"name": pool, "type": "process"}).to_string(),
            &[],
        );
        assert!(status == 201 || status == 200, "{status} {body}");
        let home = TempDir::new("demo-deploy");
        let out = std::process::Command::new(root.join(".prefect-venv/bin/python"))
            .arg("deploy.py")
            .arg(&pool)
            .current_dir(root.join("flows"))
            .env("PREFECT_API_URL", api())
            .env("PREFECT_HOME", home.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        common::rt().block_on(async {
            let client = common::prefect(api());
            let id = |name: &str| name.parse::<switchyard_prefect::DeploymentRef>().unwrap();
            let greet = client
                .resolve(&id("greet/from-switchyard"))
                .await
                .unwrap()
                .id;
            let order = client
                .resolve(&id("process-order/from-switchyard"))
                .await
                .unwrap()
                .id;
            (greet, order)
        })
    })
}

/// The examples agree with the demo's flows: `check --online` passes on every example that
/// runs the demo's deployments.
#[test]
fn the_examples_pass_check_online_against_the_demo_flows() {
    demo_flows();
    let root = switchyard_testkit::workspace_root();
    for name in [
        "demo.yaml",
        "webhook.yaml",
        "stdin.yaml",
        "triggers.yaml",
        "brokers.yaml",
        "outcomes.yaml",
    ] {
        let path = root.join("examples").join(name);
        let (code, out, err) = common::switchyard(
            &["check", "--online", path.to_str().unwrap()],
            &[("PREFECT_API_URL", api())],
        );
        assert!(
            code == 0 && out.contains("OK, online checks passed"),
            "{name}: {out}{err}"
        );
        assert!(out.contains("deployment found"), "{name}: {out}");
        // The same for machines.
        let (code, out, err) = common::switchyard(
            &["check", "--online", "--json", path.to_str().unwrap()],
            &[("PREFECT_API_URL", api())],
        );
        assert_eq!(code, 0, "{name}: {err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["prefect"]["ok"], true, "{report}");
        let routes = report["routes"].as_array().unwrap();
        assert!(!routes.is_empty());
        for r in routes {
            assert!(r["deployment_id"].is_string(), "{name}: {r}");
            assert_eq!(r["problems"], json!([]), "{name}: {r}");
        }
    }
}

/// `examples/webhook.yaml` as its header comment says: run it, post the order, get the run.
#[test]
fn the_webhook_example_starts_the_run_its_comment_promises() {
    let (_, order) = demo_flows();
    let root = switchyard_testkit::workspace_root();
    let text = std::fs::read_to_string(root.join("examples/webhook.yaml")).unwrap();
    // The README's request, as the example's comment has it.
    let body = r#"{"id": 42, "amount": 120.5, "customer": {"name": "Ada"}}"#;
    assert!(text.contains(body), "the example's comment changed");
    let dir = TempDir::new("webhook-example");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let router = Router::start_env(
        dir.path(),
        api(),
        "webhook.yaml",
        &text,
        &[],
        &[("SWITCHYARD_LISTEN", &listen)],
    );
    router.wait_for_http(port);
    let (status, answer) = post(
        &format!("http://{listen}/hooks/orders"),
        body,
        &[("content-type", "application/json")],
    );
    assert_eq!(status, 202, "{answer}");
    let runs = wait_for_runs(order, 1);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].name, "order-42");
    assert_eq!(
        Value::Object(runs[0].parameters.clone()),
        json!({"order_id": 42, "amount": 120.5, "customer": "Ada", "note": "order 42 from orders"})
    );
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}

/// The README's shell blocks: each is marked `<!-- README test: runs -->` (run here, as
/// written, in a scratch directory with `examples/`, the binary on `PATH` and this binary's
/// Prefect — with the demo's flows — in place of `127.0.0.1:4200`) or `<!-- README test:
/// covered by NAME, ... -->` naming the tests that do the same (each must exist).
#[test]
fn the_readme_commands_work_as_written() {
    let (greet, _) = demo_flows();
    let root = switchyard_testkit::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let mut tests = String::new();
    for dir in ["crates/switchyard/tests", "crates/switchyard-core/tests"] {
        for e in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            tests.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    let scratch = TempDir::new("readme");
    std::os::unix::fs::symlink(root.join("examples"), scratch.path().join("examples")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_switchyard"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (mut ran, mut covered) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        if *line != "```sh" {
            continue;
        }
        let marker = i
            .checked_sub(1)
            .and_then(|j| lines[j].strip_prefix("<!-- README test: "))
            .and_then(|m| m.strip_suffix(" -->"))
            .unwrap_or_else(|| {
                panic!(
                    "README.md:{}: a shell block without `<!-- README test: runs -->` or `<!-- README test: covered by ... -->` above it",
                    i + 1
                )
            });
        let end = lines[i + 1..]
            .iter()
            .position(|l| *l == "```")
            .map(|n| i + 1 + n)
            .unwrap();
        let block = lines[i + 1..end].join("\n");
        if marker == "runs" {
            let script = block.replace("http://127.0.0.1:4200/api", api());
            let out = std::process::Command::new("bash")
                .args(["-euo", "pipefail", "-c", &script])
                .current_dir(scratch.path())
                .env("PATH", &path)
                .env("PREFECT_API_URL", api())
                .env_remove("PREFECT_API_KEY")
                .env(
                    "SWITCHYARD_JOURNAL",
                    scratch.path().join(format!("journal-{i}.db")),
                )
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "README.md:{}: {block}\n{}{}",
                i + 1,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        } else if let Some(names) = marker.strip_prefix("covered by ") {
            for name in names.split(", ") {
                let exists = if name.starts_with('.') {
                    root.join(name).exists()
                } else {
                    tests.contains(&format!("fn {name}("))
                };
                assert!(exists, "README.md:{}: no test {name}", i + 1);
            }
            covered += 1;
        } else {
            panic!("README.md:{}: unknown marker {marker:?}", i + 1);
        }
    }
    assert!(ran >= 2 && covered >= 3, "ran {ran}, covered {covered}");
    // The original router's block started the run it names.
    let runs = wait_for_runs(greet, 1);
    assert!(
        runs.iter()
            .any(|r| r.parameters.get("name") == Some(&json!("Marvin"))),
        "{runs:?}"
    );
}
