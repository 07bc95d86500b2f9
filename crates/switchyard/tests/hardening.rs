//! Hostile and careless input against the real binary and a real Prefect: payloads that
//! would hang or bloat the router, clients that hang up, a journal that disappears or fills
//! its disk, and secrets that must not reach any output. Every wait is a condition with a
//! deadline.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{DEADLINE, Router, count_runs, post};
use serde_json::{Value, json};
use switchyard::journal::{EventFilter, EventStatus, SqliteStore, Store};
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique, wait_until};
use uuid::Uuid;

fn api() -> &'static str {
    &PrefectServer::shared().api_url
}

fn deploy(flow: &str, deployment: &str, schema: Value) -> Uuid {
    common::deploy(api(), flow, deployment, schema)
}

/// Reads a journal (possibly one a running router is writing).
fn journal(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("journal")
}

fn events(path: &Path, status: Option<EventStatus>) -> Vec<switchyard::journal::EventSummary> {
    common::rt().block_on(async {
        journal(path)
            .list_events(&EventFilter {
                status,
                limit: 100_000,
                ..Default::default()
            })
            .await
            .unwrap()
    })
}

fn dead_letters(path: &Path) -> Vec<switchyard::journal::DeadLetter> {
    common::rt().block_on(async { journal(path).dead_letters(false, 100_000).await.unwrap() })
}

/// The original prefect-event-router's README, verbatim: the first message has no `payload`
/// at all, and the original sent `{}` as the parameters for it.
#[test]
fn the_original_readme_messages_run_verbatim() {
    let plain = deploy(
        "Test Flow",
        "integration-test",
        json!({"type": "object", "properties": {}}),
    );
    let with_params = deploy(
        "Test Flow with Params",
        "integration-test",
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
    );
    let dir = TempDir::new("hardening");
    let mut router = Router::start(
        dir.path(),
        api(),
        "config.json",
        r#"{"threads":[{"publisher_type":"StdInput"}]}"#,
        &["--exit-when-sources-end"],
    );
    router.send_line(r#"{"flow_name": "Test Flow", "deployment_name": "integration-test"}"#);
    router.send_line(r#"{"flow_name": "Test Flow with Params", "deployment_name": "integration-test", "payload": {"name": "Gordon Bennett"}}"#);
    router.close_stdin();
    let plain_runs = common::wait_for_runs(api(), plain, 1);
    let param_runs = common::wait_for_runs(api(), with_params, 1);
    assert_eq!(router.process.wait_exit(DEADLINE), Some(0));
    assert_eq!(plain_runs.len(), 1);
    assert_eq!(param_runs.len(), 1);
    assert_eq!(Value::Object(plain_runs[0].parameters.clone()), json!({}));
    assert_eq!(
        Value::Object(param_runs[0].parameters.clone()),
        json!({"name": "Gordon Bennett"})
    );
    assert!(dead_letters(&dir.path().join("journal.db")).is_empty());
}

/// Probes `/healthz` every 20 ms until stopped; returns the slowest answer (a failed probe
/// counts as the probe's whole timeout).
fn probe_health(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Duration, usize)> {
    std::thread::spawn(move || {
        let rt = common::rt();
        let http = reqwest::Client::new();
        let (mut worst, mut probes) = (Duration::ZERO, 0);
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let ok = rt.block_on(async {
                http.get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            });
            let took = if ok {
                started.elapsed()
            } else {
                Duration::from_secs(2)
            };
            worst = worst.max(took);
            probes += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        (worst, probes)
    })
}

/// A flood of valid events mixed with loop bombs (nested loops bounded by the payload) and
/// memory bombs (a string repeated to 100 MB): the router keeps answering `/healthz`, every
/// valid event becomes exactly one run, every bomb a dead letter saying why.
#[test]
fn bombs_in_a_flood_become_dead_letters_and_the_router_stays_responsive() {
    let flow = unique("Bombs");
    let dep = deploy(
        &flow,
        "flood",
        json!({"type": "object", "properties": {
            "n": {"type": "integer"}, "text": {"type": "string"}, "big": {"type": "string"}}}),
    );
    let port = free_port();
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
sources:
  - {{type: webhook, name: flood}}
routes:
  - name: r
    action:
      type: run_deployment
      deployment: "{flow}/flood"
      parameters:
        n: "{{{{ event.payload.n }}}}"
        text: "{{% for i in range(event.payload.loops) %}}{{% for j in range(event.payload.loops) %}}x{{% endfor %}}{{% endfor %}}"
        big: "{{{{ event.payload.s * event.payload.k }}}}"
"#
    );
    let dir = TempDir::new("hardening");
    let router = Router::start(dir.path(), api(), "flood.yaml", &config, &[]);
    router.wait_for_http(port);
    let stop = Arc::new(AtomicBool::new(false));
    let health = probe_health(
        format!("http://127.0.0.1:{port}/healthz"),
        Arc::clone(&stop),
    );
    let hook = format!("http://127.0.0.1:{port}/hooks/flood");
    let (valid, bombs) = (60, 40);
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let hook = hook.clone();
            std::thread::spawn(move || {
                let poster = common::Poster::default();
                for i in (t..valid + bombs).step_by(4) {
                    let body = match i % 5 {
                        // Loop bomb: 10^10 iterations.
                        1 => json!({"n": i, "loops": 100_000, "s": "a", "k": 1}),
                        // Memory bomb: a 100 MB string.
                        3 => json!({"n": i, "loops": 1, "s": "xxxxxxxxxx", "k": 10_000_000}),
                        _ => json!({"n": i, "loops": 1, "s": "a", "k": 1}),
                    };
                    poster.post_until_accepted(&hook, &body.to_string(), &format!("e-{i}"));
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let journal_path = dir.path().join("journal.db");
    wait_until("every event settled", DEADLINE, || {
        events(&journal_path, Some(EventStatus::Pending))
            .is_empty()
            .then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    let (worst, probes) = health.join().unwrap();
    let runs = common::runs_of(api(), dep);
    let mut ns: Vec<i64> = runs
        .iter()
        .map(|r| r.parameters["n"].as_i64().unwrap())
        .collect();
    ns.sort_unstable();
    let want: Vec<i64> = (0..valid + bombs)
        .filter(|i| i % 5 != 1 && i % 5 != 3)
        .map(|i| i as i64)
        .collect();
    assert_eq!(ns, want, "exactly one run per valid event");
    let dead = dead_letters(&journal_path);
    assert_eq!(dead.len(), bombs as usize, "{dead:?}");
    // Both bombs run out of fuel: the loop by its instructions, the 100 MB string by the data
    // it would build (minijinja 3 charges fuel for data, so it is refused before it exists;
    // with minijinja 2 it was built and then stopped by templates.max_output_bytes).
    let out_of_fuel = |template: &str| {
        dead.iter()
            .filter(|d| d.reason.contains("ran out of fuel") && d.reason.contains(template))
            .count()
    };
    assert_eq!(
        (
            out_of_fuel("range(event.payload.loops)"),
            out_of_fuel("event.payload.s * event.payload.k")
        ),
        (20, 20),
        "{dead:?}"
    );
    eprintln!("healthz: {probes} probes during the flood, slowest {worst:?}");
    assert!(
        worst < Duration::from_millis(100),
        "/healthz took {worst:?} at worst"
    );
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

/// Clients that hang up right after sending: every event the journal took is settled while
/// the router runs, none waits for a restart.
#[test]
fn events_of_clients_that_hang_up_are_settled_without_a_restart() {
    let flow = unique("HangUp");
    let dep = deploy(
        &flow,
        "gone",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
    );
    let port = free_port();
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
sources:
  - {{type: webhook, name: gone}}
routes:
  - name: r
    action: {{type: run_deployment, deployment: "{flow}/gone", parameters: {{n: "{{{{ event.payload.n }}}}"}}}}
"#
    );
    let dir = TempDir::new("hardening");
    let router = Router::start(dir.path(), api(), "gone.yaml", &config, &[]);
    router.wait_for_http(port);
    for n in 0..150 {
        let body = format!(r#"{{"n": {n}}}"#);
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "POST /hooks/gone HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nidempotency-key: h-{n}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // Gone before the answer.
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    let journal_path = dir.path().join("journal.db");
    // Every request was read in full, so each is journaled (or refused with 503 when the
    // queue was full, in which case nothing was journaled).
    let settled = wait_until("every journaled event settled", DEADLINE, || {
        let all = events(&journal_path, None);
        let pending = all
            .iter()
            .filter(|e| e.status == EventStatus::Pending)
            .count();
        (pending == 0 && !all.is_empty()).then_some(all)
    });
    let runs = common::wait_for_runs(api(), dep, settled.len());
    assert_eq!(runs.len(), settled.len(), "one run per journaled event");
    assert!(settled.iter().all(|e| e.status == EventStatus::Done));
    eprintln!(
        "{} of 150 hung-up requests were journaled; all settled",
        settled.len()
    );
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

/// A payload nested 127 deep is a dead letter saying so, and no run (Prefect would echo it one
/// level deeper than a JSON reader takes, after creating the run).
#[test]
fn a_deeply_nested_payload_is_a_dead_letter_and_no_run() {
    let flow = unique("Deep");
    let dep = deploy(&flow, "deep", json!({"type": "object", "properties": {}}));
    let port = free_port();
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
sources:
  - {{type: webhook, name: deep}}
routes:
  - name: r
    action: {{type: run_deployment, deployment: "{flow}/deep", parameters: "{{{{ event.payload }}}}"}}
"#
    );
    let dir = TempDir::new("hardening");
    let router = Router::start(dir.path(), api(), "deep.yaml", &config, &[]);
    router.wait_for_http(port);
    let hook = format!("http://127.0.0.1:{port}/hooks/deep");
    let deep = format!("{}1{}", "{\"a\":".repeat(126), "}".repeat(126));
    let (status, _) = post(&hook, &deep, &[("idempotency-key", "deep")]);
    assert_eq!(status, 202);
    let (status, _) = post(
        &hook,
        r#"{"a": {"b": 1}}"#,
        &[("idempotency-key", "shallow")],
    );
    assert_eq!(status, 202);
    common::wait_for_runs(api(), dep, 1);
    let journal_path = dir.path().join("journal.db");
    let dead = wait_until("the dead letter", DEADLINE, || {
        let d = dead_letters(&journal_path);
        (!d.is_empty()).then_some(d)
    });
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, "deep:deep");
    assert!(dead[0].reason.contains("levels deep"), "{}", dead[0].reason);
    assert_eq!(count_runs(api(), dep), 1, "the deep event made no run");
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
}

/// The journal file removed while running: the router stops taking events (503, `/readyz`
/// 503 with the reason) instead of accepting what it would lose, and exits 1.
#[test]
fn a_journal_removed_while_running_stops_the_intake() {
    let flow = unique("Removed");
    let dep = deploy(&flow, "rm", json!({"type": "object", "properties": {}}));
    let port = free_port();
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
journal: {{check_interval: 100ms}}
sources:
  - {{type: webhook, name: rm}}
routes:
  - name: r
    action: {{type: run_deployment, deployment: "{flow}/rm"}}
"#
    );
    let dir = TempDir::new("hardening");
    let router = Router::start(dir.path(), api(), "rm.yaml", &config, &[]);
    router.wait_for_http(port);
    let hook = format!("http://127.0.0.1:{port}/hooks/rm");
    assert_eq!(post(&hook, "{}", &[]).0, 202);
    common::wait_for_runs(api(), dep, 1);
    std::fs::remove_file(dir.path().join("journal.db")).unwrap();
    let ready = wait_until("readyz to turn 503", DEADLINE, || {
        let r = common::rt().block_on(async {
            reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                .await
                .ok()
        })?;
        (r.status().as_u16() == 503).then(|| {
            common::rt()
                .block_on(r.json::<Value>())
                .unwrap_or(Value::Null)
        })
    });
    assert!(
        ready["reasons"][0]
            .as_str()
            .unwrap()
            .contains("removed or replaced"),
        "{ready}"
    );
    let (status, body) = post(&hook, "{}", &[]);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("removed or replaced"),
        "{body}"
    );
    assert_eq!(count_runs(api(), dep), 1);
    router.wait_for_log(&[("message", "journal lost")]);
    assert_eq!(router.stop(libc::SIGTERM), Some(1));
}

/// A real full disk (the journal on a 2 MiB tmpfs in a mount namespace of the router's
/// own): new events get 503 and `/readyz` says why; nothing accepted is stranded; once space
/// is freed, every accepted event ends as exactly one run, and intake resumes by itself.
#[test]
fn a_full_disk_stops_the_intake_and_strands_nothing() {
    let flow = unique("Full");
    let dep = deploy(
        &flow,
        "full",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
    );
    let port = free_port();
    let dir = TempDir::new("hardening");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let config_path = dir.path().join("full.yaml");
    std::fs::write(
        &config_path,
        format!(
            r#"
http: {{listen: "127.0.0.1:{port}"}}
journal: {{path: "{}/journal.db", check_interval: 200ms, sweep_interval: 500ms, sweep_after: 1s}}
sources:
  - {{type: webhook, name: full}}
routes:
  - name: r
    action: {{type: run_deployment, deployment: "{flow}/full", parameters: {{n: "{{{{ event.payload.n }}}}"}}}}
"#,
            mnt.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("full.log");
    let script = format!(
        "mount -t tmpfs -o size=2m tmpfs '{}' && exec '{}' --log-format json run '{}'",
        mnt.display(),
        env!("CARGO_BIN_EXE_switchyard"),
        config_path.display()
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script])
        .env("PREFECT_API_URL", api())
        .env_remove("RUST_LOG")
        .env_remove("SWITCHYARD_JOURNAL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut process = switchyard_testkit::ChildGuard::spawn(&mut cmd).unwrap();
    wait_until("the webhook server to listen", DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    // The router's view of the tmpfs, from outside its mount namespace.
    let inside = Path::new("/proc")
        .join(process.pid().to_string())
        .join("root")
        .join(mnt.strip_prefix("/").unwrap());
    let ballast = inside.join("ballast");
    {
        // Fill what is left but a little.
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        drop(f);
        let len = std::fs::metadata(&ballast).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&ballast)
            .unwrap()
            .set_len(len.saturating_sub(96 * 1024))
            .unwrap();
    }
    let hook = format!("http://127.0.0.1:{port}/hooks/full");
    let filler = "y".repeat(2000);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for n in 0..400 {
        let body = json!({"n": n, "filler": filler}).to_string();
        match post(&hook, &body, &[("idempotency-key", &format!("f-{n}"))]) {
            (202, _) => accepted.push(n),
            (503, b) => {
                assert!(
                    b["error"].as_str().unwrap_or_default().contains("journal"),
                    "{b}"
                );
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        refused >= 5,
        "the disk never filled ({} accepted)",
        accepted.len()
    );
    let ready = common::rt()
        .block_on(async { reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await })
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    // Space again: the probe clears the fault, the sweep finishes what could not be written.
    std::fs::remove_file(&ballast).unwrap();
    wait_until("intake to resume", DEADLINE, || {
        (post(
            &hook,
            &json!({"n": 10_000}).to_string(),
            &[("idempotency-key", "f-after")],
        )
        .0 == 202)
            .then_some(())
    });
    let journal_path = inside.join("journal.db");
    wait_until("nothing pending", DEADLINE, || {
        events(&journal_path, Some(EventStatus::Pending))
            .is_empty()
            .then_some(())
    });
    let runs = common::wait_for_runs(api(), dep, accepted.len() + 1);
    let mut ns: Vec<i64> = runs
        .iter()
        .map(|r| r.parameters["n"].as_i64().unwrap())
        .collect();
    ns.sort_unstable();
    let mut want: Vec<i64> = accepted.iter().map(|n| *n as i64).collect();
    want.push(10_000);
    assert_eq!(ns, want, "exactly one run per accepted event");
    eprintln!(
        "{} accepted before the disk filled, {refused} refused; all settled after space was freed",
        accepted.len()
    );
    process.signal(libc::SIGTERM);
    assert_eq!(process.wait_exit(DEADLINE), Some(0));
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logs.contains("refusing new events until a write succeeds"),
        "{logs}"
    );
}

/// Credentials in every URL and option: none of them appears in the log at debug level, in
/// `check`, in `check --online`, or in an error message.
#[test]
fn no_secret_reaches_any_output() {
    let secrets = [
        "PrefPass-1x",
        "pnu_SecretKey-2x",
        "RedisPass-3x",
        "NatsPass-4x",
        "AmqpPass-5x",
        "MqttPass-6x",
        "KafkaPass-7x",
        "QXp1cmVLZXktOC1zZWNyZXQ=",
        "SasSig-9x",
    ];
    let port = free_port();
    let prefect = api().replacen("http://", "http://prefuser:PrefPass-1x@", 1);
    let config = format!(
        r#"
prefect: {{api_url: "{prefect}", api_key: "pnu_SecretKey-2x"}}
http: {{listen: "127.0.0.1:{port}"}}
sources:
  - {{type: webhook, name: h}}
  - {{type: redis_streams, name: r, url: "redis://:RedisPass-3x@127.0.0.1:6379/0", stream: "{stream}"}}
  - {{type: nats, name: n, url: "nats://natsuser:NatsPass-4x@127.0.0.1:4222", mode: core, subjects: [secret.test]}}
  - {{type: amqp, name: a, url: "amqp://guest:AmqpPass-5x@127.0.0.1:5672/%2f", queue: "{stream}"}}
  - {{type: mqtt, name: m, url: "mqtt://127.0.0.1:1883", topics: [secret/test], username: u, password: "MqttPass-6x"}}
  - type: kafka
    name: k
    brokers: "127.0.0.1:1"
    topics: [t]
    options: {{security.protocol: SASL_PLAINTEXT, sasl.mechanism: PLAIN, sasl.username: u, sasl.password: KafkaPass-7x}}
  - {{type: azure_queue, name: z, account: acct, queue: q, endpoint: "http://127.0.0.1:1/acct", account_key: "QXp1cmVLZXktOC1zZWNyZXQ="}}
  - {{type: azure_queue, name: z2, queue_url: "http://127.0.0.1:1/acct/q?sv=2020-08-04&sig=SasSig-9x"}}
routes:
  - name: r
    action: {{type: run_deployment, deployment: "Nowhere/none"}}
"#,
        stream = unique("secret")
    );
    let dir = TempDir::new("hardening");
    let path = dir.path().join("secrets.yaml");
    std::fs::write(&path, &config).unwrap();
    let path_s = path.to_str().unwrap();
    let mut outputs = Vec::new();
    for args in [vec!["check", path_s], vec!["check", "--online", path_s]] {
        let (_, out, err) = common::switchyard(&args, &[]);
        outputs.push((format!("{args:?}"), out + &err));
    }
    // An error message that quotes a URL.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        config.replace("redis://:RedisPass-3x@", "http://:RedisPass-3x@"),
    )
    .unwrap();
    let (code, out, err) = common::switchyard(&["check", broken.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sources[1].url"), "{err}");
    outputs.push(("check broken".into(), out + &err));

    let log = dir.path().join("run.log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["--log-level", "debug", "run", path_s])
        .env("SWITCHYARD_JOURNAL", dir.path().join("journal.db"))
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut process = switchyard_testkit::ChildGuard::spawn(&mut cmd).unwrap();
    wait_until("the webhook server", DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    // An event, so the Prefect client (with its credentials) is used.
    post(&format!("http://127.0.0.1:{port}/hooks/h"), "{}", &[]);
    // Every broker source has said something (connected, or failed and retrying); the Azure
    // client retries on its own for a minute before it reports, and its debug lines (with
    // the signed URLs) are in the log from the start.
    for name in ["r", "n", "a", "m", "k"] {
        let (plain, quoted) = (format!("source={name} "), format!("source=\"{name}\""));
        wait_until(&format!("a log line of source {name}"), DEADLINE, || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| l.contains(&plain) || l.contains(&quoted))
                .map(|_| ())
        });
    }
    wait_until("the route's Prefect call", DEADLINE, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("Nowhere/none"))
            .map(|_| ())
    });
    process.signal(libc::SIGTERM);
    process.wait_exit(DEADLINE);
    outputs.push((
        "run --log-level debug".into(),
        std::fs::read_to_string(&log).unwrap(),
    ));
    for (what, text) in &outputs {
        for s in secrets {
            assert!(!text.contains(s), "{s} in the output of {what}:\n{text}");
        }
    }
    let run_log = &outputs.last().unwrap().1;
    assert!(
        run_log.contains("prefuser:***@"),
        "the Prefect URL is shown masked"
    );
}
