//! Helpers shared by the black-box tests: drive the `switchyard` binary and read Prefect.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_prefect::{ClientConfig, DeploymentCreate, FlowRun, PrefectClient};
use switchyard_testkit::{ChildGuard, wait_until};
use uuid::Uuid;

pub const DEADLINE: Duration = Duration::from_secs(90);

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The tests' own Prefect client (fixtures, checks). A SQLite-backed Prefect answers 503 to
/// concurrent writers, and the flood tests keep it busy, so it rides out a longer overload
/// than the router's default (12 retries, at most 3 s apart) before a fixture call fails.
pub fn prefect(api: &str) -> PrefectClient {
    let mut cfg = ClientConfig::new(api);
    cfg.retry = switchyard_prefect::RetryPolicy {
        max_retries: 12,
        max_delay: std::time::Duration::from_secs(3),
        ..Default::default()
    };
    PrefectClient::new(cfg).unwrap()
}

/// Registers a flow and a deployment through the REST API; returns the deployment id.
pub fn deploy(api: &str, flow: &str, deployment: &str, schema: Value) -> Uuid {
    rt().block_on(async {
        let client = prefect(api);
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

/// Every run of a deployment (the API pages by 200). Runs created while it pages shift the
/// pages, so one run can come twice and another not at all: each run is kept once, and a run
/// missed now is there on the next call (callers wait for a count).
pub fn runs_of(api: &str, deployment: Uuid) -> Vec<FlowRun> {
    rt().block_on(async {
        let client = prefect(api);
        let mut all: Vec<FlowRun> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut offset = 0;
        loop {
            let page = client
                .filter_flow_runs(&json!({
                    "flow_runs": {"deployment_id": {"any_": [deployment]}},
                    "sort": "ID_DESC", "limit": 200, "offset": offset
                }))
                .await
                .unwrap();
            let done = page.len() < 200;
            offset += page.len();
            all.extend(page.into_iter().filter(|r| seen.insert(r.id)));
            if done {
                return all;
            }
        }
    })
}

pub fn wait_for_runs(api: &str, deployment: Uuid, n: usize) -> Vec<FlowRun> {
    wait_until(
        &format!("{n} run(s) of deployment {deployment}"),
        DEADLINE,
        || {
            let runs = runs_of(api, deployment);
            (runs.len() >= n).then_some(runs)
        },
    )
}

/// The parameter schema of a deployment that takes one integer `n`.
pub fn counted_schema() -> Value {
    json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
}

/// Every `n` in `0..total` has exactly one run.
pub fn assert_exactly_once(api: &str, dep: Uuid, total: usize) {
    let runs = wait_for_runs(api, dep, total);
    let mut per_n: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &runs {
        *per_n
            .entry(r.parameters["n"].as_i64().unwrap())
            .or_default() += 1;
    }
    let duplicated: Vec<_> = per_n.iter().filter(|(_, c)| **c > 1).collect();
    assert!(duplicated.is_empty(), "duplicate runs: {duplicated:?}");
    let missing: Vec<_> = (0..total as i64)
        .filter(|n| !per_n.contains_key(n))
        .collect();
    assert!(missing.is_empty(), "lost events: {missing:?}");
    assert_eq!(runs.len(), total);
}

/// POSTs JSON; `(0, Null)` when the connection fails (router down).
pub fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    rt().block_on(async {
        let mut req = reqwest::Client::new()
            .post(url)
            .timeout(Duration::from_secs(30))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                (status, resp.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    })
}

/// How many runs a deployment has (one cheap `count` call).
pub fn count_runs(api: &str, deployment: Uuid) -> u64 {
    rt().block_on(
        prefect(api)
            .count_flow_runs(&json!({"flow_runs": {"deployment_id": {"any_": [deployment]}}})),
    )
    .unwrap_or(0)
}

/// A sender with its own runtime and connection pool, for producers that post many events.
pub struct Poster {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Default for Poster {
    fn default() -> Self {
        Self {
            rt: rt(),
            http: reqwest::Client::new(),
        }
    }
}

impl Poster {
    /// POSTs until 202, as [`post_until_accepted`] does.
    pub fn post_until_accepted(&self, url: &str, body: &str, key: &str) {
        wait_until(&format!("202 for {body}"), DEADLINE, || {
            let sent = self.rt.block_on(async {
                self.http
                    .post(url)
                    .timeout(Duration::from_secs(30))
                    .header("content-type", "application/json")
                    .header("idempotency-key", key)
                    .body(body.to_string())
                    .send()
                    .await
            });
            let status = sent.map(|r| r.status().as_u16()).unwrap_or(0);
            assert!(matches!(status, 0 | 202 | 503), "unexpected HTTP {status}");
            (status == 202).then_some(())
        })
    }
}

/// `{"n": i}` for every `i` in `0..n`, from 8 producer threads, to `urls` in turn, each
/// POSTed until accepted (with `Idempotency-Key: k<i>`).
pub fn flood(urls: &[String], n: usize) {
    let urls = std::sync::Arc::new(urls.to_vec());
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let urls = std::sync::Arc::clone(&urls);
            std::thread::spawn(move || {
                let poster = Poster::default();
                for i in (p..n).step_by(8) {
                    let url = &urls[i % urls.len()];
                    poster.post_until_accepted(url, &format!(r#"{{"n": {i}}}"#), &format!("k{i}"));
                }
            })
        })
        .collect();
    for p in producers {
        let _ = p.join();
    }
}

/// Waits (ten minutes at most) until the deployment has `n` runs, with one cheap count each
/// `every`, so the wait does not load the server it measures.
pub fn wait_for_count(api: &str, deployment: Uuid, n: usize, every: Duration) {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while count_runs(api, deployment) < n as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "not every run was created within 10 minutes"
        );
        std::thread::sleep(every);
    }
}

/// The value of one series in a metrics text (0 when absent).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .trim()
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// POSTs until the router answers 202 (it may be down or full meanwhile).
pub fn post_until_accepted(url: &str, body: &str, headers: &[(&str, &str)]) -> Value {
    wait_until(&format!("202 for {body}"), DEADLINE, || {
        let (status, answer) = post(url, body, headers);
        assert!(
            matches!(status, 0 | 202 | 503),
            "unexpected HTTP {status}: {answer}"
        );
        (status == 202).then_some(answer)
    })
}

/// Runs the CLI to completion: `(exit code, stdout, stderr)`.
pub fn switchyard(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `switchyard run`, logging JSON lines to a file in `dir`; the journal is
/// `dir/journal.db`, so a restart in the same `dir` resumes it.
pub struct Router {
    pub process: ChildGuard,
    log: PathBuf,
}

impl Router {
    pub fn start(dir: &Path, api: &str, config_name: &str, config: &str, extra: &[&str]) -> Self {
        Self::start_env(dir, api, config_name, config, extra, &[])
    }

    /// [`Router::start`] with extra environment variables.
    pub fn start_env(
        dir: &Path,
        api: &str,
        config_name: &str,
        config: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = dir.join(config_name);
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!(
            "switchyard-{}.log",
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(["--log-format", "json", "--log-level", "info", "run"])
            .arg(&path)
            .args(extra)
            .env("PREFECT_API_URL", api)
            .env_remove("RUST_LOG")
            .env_remove("PREFECT_API_KEY")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // `env` may name the journal itself (a file, or a database by URL).
        if !env
            .iter()
            .any(|(k, _)| *k == "SWITCHYARD_JOURNAL" || *k == "SWITCHYARD_JOURNAL_URL")
        {
            cmd.env("SWITCHYARD_JOURNAL", dir.join("journal.db"));
        }
        let process = ChildGuard::spawn(&mut cmd).unwrap();
        Self { process, log }
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.process.child().stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        drop(self.process.child().stdin.take());
    }

    pub fn logs(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a log line whose fields contain every `(key, substring)` pair.
    pub fn wait_for_log(&self, fields: &[(&str, &str)]) -> Value {
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

    pub fn wait_for_http(&self, port: u16) {
        wait_until("the webhook server to listen", DEADLINE, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    pub fn stop(mut self, signal: i32) -> Option<i32> {
        self.process.signal(signal);
        self.process.wait_exit(Duration::from_secs(60))
    }

    /// `kill -9`: no chance to flush or drain anything.
    pub fn kill9(mut self) {
        self.process.signal(libc::SIGKILL);
        self.process.wait_exit(Duration::from_secs(10));
    }
}

/// Events a journal holds as done (read directly, for benches that poll it).
pub fn settled_events(journal: &Path) -> usize {
    rusqlite::Connection::open(journal)
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM events WHERE status = 'done'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|v| usize::try_from(v).unwrap_or(0))
        .unwrap_or(0)
}

/// A process work pool of its own with a real worker serving it, and the `outcome` flow
/// (tests/flows/outcome.py: `n`, `fail`, `seconds`) deployed to it.
pub struct Worked {
    pub worker: Option<switchyard_testkit::PrefectWorker>,
    api: String,
    pub pool: String,
    /// The deployment's id, and `outcome/<name>`.
    pub deployment: Uuid,
    pub reference: String,
}

impl Worked {
    /// The pool and deployment with a worker serving them.
    pub fn start(api: &str) -> Self {
        let mut me = Self::idle(api);
        me.start_worker();
        me
    }

    /// Starts the worker (a second call does nothing).
    pub fn start_worker(&mut self) {
        if self.worker.is_none() {
            self.worker = Some(switchyard_testkit::PrefectWorker::start(
                &self.api, &self.pool,
            ));
        }
    }

    /// The pool and deployment, no worker yet.
    pub fn idle(api: &str) -> Self {
        let pool = switchyard_testkit::unique("pool");
        let name = switchyard_testkit::unique("worked");
        let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flows");
        let deployment = rt().block_on(async {
            let resp = reqwest::Client::new()
                .post(format!("{api}/work_pools/"))
                .json(&json!({"name": pool, "type": "process"}))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "work pool: {}", resp.status());
            let client = prefect(api);
            let flow = client.create_flow("outcome").await.unwrap();
            client
                .create_deployment(&DeploymentCreate {
                    name: name.clone(),
                    flow_id: flow.id,
                    work_pool_name: Some(pool.clone()),
                    entrypoint: Some("outcome.py:outcome".into()),
                    path: Some(flows.display().to_string()),
                    ..Default::default()
                })
                .await
                .unwrap()
                .id
        });
        Self {
            worker: None,
            api: api.to_string(),
            pool,
            deployment,
            reference: format!("outcome/{name}"),
        }
    }
}

/// A flow run as Prefect has it now.
pub fn flow_run(api: &str, id: &str) -> FlowRun {
    rt().block_on(async {
        prefect(api)
            .flow_run(&Uuid::parse_str(id).unwrap())
            .await
            .unwrap()
    })
}

/// GET a URL's JSON (`(status, body)`).
pub fn get_json(url: &str) -> (u16, Value) {
    rt().block_on(async {
        let resp = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}
