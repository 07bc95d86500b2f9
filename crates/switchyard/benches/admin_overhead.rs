//! What watching costs: webhook intake (keep-alive clients, every event journaled and
//! skipped by a route) with the admin server off, against the same with it on and scraped
//! (`/metrics` every second, as Prometheus does), and on, scraped and with a live tap
//! listener connected (someone watching every decision). The three are alternated round by
//! round in one run, so drift on this shared machine hits them alike; the figures are the
//! ratios of their medians to the admin-off median. A fourth mode, in the same rotation, is
//! the baseline of intake: the same router (admin off) answering `GET /healthz` on the webhook
//! listener, which journals nothing; intake is printed as a ratio to it too.
//! Run: `cargo bench -p switchyard --bench admin_overhead`
//! (`SWITCHYARD_ADMIN_ROUNDS`, default 5 per side; `SWITCHYARD_ADMIN_REQUESTS` per round,
//! default 40,000; `SWITCHYARD_ADMIN_CLIENTS`, default 16).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Router;
use switchyard_testkit::{TempDir, free_port};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    Scraped,
    Tapped,
    Healthz,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Off => "admin off",
            Self::Scraped => "admin on, scraped every 1 s",
            Self::Tapped => "admin on, scraped, a tap listening",
            Self::Healthz => "baseline: GET /healthz, admin off",
        }
    }
}

/// Requests per second through a fresh router in `mode`.
fn round(mode: Mode, requests: usize, clients: usize) -> f64 {
    let admin = matches!(mode, Mode::Scraped | Mode::Tapped);
    let (port, admin_port) = (free_port(), free_port());
    let admin_cfg = if admin {
        format!("{{listen: \"127.0.0.1:{admin_port}\"}}")
    } else {
        "{enabled: false}".to_string()
    };
    let config = format!(
        "http: {{listen: \"127.0.0.1:{port}\"}}\nadmin: {admin_cfg}\nsources: [{{type: webhook, name: h}}]\nroutes:\n  - name: never\n    when: \"false\"\n    action: {{type: run_deployment, deployment: f/d}}\n"
    );
    let dir = TempDir::new("admin-overhead");
    // No route runs, so Prefect is never called; the address only has to parse.
    let router = Router::start(
        dir.path(),
        "http://127.0.0.1:9/api",
        "bench.yaml",
        &config,
        &[],
    );
    router.wait_for_http(port);
    if admin {
        router.wait_for_http(admin_port);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rate = rt.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let mut watchers = Vec::new();
        if admin {
            let base = format!("http://127.0.0.1:{admin_port}");
            let (scrape, s) = (format!("{base}/metrics"), Arc::clone(&stop));
            watchers.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !s.load(Ordering::Relaxed) {
                    let _ = client.get(&scrape).send().await.map(|r| r.bytes());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }));
            let (tap, s) = (format!("{base}/api/v1/tap"), Arc::clone(&stop));
            let tapped = mode == Mode::Tapped;
            watchers.push(tokio::spawn(async move {
                if !tapped {
                    return;
                }
                if let Ok(mut r) = reqwest::get(&tap).await {
                    while !s.load(Ordering::Relaxed) {
                        if !matches!(r.chunk().await, Ok(Some(_))) {
                            break;
                        }
                    }
                }
            }));
        }
        let healthz = mode == Mode::Healthz;
        let url = if healthz {
            format!("http://127.0.0.1:{port}/healthz")
        } else {
            format!("http://127.0.0.1:{port}/hooks/h")
        };
        let left = Arc::new(AtomicUsize::new(requests));
        let failed = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (url, left, failed) = (url.clone(), Arc::clone(&left), Arc::clone(&failed));
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let ok = if healthz {
                        client
                            .get(&url)
                            .send()
                            .await
                            .is_ok_and(|r| r.status() == 200)
                    } else {
                        client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(r#"{"order": 1, "amount": 10}"#)
                            .send()
                            .await
                            .is_ok_and(|r| r.status() == 202)
                    };
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for w in watchers {
            w.abort();
        }
        let failed = failed.load(Ordering::Relaxed);
        assert_eq!(failed, 0, "{failed} requests were not accepted");
        requests as f64 / seconds
    });
    assert_eq!(router.stop(libc::SIGTERM), Some(0));
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds = env_usize("SWITCHYARD_ADMIN_ROUNDS", 5).max(1);
    let requests = env_usize("SWITCHYARD_ADMIN_REQUESTS", 40_000).max(1);
    let clients = env_usize("SWITCHYARD_ADMIN_CLIENTS", 16).max(1);
    println!(
        "webhook intake, {requests} requests per round, {clients} keep-alive clients, every event skipped"
    );
    let modes = [Mode::Off, Mode::Scraped, Mode::Tapped, Mode::Healthz];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for i in 0..rounds {
        // Rotate which goes first, so none always runs on a warmer machine.
        for k in 0..modes.len() {
            let m = (i + k) % modes.len();
            let r = round(modes[m], requests, clients);
            println!(
                "  round {}: {:<36} {r:>9.0} requests/s",
                i + 1,
                modes[m].name()
            );
            rates[m].push(r);
        }
    }
    let medians: Vec<f64> = rates.into_iter().map(median).collect();
    for (m, r) in modes.iter().zip(&medians) {
        println!(
            "median {:<36} {r:>9.0}/s  ratio to admin off {:.3} ({:+.1} %)",
            m.name(),
            r / medians[0],
            (r / medians[0] - 1.0) * 100.0
        );
    }
    println!(
        "webhook intake (admin off) / GET /healthz: {:.3}",
        medians[0] / medians[3]
    );
}
