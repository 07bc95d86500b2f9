//! End-to-end load driver: N events into Switchyard against a local Prefect (SQLite-backed, or
//! PostgreSQL-backed with `SWITCHYARD_PREFECT_DATABASE=postgres`), and, in the same run against
//! the same server, baselines:
//!
//! * serial — one client calling `create_flow_run` N times, one after another, no retries
//!   (the ceiling one well-behaved caller reaches);
//! * naive ×4 and ×8 — four and eight concurrent clients without retries (what a script that
//!   "just calls the API" gets; on a PostgreSQL Prefect, concurrency pays).
//!
//! Prints runs/s, failures, lost and duplicated events for each, and Switchyard's ratio to
//! the serial ceiling and to the best baseline. Run: `cargo bench -p switchyard --bench e2e_load`
//! (`SWITCHYARD_LOAD_EVENTS=N` to change N, default 300).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Router, deploy, runs_of};
use serde_json::json;
use switchyard_prefect::{ClientConfig, FlowRunCreate, PrefectClient, RetryPolicy};
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique};
use uuid::Uuid;

struct Row {
    name: &'static str,
    seconds: f64,
    ok: usize,
    failed: usize,
    lost: usize,
    duplicated: usize,
}

impl Row {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
}

fn tally(api: &str, dep: Uuid, n: usize) -> (usize, usize, usize) {
    let mut per_n: BTreeMap<i64, usize> = BTreeMap::new();
    for r in runs_of(api, dep) {
        *per_n
            .entry(r.parameters["n"].as_i64().unwrap_or(-1))
            .or_default() += 1;
    }
    let distinct = (0..n as i64).filter(|k| per_n.contains_key(k)).count();
    let duplicated = per_n.values().map(|c| c.saturating_sub(1)).sum();
    (distinct, n - distinct, duplicated)
}

/// `clients` tasks share `n` calls; each call is made once, no retries.
fn direct(api: &str, n: usize, clients: usize, name: &'static str) -> Row {
    let dep = deploy(
        api,
        &unique("Load Direct"),
        "counted",
        common::counted_schema(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let mut cfg = ClientConfig::new(api);
        cfg.retry = RetryPolicy::none();
        cfg.max_in_flight = clients;
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                // One client per task: separate connection pools and limits, as separate
                // scripts would have.
                let client = PrefectClient::new(cfg.clone()).unwrap();
                let (next, failed) = (Arc::clone(&next), Arc::clone(&failed));
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            break;
                        }
                        let body = FlowRunCreate {
                            parameters: json!({"n": i}).as_object().cloned().unwrap_or_default(),
                            idempotency_key: Some(format!("{dep}:{i}")),
                            ..Default::default()
                        };
                        if client.create_flow_run(&dep, &body).await.is_err() {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let (ok, lost, duplicated) = tally(api, dep, n);
    Row {
        name,
        seconds,
        ok,
        failed: failed.load(Ordering::SeqCst),
        lost,
        duplicated,
    }
}

fn through_switchyard(api: &str, n: usize, max_in_flight: usize) -> Row {
    let flow = unique("Load Switchyard");
    let dep = deploy(api, &flow, "counted", common::counted_schema());
    let dir = TempDir::new("load");
    let port = free_port();
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
engine: {{queue_capacity: 1024, max_consumers: 8}}
prefect: {{max_in_flight: {max_in_flight}}}
sources: [{{type: webhook, name: load}}]
routes:
  - name: count
    action:
      type: run_deployment
      deployment: "{flow}/counted"
      parameters: {{n: "{{{{ event.payload.n }}}}"}}
"#
    );
    let router = Router::start(
        dir.path(),
        api,
        "load.yaml",
        &config,
        &["--log-level", "info"],
    );
    router.wait_for_http(port);
    let url = format!("http://127.0.0.1:{port}/hooks/load");
    let start = Instant::now();
    common::flood(&[url], n);
    eprintln!(
        "  all {n} events accepted after {:.1}s",
        start.elapsed().as_secs_f64()
    );
    common::wait_for_count(api, dep, n, Duration::from_millis(250));
    let seconds = start.elapsed().as_secs_f64();
    let (ok, lost, duplicated) = tally(api, dep, n);
    let logs = router.logs();
    let count = |m: &str| logs.iter().filter(|l| l["message"] == m).count();
    eprintln!(
        "  switchyard absorbed {} transient Prefect failures; {} in-flight reductions",
        count("transient Prefect failure, retrying"),
        count("Prefect overloaded; fewer calls in flight")
    );
    let _ = router.stop(libc::SIGTERM);
    Row {
        name: "switchyard (8 producers)",
        seconds,
        ok,
        failed: lost,
        lost,
        duplicated,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("e2e_load: bench");
        return;
    }
    let n: usize = std::env::var("SWITCHYARD_LOAD_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let max_in_flight: usize = std::env::var("SWITCHYARD_LOAD_MAX_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let server = PrefectServer::shared();
    let api = server.api_url.clone();
    println!(
        "e2e load: {n} events per case against Prefect at {api} ({})\n",
        server.database_kind()
    );
    let rows = [
        direct(&api, n, 1, "serial client, no retries"),
        direct(&api, n, 4, "4 naive clients, no retries"),
        direct(&api, n, 8, "8 naive clients, no retries"),
        through_switchyard(&api, n, max_in_flight),
    ];
    let ceiling = rows[0].rate();
    // The best a client without Switchyard got: runs that exist, per second.
    let best = rows[..3].iter().map(Row::rate).fold(0.0, f64::max);
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>6} {:>6} {:>10} {:>8}",
        "case", "seconds", "runs/s", "failed", "lost", "dup", "vs serial", "vs best"
    );
    for r in &rows {
        println!(
            "{:<28} {:>8.1} {:>8.1} {:>8} {:>6} {:>6} {:>10.2} {:>8.2}",
            r.name,
            r.seconds,
            r.rate(),
            r.failed,
            r.lost,
            r.duplicated,
            r.rate() / ceiling,
            r.rate() / best
        );
    }
}
