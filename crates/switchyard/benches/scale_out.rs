//! Scale-out, in one run:
//!
//! * the journal alone — events/s through accept, settle, finish (a routed event's three
//!   writes) from 256 concurrent tasks, on SQLite and on the machine's PostgreSQL, and their
//!   ratio;
//! * whole instances against the real Prefect — a webhook flood (8 producers) into one
//!   instance on SQLite, one on PostgreSQL and three sharing PostgreSQL (round-robin): events/s
//!   accepted, runs/s created, lost and duplicated.
//!
//! Run: `cargo bench -p switchyard --bench scale_out` (`SWITCHYARD_SCALE_EVENTS=N` for the
//! journal's events, default 20,000; `SWITCHYARD_SCALE_RUNS=N` for the flood, default 300, 0
//! for the journal alone; `SWITCHYARD_PREFECT_DATABASE=postgres` for a PostgreSQL Prefect).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Router, deploy, runs_of};
use serde_json::json;
use switchyard::journal::{PostgresOptions, PostgresStore, Settlement, SqliteStore, Store};
use switchyard_testkit::{PrefectServer, TempDir, TestDatabase, free_port, unique};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Events/s through the journal's three writes per event, `tasks` at once.
async fn journal_rate(store: Arc<dyn Store>, n: usize, tasks: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in (t..n).step_by(tasks) {
                    let e = switchyard_core::Event::builder("bench", "b", json!({"n": i}))
                        .id(format!("e{i}"))
                        .build();
                    store.accept(&e).await.expect("accept");
                    let ran = Settlement::Ran(switchyard::actions::RunCreated {
                        deployment: "F/d".into(),
                        deployment_id: uuid::Uuid::nil(),
                        flow_run_id: uuid::Uuid::new_v4(),
                        flow_run_name: "r".into(),
                        replayed: false,
                        concurrency_key: None,
                    });
                    store.settle(&e.id, "r", &ran).await.expect("settle");
                    store.finish(&e.id).await.expect("finish");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct Row {
    name: String,
    accepted_per_s: f64,
    runs_per_s: f64,
    lost: usize,
    duplicated: usize,
}

/// A flood of `n` events into `instances` routers (round-robin), all on `journal` (`None`:
/// each its own SQLite file).
fn flood(api: &str, n: usize, instances: usize, journal: Option<&str>, name: &str) -> Row {
    let flow = unique("Scale");
    let dep = deploy(api, &flow, "counted", common::counted_schema());
    let mut dirs = Vec::new();
    let mut routers = Vec::new();
    let mut urls = Vec::new();
    for i in 0..instances {
        let dir = TempDir::new("scale");
        let port = free_port();
        let config = format!(
            r#"
http: {{listen: "127.0.0.1:{port}"}}
engine: {{queue_capacity: 1024, max_consumers: 8}}
prefect: {{max_in_flight: 4}}
journal: {{instance: "bench-{i}"}}
admin: {{enabled: false}}
sources: [{{type: webhook, name: load}}]
routes:
  - name: count
    action:
      type: run_deployment
      deployment: "{flow}/counted"
      parameters: {{n: "{{{{ event.payload.n }}}}"}}
"#
        );
        let env: Vec<(&str, &str)> = journal
            .map(|u| ("SWITCHYARD_JOURNAL", u))
            .into_iter()
            .collect();
        let r = Router::start_env(
            dir.path(),
            api,
            "load.yaml",
            &config,
            &["--log-level", "warn"],
            &env,
        );
        r.wait_for_http(port);
        urls.push(format!("http://127.0.0.1:{port}/hooks/load"));
        routers.push(r);
        dirs.push(dir);
    }
    let start = Instant::now();
    common::flood(&urls, n);
    let accepted = start.elapsed().as_secs_f64();
    common::wait_for_count(api, dep, n, Duration::from_millis(100));
    let done = start.elapsed().as_secs_f64();
    let mut per_n: BTreeMap<i64, usize> = BTreeMap::new();
    for r in runs_of(api, dep) {
        *per_n
            .entry(r.parameters["n"].as_i64().unwrap_or(-1))
            .or_default() += 1;
    }
    let lost = (0..n as i64).filter(|k| !per_n.contains_key(k)).count();
    let duplicated = per_n.values().map(|c| c.saturating_sub(1)).sum();
    let mut warned: BTreeMap<String, usize> = BTreeMap::new();
    for r in &routers {
        for l in r.logs() {
            if let Some(m) = l["message"].as_str() {
                *warned.entry(m.to_string()).or_default() += 1;
            }
        }
    }
    eprintln!("  {name}: warnings {warned:?}");
    for r in routers {
        let _ = r.stop(libc::SIGTERM);
    }
    Row {
        name: name.to_string(),
        accepted_per_s: n as f64 / accepted,
        runs_per_s: n as f64 / done,
        lost,
        duplicated,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("scale_out: bench");
        return;
    }
    let n = env_number("SWITCHYARD_SCALE_EVENTS", 20_000);
    let runs = env_number("SWITCHYARD_SCALE_RUNS", 300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    println!("journal alone: {n} events (accept, settle, finish), 256 tasks at once");
    let dir = TempDir::new("scale-journal");
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("j.db")).expect("sqlite"));
    let sqlite_rate = rt.block_on(journal_rate(sqlite, n, 256));
    let db = TestDatabase::create("bench_journal");
    let pg = rt.block_on(async {
        PostgresStore::open(&PostgresOptions {
            url: db.url(),
            instance: Some("bench".into()),
            lease: Duration::from_secs(20),
            register: true,
        })
        .await
        .expect("postgres")
    });
    let pg_rate = rt.block_on(journal_rate(Arc::new(pg), n, 256));
    println!("{:<28} {:>10}", "store", "events/s");
    println!("{:<28} {:>10.0}", "SQLite", sqlite_rate);
    println!("{:<28} {:>10.0}", "PostgreSQL", pg_rate);
    println!("PostgreSQL / SQLite: {:.3}\n", pg_rate / sqlite_rate);

    if runs == 0 {
        return;
    }
    let server = PrefectServer::shared();
    let api = server.api_url.clone();
    println!(
        "instances: {runs} webhook events, 8 producers, against Prefect at {api} ({})",
        server.database_kind()
    );
    let one_pg = TestDatabase::create("bench_one");
    let three_pg = TestDatabase::create("bench_three");
    let rows = [
        flood(&api, runs, 1, None, "1 instance, SQLite"),
        flood(&api, runs, 1, Some(&one_pg.url()), "1 instance, PostgreSQL"),
        flood(
            &api,
            runs,
            3,
            Some(&three_pg.url()),
            "3 instances, PostgreSQL",
        ),
    ];
    let base = rows[1].runs_per_s;
    println!(
        "{:<28} {:>12} {:>8} {:>6} {:>6} {:>14}",
        "case", "accepted/s", "runs/s", "lost", "dup", "runs vs 1 PG"
    );
    for r in &rows {
        println!(
            "{:<28} {:>12.1} {:>8.1} {:>6} {:>6} {:>14.2}",
            r.name,
            r.accepted_per_s,
            r.runs_per_s,
            r.lost,
            r.duplicated,
            r.runs_per_s / base
        );
    }
}
