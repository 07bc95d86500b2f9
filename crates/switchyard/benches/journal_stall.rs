//! Does retention stall the journal? A journal holding a million finished events (each with its
//! skip in its row, as a skipped webhook event leaves), a steady stream of webhook accepts at
//! 5,000/s, first with retention idle (the baseline), then with retention at its cap (deleting
//! what the accepts add, the steady state of a full journal), then with retention deleting a
//! backlog of hundreds of thousands of events meanwhile (a lowered `max_events`). Each accept
//! is what a webhook request waits for before its 202: for an event every route skips,
//! `accept_skipped` (one insert of the finished event); with `SWITCHYARD_STALL_ROUTED=1`,
//! `accept` of a pending event followed (unmeasured) by its finish, as an event a route acts
//! on. It prints the accept latency percentiles of the three phases and the ratio of the last
//! to the first, in one run; then how many events a second 64 callers get journaled (the
//! journal's ceiling) and the WAL file's largest size.
//! Run: `cargo bench -p switchyard --bench journal_stall`
//! (`SWITCHYARD_STALL_EVENTS`, default 1,000,000; `SWITCHYARD_STALL_SECONDS` per phase,
//! default 10; `SWITCHYARD_STALL_RATE`, default 5,000/s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::journal::{Retention, SqliteStore, Store};
use switchyard_core::Event;
use switchyard_testkit::TempDir;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fills the journal with `n` finished, skipped events, the oldest two hours ago.
fn fill(path: &std::path::Path, n: u64) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    let tx = conn.transaction().unwrap();
    let start = chrono::Utc::now().timestamp_millis() - 2 * 3_600_000;
    let stamp = chrono::Utc::now().to_rfc3339();
    {
        let mut ev = tx
            .prepare(
                "INSERT INTO events (id, source, name, occurred, received, payload, labels, status, accepted_at, finished_at, digest, skips)
                 VALUES (?1, 'h', 'h.received', ?2, ?2, '{\"n\":1}', '{}', 'done', ?3, ?3, 'd', '[[\"never\",\"when is false\"]]')",
            )
            .unwrap();
        for i in 0..n {
            let id = format!("old-{i}");
            let at = start + i64::try_from(i / 200).unwrap_or(0);
            ev.execute(rusqlite::params![id, stamp, at]).unwrap();
        }
    }
    tx.commit().unwrap();
    // Both phases start from an empty WAL.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

struct Phase {
    latencies: Vec<Duration>,
    deleted: u64,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// What a webhook request waits for: the skipped event journaled finished, or (`routed`) the
/// event journaled pending; the latter is then finished, unmeasured, as its route would.
async fn journal(store: &SqliteStore, e: &Event, routed: bool) {
    let skips = [("never".to_string(), "when is false".to_string())];
    if routed {
        store.accept(e).await.unwrap();
    } else {
        store.accept_skipped(e, &skips).await.unwrap();
    }
}

async fn finish(store: &SqliteStore, id: &str, routed: bool) {
    if routed {
        store
            .finish_skipped(id, vec![("never".into(), "when is false".into())])
            .await
            .unwrap();
    }
}

/// Journals events at `rate` for `secs`; with `retention`, prunes meanwhile.
async fn phase(
    store: Arc<SqliteStore>,
    tag: &str,
    rate: u64,
    secs: u64,
    retention: Option<Retention>,
    routed: bool,
) -> Phase {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = retention.map(|r| {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut deleted = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // The router prunes once a minute; here once a second, so that a phase
                // sees several runs (each reads where to cut, then deletes in chunks).
                match store.prune(r).await {
                    Ok(n) => deleted += n,
                    Err(e) => panic!("prune: {e}"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            deleted
        })
    });
    let per_tick = rate / 1000;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        ticks.tick().await;
        for _ in 0..per_tick {
            n += 1;
            let store = Arc::clone(&store);
            let id = format!("{tag}-{n}");
            tasks.spawn(async move {
                let e = Event::builder("h", "h.received", json!({"n": n}))
                    .id(&id)
                    .build();
                let t = Instant::now();
                journal(&store, &e, routed).await;
                let took = t.elapsed();
                finish(&store, &id, routed).await;
                took
            });
        }
    }
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies.push(r.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let deleted = match pruner {
        Some(p) => p.await.unwrap(),
        None => 0,
    };
    latencies.sort_unstable();
    Phase { latencies, deleted }
}

/// Events journaled (and, `routed`, finished) per second by `tasks` concurrent callers for
/// `secs` (what a busy webhook asks of the journal).
async fn saturation(store: Arc<SqliteStore>, tasks: u64, secs: u64, routed: bool) -> f64 {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let store = Arc::clone(&store);
        set.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                let id = format!("sat-{t}-{n}");
                let e = Event::builder("h", "h.received", json!({"n": n}))
                    .id(&id)
                    .build();
                journal(&store, &e, routed).await;
                finish(&store, &id, routed).await;
                n += 1;
            }
            n
        });
    }
    let mut total = 0;
    while let Some(n) = set.join_next().await {
        total += n.unwrap();
    }
    total as f64 / secs as f64
}

fn main() {
    let events = env_u64("SWITCHYARD_STALL_EVENTS", 1_000_000);
    let secs = env_u64("SWITCHYARD_STALL_SECONDS", 10);
    let rate = env_u64("SWITCHYARD_STALL_RATE", 5_000).max(1000);
    let routed = env_u64("SWITCHYARD_STALL_ROUTED", 0) == 1;
    let dir = TempDir::new("journal-stall");
    let path = dir.path().join("journal.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Creates the schema, then fill it behind the store's back.
    drop(SqliteStore::open(&path).unwrap());
    let t = Instant::now();
    fill(&path, events);
    println!(
        "journal filled: {events} finished events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let idle = rt.block_on(phase(Arc::clone(&store), "idle", rate, secs, None, routed));
    // Retention at its cap: it deletes what the accepts add (and the idle phase's surplus).
    let capped = rt.block_on(phase(
        Arc::clone(&store),
        "capped",
        rate,
        secs,
        Some(Retention {
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_events: events,
        }),
        routed,
    ));
    // Keep 40 % of what is there: retention has ~600k events to delete while accepts go on.
    let retention = Retention {
        max_age: Duration::from_secs(30 * 24 * 3600),
        max_events: events * 2 / 5,
    };
    let pruning = rt.block_on(phase(
        Arc::clone(&store),
        "pruning",
        rate,
        secs,
        Some(retention),
        routed,
    ));
    let what = if routed {
        "accept of a pending event (finished after)"
    } else {
        "accept of an event every route skips (one write)"
    };
    println!("{what}, latency at {rate}/s over {secs} s, journal of {events} events:");
    println!("| phase | accepts | p50 ms | p99 ms | p99.9 ms | max ms | deleted meanwhile |");
    println!("|---|---|---|---|---|---|---|");
    for (name, p) in [
        ("retention idle", &idle),
        ("retention at its cap (steady)", &capped),
        ("retention deleting a backlog", &pruning),
    ] {
        let l = &p.latencies;
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            l.len(),
            pct(l, 0.5),
            pct(l, 0.99),
            pct(l, 0.999),
            pct(l, 1.0),
            p.deleted
        );
    }
    let rate = rt.block_on(saturation(Arc::clone(&store), 64, secs.min(5), routed));
    println!("saturation, 64 callers: {rate:.0} events journaled per second");
    // The WAL file never shrinks, so its size is the most it held at once.
    let wal = std::fs::metadata(dir.path().join("journal.db-wal")).map_or(0, |m| m.len());
    println!("WAL file at its largest: {:.1} MB", wal as f64 / 1e6);
    println!(
        "p99.9 ratio deleting/idle: {:.2}",
        pct(&pruning.latencies, 0.999) / pct(&idle.latencies, 0.999).max(1e-9)
    );
}
