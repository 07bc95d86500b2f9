//! Event → flow run visible in Prefect, three ways on the same server in the same run, samples
//! rotated: a bare `create_flow_run` call (the floor: one client asking for the run itself);
//! Switchyard (an imported automation: webhook intake of Prefect-shaped events, trigger route,
//! run); and Prefect's own automation with the same trigger.
//!
//! Method (`../shared/reference/prefect-api.md` §4.4): one thread fires (the POST), the bench's
//! main thread polls `/flow_runs/filter` from the same instant, every `SWITCHYARD_LATENCY_POLL_MS`
//! (default 10), for the run whose `name` parameter is the sample's tag; the observer is the same
//! for every case, so only what happens between the POST and the run differs.
//! Run: `cargo bench -p switchyard --bench trigger_latency` (`SWITCHYARD_LATENCY_SAMPLES`, default
//! 40 per case). `SWITCHYARD_PREFECT=.prefect-venv-3.9.1/bin/prefect` runs it on Prefect 3.9.1
//! (`SWITCHYARD_PREFECT_VERSION=3.9.1 scripts/prefect-env.sh` installs it);
//! `SWITCHYARD_PREFECT_DATABASE=postgres` on a PostgreSQL-backed Prefect.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Router, deploy};
use serde_json::{Value, json};
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique};
use uuid::Uuid;

struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Self {
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::new(),
        }
    }

    fn post(&self, url: &str, body: &Value) -> (u16, Value) {
        self.rt.block_on(async {
            match self.client.post(url).json(body).send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    (s, r.json().await.unwrap_or(Value::Null))
                }
                Err(_) => (0, Value::Null),
            }
        })
    }

    fn get(&self, url: &str) -> Value {
        self.rt.block_on(async {
            match self.client.get(url).send().await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            }
        })
    }

    /// Whether a run of `dep` with parameter `name` = `tag` exists.
    fn has_run(&self, api: &str, dep: Uuid, tag: &str) -> bool {
        let (_, runs) = self.post(
            &format!("{api}/flow_runs/filter"),
            &json!({"flow_runs": {"deployment_id": {"any_": [dep]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 10}),
        );
        runs.as_array()
            .is_some_and(|a| a.iter().any(|r| r["parameters"]["name"] == tag))
    }
}

/// What the firing thread is asked to send.
#[derive(Clone, Copy, PartialEq)]
enum Case {
    Bare,
    Switchyard,
    Automation,
}

impl Case {
    const ALL: [Case; 3] = [Case::Bare, Case::Switchyard, Case::Automation];

    fn label(self) -> &'static str {
        match self {
            Case::Bare => "bare create_flow_run (floor)",
            Case::Switchyard => "switchyard (imported automation)",
            Case::Automation => "prefect automation (same trigger)",
        }
    }
}

/// Where each case sends, and which deployment its run appears on.
struct Targets {
    api: String,
    hook: String,
    name: String,
    bare: Uuid,
    by_switchyard: Uuid,
    by_prefect: Uuid,
}

impl Targets {
    fn deployment(&self, case: Case) -> Uuid {
        match case {
            Case::Bare => self.bare,
            Case::Switchyard => self.by_switchyard,
            Case::Automation => self.by_prefect,
        }
    }

    /// Sends one sample's request; `Err` with what came back when it was refused.
    fn fire(&self, http: &Http, case: Case, tag: &str) -> Result<(), String> {
        let (status, body, want) = match case {
            Case::Bare => {
                let (s, b) = http.post(
                    &format!("{}/deployments/{}/create_flow_run", self.api, self.bare),
                    &json!({"parameters": {"name": tag}}),
                );
                (s, b, 201)
            }
            Case::Switchyard => {
                let (s, b) = http.post(&self.hook, &event(&self.name, "lat.bench", tag));
                (s, b, 202)
            }
            Case::Automation => {
                let (s, b) = http.post(
                    &format!("{}/events", self.api),
                    &json!([event(&self.name, "lat.bench", tag)]),
                );
                (s, b, 204)
            }
        };
        if status == want {
            Ok(())
        } else {
            Err(format!("{} answered {status}: {body}", case.label()))
        }
    }
}

/// Fires `case` on the firing thread and polls from the same instant until the run shows.
fn sample(
    http: &Http,
    targets: &Targets,
    fire: &mpsc::SyncSender<(Case, String)>,
    fired: &mpsc::Receiver<Result<(), String>>,
    case: Case,
    poll: Duration,
) -> Duration {
    let tag = format!("{}-{}", case as u8, Uuid::new_v4());
    let dep = targets.deployment(case);
    let start = Instant::now();
    fire.send((case, tag.clone())).expect("firing thread");
    while !http.has_run(&targets.api, dep, &tag) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no run for {} ({tag}) in 60 s",
            case.label()
        );
        std::thread::sleep(poll);
    }
    let took = start.elapsed();
    match fired.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("the firing thread did not answer: {e}"),
    }
    took
}

fn event(name: &str, resource: &str, tag: &str) -> Value {
    json!({
        "id": Uuid::new_v4(), "occurred": chrono::Utc::now().to_rfc3339(), "event": name,
        "resource": {"prefect.resource.id": resource}, "payload": {"tag": tag},
    })
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn env_number(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("trigger_latency: bench");
        return;
    }
    let samples = env_number("SWITCHYARD_LATENCY_SAMPLES", 40).max(1) as usize;
    let poll = Duration::from_millis(env_number("SWITCHYARD_LATENCY_POLL_MS", 10).max(1));
    let server = PrefectServer::shared();
    let api = server.api_url.clone();
    let http = Http::new();
    let version = http.get(&format!("{api}/admin/version"));
    let flow = unique("Latency");
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}});
    let by_prefect = deploy(&api, &flow, "by-prefect", schema.clone());
    let by_switchyard = deploy(&api, &flow, "by-switchyard", schema.clone());
    let bare = deploy(&api, &flow, "by-client", schema);
    let name = format!("{}.ping", unique("lat").replace('-', ""));
    let automation = json!({
        "name": format!("{name} latency"), "enabled": true,
        "trigger": {"type": "event", "expect": [name], "posture": "Reactive", "threshold": 1, "within": 0},
        "actions": [{"type": "run-deployment", "source": "selected", "deployment_id": by_prefect,
                     "parameters": {"name": "{{ event.payload.tag }}"}}]
    });
    let (status, created) = http.post(&format!("{api}/automations/"), &automation);
    assert_eq!(status, 201, "{created}");

    // Switchyard runs the same automation, imported.
    let dir = TempDir::new("latency");
    let file = dir.path().join("automation.json");
    std::fs::write(&file, created.to_string()).expect("write");
    let (code, routes, err) =
        common::switchyard(&["import", file.to_str().unwrap_or_default()], &[]);
    assert_eq!(code, 0, "{err}");
    let routes = routes.replace(&by_prefect.to_string(), &by_switchyard.to_string());
    let port = free_port();
    // The import brings its own webhook source (`prefect-events`, `format: prefect_event`).
    let config = format!("http: {{listen: \"127.0.0.1:{port}\"}}\n{routes}");
    let router = Router::start(dir.path(), &api, "latency.yaml", &config, &[]);
    router.wait_for_http(port);
    let targets = std::sync::Arc::new(Targets {
        api: api.clone(),
        hook: format!("http://127.0.0.1:{port}/hooks/prefect-events"),
        name,
        bare,
        by_switchyard,
        by_prefect,
    });

    // The firing thread: its own runtime and keep-alive connections.
    let (fire, jobs) = mpsc::sync_channel::<(Case, String)>(1);
    let (done, fired) = mpsc::sync_channel(1);
    let firing = {
        let targets = std::sync::Arc::clone(&targets);
        std::thread::spawn(move || {
            let http = Http::new();
            for (case, tag) in jobs {
                if done.send(targets.fire(&http, case, &tag)).is_err() {
                    break;
                }
            }
        })
    };

    // Warm-up: every connection open, and Prefect has loaded the automation (it can take a
    // few seconds after creation).
    let warm = Instant::now();
    loop {
        let tag = unique("warm");
        fire.send((Case::Automation, tag.clone()))
            .expect("firing thread");
        let sent = fired.recv_timeout(Duration::from_secs(60));
        assert!(matches!(sent, Ok(Ok(()))), "warm-up event: {sent:?}");
        let seen = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            http.has_run(&api, by_prefect, &tag)
        });
        if seen {
            break;
        }
        assert!(
            warm.elapsed() < Duration::from_secs(60),
            "automation never fired"
        );
    }
    for case in [Case::Bare, Case::Switchyard] {
        sample(&http, &targets, &fire, &fired, case, poll);
    }

    // Rotated so that no case always follows the same one; a pause between samples lets the
    // automation's event processing settle before the next sample.
    let mut took: [Vec<Duration>; 3] = Default::default();
    for i in 0..samples {
        for k in 0..3 {
            let case = Case::ALL[(i + k) % 3];
            took[case as usize].push(sample(&http, &targets, &fire, &fired, case, poll));
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    drop(fire);
    let _ = firing.join();
    for v in &mut took {
        v.sort();
    }
    // Inside Switchyard: from "event received" to "flow run started" for the same event.
    let logs = router.logs();
    let at = |l: &Value| {
        l["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let mut inside: Vec<Duration> = logs
        .iter()
        .filter(|l| l["message"] == "event received")
        .filter_map(|r| {
            let id = r["event_id"].as_str()?;
            let started = logs.iter().find(|l| {
                l["message"] == "flow run started"
                    && l["event_id"].as_str().is_some_and(|f| f.ends_with(id))
            })?;
            (at(started)? - at(r)?).to_std().ok()
        })
        .collect();
    inside.sort();
    let id = created["id"].as_str().unwrap_or_default();
    let _ = http
        .rt
        .block_on(http.client.delete(format!("{api}/automations/{id}")).send());
    let _ = router.stop(libc::SIGTERM);

    println!(
        "event → flow run visible on Prefect {} ({}), {samples} samples per case, rotated, \
         polled every {} ms from the moment the request is fired\n",
        version.as_str().unwrap_or("?"),
        server.database_kind(),
        poll.as_millis()
    );
    println!(
        "{:<36} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "case", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let row = |label: &str, v: &[Duration]| {
        println!(
            "{label:<36} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>7.0}",
            pct(v, 0.0),
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    };
    for case in Case::ALL {
        row(case.label(), &took[case as usize]);
    }
    if inside.is_empty() {
        println!("(no inside timings in {} log lines)", logs.len());
    } else {
        row("  of which inside switchyard", &inside);
    }
    let [b, s, p] = &took;
    println!(
        "\nswitchyard − floor: p50 {:+.1} ms, p99 {:+.1} ms (targets: within 5 and 25 ms)",
        pct(s, 0.5) - pct(b, 0.5),
        pct(s, 0.99) - pct(b, 0.99)
    );
    println!(
        "median ratios: automation / switchyard {:.2}x, automation / floor {:.2}x",
        pct(p, 0.5) / pct(s, 0.5),
        pct(p, 0.5) / pct(b, 0.5)
    );
}
