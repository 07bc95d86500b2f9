//! End to end: the `switchyard` binary, driven as a user would (stdin, HTTP, signals), against
//! a real Prefect server started by the testkit. Every wait is a condition with a deadline.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_prefect::{ClientConfig, DeploymentCreate, FlowRun, PrefectClient};
use switchyard_testkit::{ChildGuard, PrefectServer, TempDir, free_port, unique, wait_until};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(60);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn prefect() -> PrefectClient {
    PrefectClient::new(ClientConfig::new(&PrefectServer::shared().api_url)).unwrap()
}

/// Registers a flow and a deployment through the REST API; returns the deployment id.
fn deploy(flow: &str, deployment: &str, schema: Value) -> Uuid {
    rt().block_on(async {
        let client = prefect();
        let flow = client.create_flow(flow).await.unwrap();
        client
            .create_deployment(&DeploymentCreate {
                name: deployment.into(),
                flow_id: flow.id,
                enforce_parameter_schema: true,
                parameter_openapi_schema: Some(schema),
                ..Default::default()
            })
            .await
            .unwrap()
            .id
    })
}

fn runs_of(deployment: Uuid) -> Vec<FlowRun> {
    rt().block_on(
        prefect()
            .filter_flow_runs(&json!({"flow_runs": {"deployment_id": {"any_": [deployment]}}})),
    )
    .unwrap()
}

fn wait_for_runs(deployment: Uuid, n: usize) -> Vec<FlowRun> {
    wait_until(
        &format!("{n} run(s) of deployment {deployment}"),
        DEADLINE,
        || {
            let runs = runs_of(deployment);
            (runs.len() >= n).then_some(runs)
        },
    )
}

struct Router {
    process: ChildGuard,
    log: PathBuf,
    _dir: TempDir,
}

impl Router {
    fn start(config_name: &str, config: &str, extra: &[&str]) -> Self {
        let dir = TempDir::new("switchyard-e2e");
        let path = dir.path().join(config_name);
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("switchyard.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(["--log-format", "json", "--log-level", "info", "run"])
            .arg(&path)
            .args(extra)
            .env("PREFECT_API_URL", &PrefectServer::shared().api_url)
            .env("SWITCHYARD_JOURNAL", dir.path().join("journal.db"))
            .env_remove("RUST_LOG")
            .env_remove("PREFECT_API_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let process = ChildGuard::spawn(&mut cmd).unwrap();
        Self {
            process,
            log,
            _dir: dir,
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.process.child().stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        drop(self.process.child().stdin.take());
    }

    fn logs(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a log line whose fields contain every `(key, substring)` pair.
    fn wait_for_log(&self, fields: &[(&str, &str)]) -> Value {
        let what = format!("a log line with {fields:?}");
        wait_until(&what, DEADLINE, || {
            self.logs().into_iter().find(|l| {
                fields.iter().all(|(k, want)| match &l[*k] {
                    Value::String(s) => s.contains(want),
                    Value::Null => false,
                    other => other.to_string().contains(want),
                })
            })
        })
    }

    fn wait_for_http(&self, port: u16) {
        wait_until("the webhook server to listen", DEADLINE, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    fn stop(mut self, signal: i32) -> Option<i32> {
        self.process.signal(signal);
        self.process.wait_exit(Duration::from_secs(30))
    }
}

/// URL, body, headers.
type Request<'a> = (String, String, Vec<(&'a str, &'a str)>);

fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    rt().block_on(async {
        let mut req = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
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
    let mut router = Router::start(
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
    let router = Router::start("webhook.yaml", &config, &[]);
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
    assert_eq!(
        Value::Object(run.parameters.clone()),
        json!({"order_id": 42, "amount": 120.5, "customer": "ADA", "lines": [{"sku": "A", "qty": 2}], "note": "order.created via orders"})
    );
    // The redelivered event (same Idempotency-Key) found the same run instead of a second one.
    router.wait_for_log(&[
        ("message", "flow run already existed for this event"),
        ("flow_run_id", &run.id.to_string()),
    ]);
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
    let router = Router::start("strict.yaml", &config, &[]);
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
        ("error", "Prefect rejected the flow run"),
        ("error", "'three' is not of type 'integer'"),
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
    let mut router = Router::start("lines.yaml", &config, &["--exit-when-sources-end"]);
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
