//! What following runs to their end costs: the same webhook flood through Switchyard with
//! `prefect.follow` off and on, alternating (off, on, off, on) against one local Prefect, in
//! one run. No worker serves the deployment, so every run stays Scheduled and is looked at
//! for the whole measurement (the most reads following makes). Prints runs/s for each, the
//! ratio of on to off, and how many `flow_runs/filter` reads following made.
//!
//! Run: `cargo bench -p switchyard --bench follow_overhead` (`SWITCHYARD_LOAD_EVENTS=N`,
//! default 300).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Router, deploy};
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique};

const TOKEN: &str = "follow-bench-token-0123456789";

/// `(runs/s, flow_runs/filter reads)`.
fn flood(api: &str, n: usize, follow: bool) -> (f64, u64) {
    let flow = unique("Follow Bench");
    let dep = deploy(api, &flow, "counted", common::counted_schema());
    let dir = TempDir::new("follow-bench");
    let (port, admin_port) = (free_port(), free_port());
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin_port}", token: "{TOKEN}"}}
engine: {{queue_capacity: 1024, max_consumers: 8}}
prefect: {{follow: {{enabled: {follow}}}}}
sources: [{{type: webhook, name: load}}]
routes:
  - name: count
    action:
      type: run_deployment
      deployment: "{flow}/counted"
      parameters: {{n: "{{{{ event.payload.n }}}}"}}
"#
    );
    let router = Router::start(dir.path(), api, "load.yaml", &config, &[]);
    router.wait_for_http(port);
    let url = format!("http://127.0.0.1:{port}/hooks/load");
    let start = Instant::now();
    common::flood(&[url], n);
    common::wait_for_count(api, dep, n, Duration::from_millis(250));
    let seconds = start.elapsed().as_secs_f64();
    let metrics = common::rt().block_on(async {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{admin_port}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    });
    let reads: u64 = metrics
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("switchyard_prefect_requests_total{operation=\"filter_flow_runs\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    let _ = router.stop(libc::SIGTERM);
    (n as f64 / seconds, reads)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("follow_overhead: bench");
        return;
    }
    let n: usize = std::env::var("SWITCHYARD_LOAD_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let server = PrefectServer::shared();
    let api = server.api_url.clone();
    println!(
        "follow overhead: {n} webhook events per case against Prefect at {api} ({})\n",
        server.database_kind()
    );
    println!("{:<14} {:>8} {:>14}", "follow", "runs/s", "filter reads");
    let mut off = Vec::new();
    let mut on = Vec::new();
    for round in 0..3 {
        for follow in [false, true] {
            let (rate, reads) = flood(&api, n, follow);
            println!(
                "{:<14} {:>8.1} {:>14}",
                format!(
                    "{} (round {})",
                    if follow { "on" } else { "off" },
                    round + 1
                ),
                rate,
                reads
            );
            if follow {
                on.push(rate)
            } else {
                off.push(rate)
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "\nruns/s with following / without: {:.2} (mean of {} rounds each)",
        mean(&on) / mean(&off),
        on.len()
    );
}
