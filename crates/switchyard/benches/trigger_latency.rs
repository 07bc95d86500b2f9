//! Event → flow run visible in Prefect: Switchyard (an imported automation: webhook intake of
//! Prefect-shaped events, trigger route, run) against Prefect's own automation with the same
//! trigger, on the same server, in the same run, alternating samples.
//!
//! Method (`../shared/reference/prefect-api.md` §4.4): post one event with a unique tag, then
//! poll `/flow_runs/filter` every 20 ms for the run whose `name` parameter is that tag.
//! Run: `cargo bench -p switchyard --bench trigger_latency` (`SWITCHYARD_LATENCY_SAMPLES`,
//! default 20 per side).

#[path = "../tests/common/mod.rs"]
mod common;

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

    /// Whether a run of `dep` with parameter `name` = `tag` exists.
    fn has_run(&self, api: &str, dep: Uuid, tag: &str) -> bool {
        let (_, runs) = self.post(
            &format!("{api}/flow_runs/filter"),
            &json!({"flow_runs": {"deployment_id": {"any_": [dep]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 10}),
        );
        runs.as_array()
            .is_some_and(|a| a.iter().any(|r| r["parameters"]["name"] == tag))
    }

    /// Posts, then polls every 20 ms until the run shows; the latency.
    fn sample(&self, api: &str, dep: Uuid, tag: &str, send: impl Fn()) -> Duration {
        let start = Instant::now();
        send();
        while !self.has_run(api, dep, tag) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no run for {tag} in 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }
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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("trigger_latency: bench");
        return;
    }
    let samples: usize = std::env::var("SWITCHYARD_LATENCY_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let api = PrefectServer::shared().api_url.clone();
    let http = Http {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        client: reqwest::Client::new(),
    };
    let flow = unique("Latency");
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}});
    let by_prefect = deploy(&api, &flow, "by-prefect", schema.clone());
    let by_switchyard = deploy(&api, &flow, "by-switchyard", schema);
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
    let config = format!(
        "http: {{listen: \"127.0.0.1:{port}\"}}\nsources:\n  - {{type: webhook, name: events, format: prefect_event}}\n{routes}"
    );
    let router = Router::start(dir.path(), &api, "latency.yaml", &config, &[]);
    router.wait_for_http(port);
    let hook = format!("http://127.0.0.1:{port}/hooks/events");
    let to_prefect = |tag: &str| {
        let (s, _) = http.post(
            &format!("{api}/events"),
            &json!([event(&name, "lat.bench", tag)]),
        );
        assert_eq!(s, 204);
    };
    let to_switchyard = |tag: &str| {
        let (s, a) = http.post(&hook, &event(&name, "lat.bench", tag));
        assert_eq!(s, 202, "{a}");
    };
    // Warm-up (and wait until Prefect has loaded the automation).
    let warm = Instant::now();
    loop {
        let tag = unique("warm");
        to_prefect(&tag);
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
    let tag = unique("warm");
    http.sample(&api, by_switchyard, &tag, || to_switchyard(&tag));

    let (mut p, mut s) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let tag = format!("p{i}-{}", Uuid::new_v4());
        p.push(http.sample(&api, by_prefect, &tag, || to_prefect(&tag)));
        std::thread::sleep(Duration::from_millis(500));
        let tag = format!("s{i}-{}", Uuid::new_v4());
        s.push(http.sample(&api, by_switchyard, &tag, || to_switchyard(&tag)));
        std::thread::sleep(Duration::from_millis(500));
    }
    p.sort();
    s.sort();
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

    println!("event → flow run visible, {samples} samples each, alternating, polled every 20 ms\n");
    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>8}",
        "case", "min ms", "p50 ms", "p99 ms", "max ms"
    );
    for (label, v) in [
        ("prefect automation (same trigger)", &p),
        ("switchyard (imported automation)", &s),
    ] {
        println!(
            "{label:<36} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
            pct(v, 0.0),
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }
    if inside.is_empty() {
        let received = logs
            .iter()
            .filter(|l| l["message"] == "event received")
            .count();
        let started = logs
            .iter()
            .filter(|l| l["message"] == "flow run started")
            .take(2)
            .map(|l| l.to_string())
            .collect::<Vec<_>>();
        println!(
            "(no inside timings: {} log lines, {received} received, started e.g. {started:?})",
            logs.len()
        );
    } else {
        println!(
            "{:<36} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
            "  of which inside switchyard",
            pct(&inside, 0.0),
            pct(&inside, 0.5),
            pct(&inside, 0.99),
            pct(&inside, 1.0)
        );
    }
    println!(
        "\nmedian ratio prefect / switchyard: {:.1}x",
        pct(&p, 0.5) / pct(&s, 0.5)
    );
}
