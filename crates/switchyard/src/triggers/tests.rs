//! Trigger and batch logic on tokio's paused clock, with the real journal (so every step is
//! also a restart test: state is read back from SQLite where it matters).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchyard_core::Event;
use tokio::time::advance;

use super::*;
use crate::config::triggers::{BatchConfig, TriggerConfig};
use crate::journal::SqliteStore;

struct Fixture {
    _dir: tempdir::Dir,
    journal: Arc<dyn Store>,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p =
                std::env::temp_dir().join(format!("switchyard-triggers-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&p).unwrap_or_default();
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn fixture() -> Fixture {
    let dir = tempdir::Dir::new();
    let journal: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.0.join("journal.db")).expect("journal"));
    Fixture { _dir: dir, journal }
}

fn trigger(yaml: &str) -> Machine {
    let cfg: TriggerConfig = serde_norway::from_str(yaml).expect("trigger yaml");
    Machine::compile(Some(&cfg), None)
        .expect("compiles")
        .expect("a machine")
}

fn batch(yaml: &str) -> Machine {
    let cfg: BatchConfig = serde_norway::from_str(yaml).expect("batch yaml");
    Machine::compile(None, Some(&cfg))
        .expect("compiles")
        .expect("a machine")
}

fn ev(name: &str, payload: serde_json::Value) -> Event {
    Event::builder("bus", name, payload).build()
}

async fn started(f: &Fixture, route: &str, m: Machine) -> Arc<Stateful> {
    let s = Arc::new(Stateful::new(route, m));
    s.restore(f.journal.as_ref()).await.expect("restore");
    s
}

/// Feeds an event: the firings it caused.
async fn feed(s: &Arc<Stateful>, f: &Fixture, e: Event) -> Vec<Event> {
    f.journal.accept(&e).await.expect("accept");
    match s
        .absorb(&Arc::new(e), f.journal.as_ref())
        .await
        .expect("absorb")
    {
        Absorbed::Recorded(_, firings) => firings,
        Absorbed::Unmatched(_) => Vec::new(),
    }
}

fn payload_ns(firing: &Event) -> Vec<i64> {
    firing.payload["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["payload"]["n"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn reactive_threshold_counts_inside_the_window_and_not_past_its_edge() {
    let f = fixture();
    let s = started(
        &f,
        "r",
        trigger("{type: event, expect: [order.failed], threshold: 3, within: 10}"),
    )
    .await;
    // 0 s, 5 s, 9.999 s: inside the window [0, 10).
    assert!(
        feed(&s, &f, ev("order.failed", json!({"n": 1})))
            .await
            .is_empty()
    );
    advance(Duration::from_secs(5)).await;
    assert!(
        feed(&s, &f, ev("order.created", json!({"n": 99})))
            .await
            .is_empty()
    );
    assert!(
        feed(&s, &f, ev("order.failed", json!({"n": 2})))
            .await
            .is_empty()
    );
    advance(Duration::from_millis(4999)).await;
    let fired = feed(&s, &f, ev("order.failed", json!({"n": 3}))).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(payload_ns(&fired[0]), [1, 2, 3]);
    assert_eq!(fired[0].name, "switchyard.trigger.threshold");
    assert_eq!(fired[0].payload["trigger"]["count"], 3);
    // As in Prefect, a reactive trigger fires once per period: the rest of [0, 10) is ignored.
    assert!(
        feed(&s, &f, ev("order.failed", json!({"n": 4})))
            .await
            .is_empty()
    );
    // The next period is [10, 20): two in it, the third at exactly 20 is past its edge.
    advance(Duration::from_millis(1)).await;
    assert!(
        feed(&s, &f, ev("order.failed", json!({"n": 5})))
            .await
            .is_empty()
    );
    advance(Duration::from_secs(5)).await;
    assert!(
        feed(&s, &f, ev("order.failed", json!({"n": 6})))
            .await
            .is_empty()
    );
    advance(Duration::from_secs(5)).await;
    assert!(
        feed(&s, &f, ev("order.failed", json!({"n": 7})))
            .await
            .is_empty()
    );
    // ...and opens [20, 30), where two more make three.
    assert!(
        feed(&s, &f, ev("order.failed", json!({"n": 8})))
            .await
            .is_empty()
    );
    let fired = feed(&s, &f, ev("order.failed", json!({"n": 9}))).await;
    assert_eq!(payload_ns(&fired[0]), [7, 8, 9]);
}

#[tokio::test(start_paused = true)]
async fn within_zero_fires_at_every_threshold() {
    let f = fixture();
    let s = started(&f, "r", trigger("{type: event, expect: [e], threshold: 2}")).await;
    let mut fired = Vec::new();
    for n in 1..=5 {
        fired.extend(feed(&s, &f, ev("e", json!({"n": n}))).await);
        advance(Duration::from_secs(3600)).await;
    }
    assert_eq!(
        fired.iter().map(payload_ns).collect::<Vec<_>>(),
        [vec![1, 2], vec![3, 4]]
    );
}

#[tokio::test(start_paused = true)]
async fn for_each_match_and_when_split_and_filter_buckets() {
    let f = fixture();
    let s = started(
        &f,
        "r",
        trigger(
            r#"{type: event, match: {region: ["eu-*", "!eu-test"]}, expect: ["order.*"], for_each: [customer],
                when: "event.payload.amount > 100", threshold: 2, within: 60}"#,
        ),
    )
    .await;
    let order = |customer: &str, region: &str, amount: i64, n: i64| {
        Event::builder("bus", "order.placed", json!({"amount": amount, "n": n}))
            .label("customer", customer)
            .label("region", region)
            .build()
    };
    assert!(feed(&s, &f, order("a", "eu-west", 500, 1)).await.is_empty());
    assert!(feed(&s, &f, order("b", "eu-west", 500, 2)).await.is_empty()); // other bucket
    assert!(feed(&s, &f, order("a", "us-east", 500, 3)).await.is_empty()); // label mismatch
    assert!(feed(&s, &f, order("a", "eu-test", 500, 4)).await.is_empty()); // negated
    assert!(feed(&s, &f, order("a", "eu-west", 50, 5)).await.is_empty()); // `when` false
    let fired = feed(&s, &f, order("a", "eu-north", 900, 6)).await;
    assert_eq!(payload_ns(&fired[0]), [1, 6]);
    assert_eq!(fired[0].payload["trigger"]["key"], "a");
    // "a" waits for its next period, "b" counts on.
    assert_eq!(s.buckets().await.keys().collect::<Vec<_>>(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn proactive_fires_for_each_silent_period_and_resolves_when_the_event_returns() {
    let f = fixture();
    let s = started(
        &f,
        "heartbeat",
        trigger("{type: event, expect: [heartbeat], posture: Proactive, threshold: 1, within: 5m}"),
    )
    .await;
    let tick = || async { s.tick(f.journal.as_ref()).await.expect("tick") };
    // A heartbeat in the first period keeps it quiet.
    advance(Duration::from_secs(120)).await;
    assert!(feed(&s, &f, ev("heartbeat", json!({}))).await.is_empty());
    advance(Duration::from_secs(180)).await;
    assert!(tick().await.is_empty());
    // The second period [300, 600) has none: it fires at its end, not a moment before.
    advance(Duration::from_secs(299)).await;
    assert!(tick().await.is_empty());
    advance(Duration::from_secs(1)).await;
    let fired = tick().await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].name, "switchyard.trigger.absence");
    assert!(tick().await.is_empty(), "once per period");
    // Still silent in [600, 900): fires again, as Prefect's proactive triggers do.
    advance(Duration::from_secs(300)).await;
    let again = tick().await;
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, fired[0].id);
    // The heartbeat returns: resolved, and its period stays quiet.
    advance(Duration::from_secs(50)).await;
    assert!(feed(&s, &f, ev("heartbeat", json!({}))).await.is_empty());
    advance(Duration::from_secs(250)).await;
    assert!(tick().await.is_empty());
    advance(Duration::from_secs(300)).await;
    assert_eq!(tick().await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_idiom_fires_for_the_device_that_stopped() {
    let f = fixture();
    let s = started(
        &f,
        "hb",
        trigger("{type: event, after: [hb], expect: [hb], for_each: [device], posture: Proactive, within: 10}"),
    )
    .await;
    let beat = |d: &str| {
        Event::builder("bus", "hb", json!({}))
            .label("device", d)
            .build()
    };
    let mut fired = Vec::new();
    for t in 0..=20 {
        if t <= 3 && t % 3 == 0 {
            fired.extend(feed(&s, &f, beat("A")).await);
        }
        if t % 3 == 0 {
            fired.extend(feed(&s, &f, beat("B")).await);
        }
        fired.extend(s.tick(f.journal.as_ref()).await.expect("tick"));
        if t == 12 {
            assert!(fired.is_empty(), "A's window [3, 13) is still open");
        }
        advance(Duration::from_secs(1)).await;
    }
    assert_eq!(fired.len(), 1, "A once, B never");
    assert_eq!(fired[0].payload["trigger"]["key"], "A");
}

#[tokio::test(start_paused = true)]
async fn a_proactive_deadline_missed_while_down_fires_once_on_start_up() {
    let f = fixture();
    let spec = "{type: event, expect: [heartbeat], posture: Proactive, within: 60}";
    {
        let s = started(&f, "hb", trigger(spec)).await;
        // The window opened at start-up; the router stops before it ends.
        assert!(s.tick(f.journal.as_ref()).await.expect("tick").is_empty());
    }
    // Down for ten minutes (the stored window ended long ago).
    advance(Duration::from_secs(600)).await;
    let s = Stateful::new("hb", trigger(spec));
    // A fresh clock starts "now": make the stored window old in wall-clock terms.
    let mut stored = f.journal.trigger_states("hb").await.expect("states");
    assert_eq!(stored.len(), 1);
    stored[0].1["opened"] =
        json!((chrono::Utc::now() - chrono::Duration::seconds(600)).to_rfc3339());
    let change = TriggerChange {
        route: "hb".into(),
        states: vec![(stored[0].0.clone(), Some(stored[0].1.clone()))],
        ..TriggerChange::default()
    };
    f.journal.absorb(&change).await.expect("store");
    s.restore(f.journal.as_ref()).await.expect("restore");
    let fired = s.tick(f.journal.as_ref()).await.expect("tick");
    assert_eq!(fired.len(), 1, "fires once on start-up");
    assert!(s.tick(f.journal.as_ref()).await.expect("tick").is_empty());
    // Another restart: the firing is remembered, nothing fires twice.
    let again = Stateful::new("hb", trigger(spec));
    again.restore(f.journal.as_ref()).await.expect("restore");
    assert!(
        again
            .tick(f.journal.as_ref())
            .await
            .expect("tick")
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_join_pairs_events_by_key_within_the_window_and_expires_the_rest() {
    let f = fixture();
    let s = started(
        &f,
        "join",
        trigger(
            r#"{type: compound, require: all, within: 3600, key: "{{ event.payload.dataset_id }}",
                triggers: [{type: event, expect: [file.landed]}, {type: event, expect: [schema.ready]}]}"#,
        ),
    )
    .await;
    let e = |name: &str, ds: &str, n: i64| ev(name, json!({"dataset_id": ds, "n": n}));
    assert!(feed(&s, &f, e("file.landed", "d1", 1)).await.is_empty());
    assert!(feed(&s, &f, e("schema.ready", "d2", 2)).await.is_empty()); // other key
    advance(Duration::from_secs(1800)).await;
    let fired = feed(&s, &f, e("schema.ready", "d1", 3)).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(payload_ns(&fired[0]), [1, 3]);
    assert_eq!(fired[0].payload["trigger"]["key"], "d1");
    // d2's half expires an hour after it arrived: a late partner finds nothing.
    advance(Duration::from_secs(1800)).await;
    s.tick(f.journal.as_ref()).await.expect("tick");
    assert!(feed(&s, &f, e("file.landed", "d2", 4)).await.is_empty());
    assert_eq!(s.buckets().await.len(), 1, "only the new d2 half waits");
}

#[tokio::test(start_paused = true)]
async fn sequence_fires_only_in_order() {
    let f = fixture();
    let spec = "{type: sequence, within: 60, triggers: [{type: event, expect: [a]}, {type: event, expect: [b]}]}";
    let s = started(&f, "seq", trigger(spec)).await;
    assert!(feed(&s, &f, ev("b", json!({"n": 1}))).await.is_empty());
    assert!(feed(&s, &f, ev("a", json!({"n": 2}))).await.is_empty());
    advance(Duration::from_secs(30)).await;
    let fired = feed(&s, &f, ev("b", json!({"n": 3}))).await;
    assert_eq!(payload_ns(&fired[0]), [2, 3]);
    assert_eq!(fired[0].name, "switchyard.trigger.sequence");
    // Too slow: a, then b after the window.
    assert!(feed(&s, &f, ev("a", json!({"n": 4}))).await.is_empty());
    advance(Duration::from_secs(61)).await;
    assert!(feed(&s, &f, ev("b", json!({"n": 5}))).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn compound_any_and_n_of_m() {
    let f = fixture();
    let s = started(
        &f,
        "two",
        trigger("{type: compound, require: 2, within: 60, triggers: [{type: event, expect: [x]}, {type: event, expect: [y]}, {type: event, expect: [z]}]}"),
    )
    .await;
    assert!(feed(&s, &f, ev("x", json!({"n": 1}))).await.is_empty());
    assert!(feed(&s, &f, ev("x", json!({"n": 2}))).await.is_empty()); // same child again
    assert_eq!(
        payload_ns(&feed(&s, &f, ev("z", json!({"n": 3}))).await[0]),
        [2, 3]
    );
    let any = started(
        &f,
        "any",
        trigger("{type: compound, require: any, triggers: [{type: event, expect: [x]}, {type: event, expect: [y]}]}"),
    )
    .await;
    assert_eq!(feed(&any, &f, ev("y", json!({"n": 1}))).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn batches_close_by_count_by_delay_and_by_idleness() {
    let f = fixture();
    let s = started(&f, "b", batch("{max_events: 3, max_delay: 60s, idle: 10s}")).await;
    for n in 1..=2 {
        assert!(feed(&s, &f, ev("e", json!({"n": n}))).await.is_empty());
    }
    let fired = feed(&s, &f, ev("e", json!({"n": 3}))).await;
    assert_eq!(payload_ns(&fired[0]), [1, 2, 3]);
    assert!(
        fired[0].payload["trigger"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("max_events")
    );

    // Idle: 10 s without an event.
    feed(&s, &f, ev("e", json!({"n": 4}))).await;
    advance(Duration::from_secs(9)).await;
    assert!(s.tick(f.journal.as_ref()).await.expect("tick").is_empty());
    advance(Duration::from_secs(1)).await;
    let fired = s.tick(f.journal.as_ref()).await.expect("tick");
    assert_eq!(payload_ns(&fired[0]), [4]);
    assert!(
        fired[0].payload["trigger"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("idle")
    );

    // Max delay: events every 8 s keep it from idling; it closes 60 s after its first.
    let s = started(
        &f,
        "b2",
        batch("{max_events: 100, max_delay: 60s, idle: 10s}"),
    )
    .await;
    for n in 5..=12 {
        feed(&s, &f, ev("e", json!({"n": n}))).await;
        advance(Duration::from_secs(8)).await;
        let fired = s.tick(f.journal.as_ref()).await.expect("tick");
        if n < 12 {
            assert!(fired.is_empty(), "closed early at {n}");
        } else {
            assert_eq!(payload_ns(&fired[0]), (5..=12).collect::<Vec<_>>());
            assert!(
                fired[0].payload["trigger"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("max_delay")
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_restart_mid_window_and_mid_batch_resumes_the_counts() {
    let f = fixture();
    let t = "{type: event, expect: [e], threshold: 3, within: 600}";
    let b = "{max_events: 3, max_delay: 1h}";
    {
        let s = started(&f, "t", trigger(t)).await;
        feed(&s, &f, ev("e", json!({"n": 1}))).await;
        feed(&s, &f, ev("e", json!({"n": 2}))).await;
        let s2 = started(&f, "b", batch(b)).await;
        feed(&s2, &f, ev("e", json!({"n": 11}))).await;
    }
    let s = started(&f, "t", trigger(t)).await;
    assert_eq!(
        payload_ns(&feed(&s, &f, ev("e", json!({"n": 3}))).await[0]),
        [1, 2, 3]
    );
    let s2 = started(&f, "b", batch(b)).await;
    feed(&s2, &f, ev("e", json!({"n": 12}))).await;
    assert_eq!(
        payload_ns(&feed(&s2, &f, ev("e", json!({"n": 13}))).await[0]),
        [11, 12, 13]
    );
}

#[tokio::test(start_paused = true)]
async fn the_clock_task_fires_due_windows_without_any_event() {
    let f = fixture();
    let s = started(&f, "b", batch("{max_events: 100, max_delay: 30s}")).await;
    let (tx, mut rx) = mpsc::channel(8);
    s.set_firings(tx, Arc::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let clock = tokio::spawn(Arc::clone(&s).run_clock(Arc::clone(&f.journal), stop.clone()));
    feed(&s, &f, ev("e", json!({"n": 1}))).await;
    // Paused time advances by itself to the batch's deadline while everything waits.
    let fired = rx.recv().await.expect("a firing");
    assert_eq!(payload_ns(&fired), [1]);
    stop.cancel();
    let _ = clock.await;
}

#[test]
fn config_mistakes_name_the_key() {
    let err = |yaml: &str| {
        let cfg: TriggerConfig = serde_norway::from_str(yaml).expect("yaml");
        Machine::compile(Some(&cfg), None).err().unwrap_or_default()
    };
    assert_eq!(err("{type: event, posture: Proactive}").0, "trigger.within");
    assert_eq!(err("{type: event, threshold: 0}").0, "trigger.threshold");
    assert_eq!(
        err("{type: event, match_related: {\"prefect.resource.role\": flow}}").0,
        "trigger.match_related"
    );
    assert_eq!(
        err("{type: compound, require: 3, triggers: [{type: event}]}").0,
        "trigger.require"
    );
    assert_eq!(
        err("{type: compound, require: any, triggers: [{type: sequence, triggers: []}]}").0,
        "trigger.triggers[0]."
    );
}
