//! The journal's contract: one suite of tests that every [`Store`] passes (each store's own
//! tests run it with [`journal_contract!`]), besides the tests of what only one store does.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use switchyard_core::Event;
use uuid::Uuid;

use super::*;
use crate::outcome::RunCreated;

/// A store to test: [`Backend::open`] opens the same storage each time (a restart).
pub(crate) trait Backend: Sync {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>>;
}

/// Runs every contract test against a backend (an expression that makes a fresh one).
macro_rules! journal_contract {
    ($backend:expr) => {
        $crate::journal::contract::journal_contract!(@each $backend;
            accept_is_idempotent_and_reports_settled_routes,
            pending_events_survive_a_reopen_with_their_settled_routes,
            dead_letters_keep_the_reason_and_resolve,
            concurrent_writers_are_group_committed,
            retention_prunes_finished_events_only,
            retention_deletes_in_chunks_and_keeps_the_newest,
            an_event_lists_each_of_its_runs_once,
            skips_are_kept_in_the_event_row_in_their_place_and_found_by_route,
            an_event_every_route_skips_is_journaled_finished_in_one_write,
            a_trigger_step_is_recorded_whole,
            a_failed_write_takes_no_neighbour_with_it,
            listing_filters_and_pages,
            runs_are_followed_until_they_end,
        );
    };
    (@each $backend:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let backend = $backend;
                $crate::journal::contract::$name(&backend).await;
            }
        )*
    };
}
pub(crate) use journal_contract;

pub(crate) fn event(id: &str) -> Event {
    Event::builder("hooks", "order.created", json!({"n": 1}))
        .id(id)
        .label("k", "v")
        .build()
}

/// The ids of the events the journal lists (newest first, up to 100).
async fn listed(j: &dyn Store) -> Vec<String> {
    let filter = EventFilter {
        limit: 100,
        ..Default::default()
    };
    let events = j.list_events(&filter).await.unwrap();
    events.into_iter().map(|e| e.id).collect()
}

/// The ids of the events a `--route` filter finds (newest first, up to 10).
async fn by_route(j: &dyn Store, route: &str) -> Vec<String> {
    let filter = EventFilter {
        limit: 10,
        route: Some(route.into()),
        ..Default::default()
    };
    j.list_events(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

pub(crate) fn run(name: &str) -> Settlement {
    Settlement::Ran(RunCreated {
        deployment: "Flow/dep".into(),
        deployment_id: Uuid::new_v4(),
        flow_run_id: Uuid::new_v4(),
        flow_run_name: name.into(),
        replayed: false,
        concurrency_key: None,
    })
}

fn same_times(mut e: Event, other: &Event) -> Event {
    e.occurred = other.occurred;
    e.received = other.received;
    e
}

pub(crate) async fn pending_events_survive_a_reopen_with_their_settled_routes(b: &dyn Backend) {
    {
        let j = b.open().await;
        for id in ["e1", "e2", "e3"] {
            j.accept(&event(id)).await.unwrap();
        }
        j.settle("e1", "a", &run("r1")).await.unwrap();
        j.finish("e1").await.unwrap();
        j.settle(
            "e2",
            "a",
            &Settlement::Skipped {
                reason: "no".into(),
            },
        )
        .await
        .unwrap();
    }
    let j = b.open().await;
    let pending = j.pending().await.unwrap();
    let ids: Vec<_> = pending
        .iter()
        .map(|p| (p.event.id.as_str(), p.settled.clone()))
        .collect();
    assert_eq!(ids, [("e2", vec!["a".to_string()]), ("e3", vec![])]);
    assert_eq!(pending[0].event, same_times(event("e2"), &pending[0].event));
    // Times come back as they went in.
    let e = j.event("e2").await.unwrap().unwrap().event;
    assert_eq!(e.occurred, pending[0].event.occurred);
    assert_eq!(j.counts().await.unwrap(), (2, 0));
}

/// Retention past one chunk (of either store) keeps exactly the newest `max_events`, oldest
/// going first, and leaves the journal taking writes between its chunks.
pub(crate) async fn retention_deletes_in_chunks_and_keeps_the_newest(b: &dyn Backend) {
    let j = b.open().await;
    let n = 1_100;
    // One by one, in order: retention goes by when events finished, then by their order of
    // acceptance (events that finish in the same millisecond).
    for i in 0..n {
        let id = format!("e{i:04}");
        j.accept(&event(&id)).await.unwrap();
        j.finish(&id).await.unwrap();
    }
    let keep = Retention {
        max_age: Duration::from_secs(3600),
        max_events: 10,
    };
    assert_eq!(j.prune(keep).await.unwrap(), (n - 10) as u64);
    assert_eq!(j.prune(keep).await.unwrap(), 0, "nothing more to delete");
    let left = listed(&*j).await;
    let newest: Vec<String> = (n - 10..n).rev().map(|i| format!("e{i:04}")).collect();
    assert_eq!(left, newest);
}

/// A trigger step writes its firings (pending, idempotent by id), its bucket states and the
/// absorbed event's decision together; a state of `None` deletes the bucket.
pub(crate) async fn a_trigger_step_is_recorded_whole(b: &dyn Backend) {
    let j = b.open().await;
    j.accept(&event("cause")).await.unwrap();
    let firing = Event::builder("trigger:t", "t.fired", json!({"count": 5}))
        .id("firing-1")
        .build();
    let change = TriggerChange {
        route: "t".into(),
        firings: vec![firing.clone()],
        states: vec![
            ("k1".into(), Some(json!({"count": 5}))),
            ("k2".into(), Some(json!({"count": 1}))),
        ],
        settles: Some(("cause".into(), "counted (5 of 5)".into())),
    };
    j.absorb(&change).await.unwrap();
    // Again (a replay): the firing is not journaled twice.
    j.absorb(&change).await.unwrap();
    let states = j.trigger_states("t").await.unwrap();
    assert_eq!(
        states,
        [
            ("k1".to_string(), json!({"count": 5})),
            ("k2".to_string(), json!({"count": 1}))
        ]
    );
    assert!(j.trigger_states("other").await.unwrap().is_empty());
    let pending: Vec<String> = j
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.event.id)
        .collect();
    assert_eq!(pending, ["cause", "firing-1"]);
    let cause = j.event("cause").await.unwrap().unwrap();
    assert_eq!(cause.decisions[0].kind, "absorbed");
    assert_eq!(
        cause.decisions[0].detail.as_deref(),
        Some("counted (5 of 5)")
    );
    let pending = j.pending().await.unwrap();
    assert_eq!(pending[0].settled, ["t"]);
    let timer = TriggerChange {
        route: "t".into(),
        states: vec![("k1".into(), None)],
        ..Default::default()
    };
    j.absorb(&timer).await.unwrap();
    assert_eq!(
        j.trigger_states("t").await.unwrap(),
        [("k2".to_string(), json!({"count": 1}))]
    );
}

/// A write that fails (settling an event the journal does not hold) answers with its error,
/// and the writes committed with it still land.
pub(crate) async fn a_failed_write_takes_no_neighbour_with_it(b: &dyn Backend) {
    let j = b.open().await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let j = Arc::clone(&j);
            tokio::spawn(async move {
                if i % 10 == 0 {
                    // No such event: refused (SQLite's foreign key, PostgreSQL's likewise).
                    return j
                        .settle(&format!("ghost{i}"), "r", &run("x"))
                        .await
                        .is_err();
                }
                let id = format!("e{i}");
                j.accept(&event(&id)).await.unwrap();
                j.settle(&id, "r", &run("x")).await.unwrap();
                j.finish(&id).await.unwrap() == EventStatus::Done
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let done = j
        .list_events(&EventFilter {
            status: Some(EventStatus::Done),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.len(), 180);
    assert!(j.finish("ghost").await.is_err(), "no such event to finish");
}

/// The listing's filters (status, source, name, text, time) and its paging by position.
pub(crate) async fn listing_filters_and_pages(b: &dyn Backend) {
    let j = b.open().await;
    for i in 0..7 {
        let mut e = event(&format!("e{i}"));
        if i % 2 == 0 {
            e.source = "kafka".into();
            e.name = "user.signed_up".into();
            e.payload = json!({"customer": format!("c{i}")});
        }
        j.accept(&e).await.unwrap();
        if i < 3 {
            j.finish(&e.id).await.unwrap();
        }
    }
    let ids = |v: Vec<EventSummary>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let f = |f: EventFilter| EventFilter { limit: 100, ..f };
    let mut pending = ids(j
        .list_events(&f(EventFilter {
            status: Some(EventStatus::Pending),
            ..Default::default()
        }))
        .await
        .unwrap());
    pending.sort();
    assert_eq!(pending, ["e3", "e4", "e5", "e6"]);
    let mut kafka = ids(j
        .list_events(&f(EventFilter {
            source: Some("kafka".into()),
            ..Default::default()
        }))
        .await
        .unwrap());
    kafka.sort();
    assert_eq!(kafka, ["e0", "e2", "e4", "e6"]);
    let named = j
        .list_events(&f(EventFilter {
            name: Some("order.created".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(named.len(), 3);
    let text = ids(j
        .list_events(&f(EventFilter {
            text: Some("\"c4\"".into()),
            ..Default::default()
        }))
        .await
        .unwrap());
    assert_eq!(text, ["e4"]);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(
        j.list_events(&f(EventFilter {
            since: Some(future),
            ..Default::default()
        }))
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        j.list_events(&f(EventFilter {
            until: Some(future),
            ..Default::default()
        }))
        .await
        .unwrap()
        .len(),
        7
    );
    // Pages of two, newest first, each after the last one seen: every event once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = j
            .list_events(&EventFilter {
                limit: 2,
                after,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        seen.extend(page.into_iter().map(|e| e.id));
    }
    seen.sort();
    assert_eq!(seen, ["e0", "e1", "e2", "e3", "e4", "e5", "e6"]);
}

pub(crate) async fn accept_is_idempotent_and_reports_settled_routes(b: &dyn Backend) {
    let j = b.open().await;
    let e = event("e1");
    assert_eq!(j.accept(&e).await.unwrap(), Accepted::New);
    j.settle("e1", "a", &run("r1")).await.unwrap();
    assert_eq!(
        j.accept(&e).await.unwrap(),
        Accepted::Duplicate {
            status: EventStatus::Pending,
            settled: vec!["a".into()]
        }
    );
    assert_eq!(j.finish("e1").await.unwrap(), EventStatus::Done);
    assert!(matches!(
        j.accept(&e).await.unwrap(),
        Accepted::Duplicate {
            status: EventStatus::Done,
            ..
        }
    ));
}

pub(crate) async fn dead_letters_keep_the_reason_and_resolve(b: &dyn Backend) {
    let j = b.open().await;
    j.accept(&event("e1")).await.unwrap();
    j.attempt_failed("e1", "a", 1, "Prefect unavailable", true)
        .await
        .unwrap();
    let dead = Settlement::DeadLettered {
        reason: "deployment X/y not found".into(),
        retryable: false,
        attempts: 2,
    };
    j.settle("e1", "a", &dead).await.unwrap();
    j.settle("e1", "b", &run("ok")).await.unwrap();
    assert_eq!(j.finish("e1").await.unwrap(), EventStatus::Dead);

    let open = j.dead_letters(false, 10).await.unwrap();
    assert_eq!(open.len(), 1);
    let dl = &open[0];
    assert_eq!(
        (
            dl.event_id.as_str(),
            dl.route.as_str(),
            dl.reason.as_str(),
            dl.retryable,
            dl.attempts
        ),
        ("e1", "a", "deployment X/y not found", false, 2)
    );

    let detail = j.event("e1").await.unwrap().unwrap();
    let kinds: Vec<_> = detail
        .decisions
        .iter()
        .map(|d| format!("{}:{}", d.route, d.kind))
        .collect();
    assert_eq!(
        kinds,
        ["a:attempt_failed", "a:dead_lettered", "b:run_created"]
    );
    assert_eq!(detail.status, EventStatus::Dead);

    j.resolve_dead_letter(dl.id, "replayed: run 1")
        .await
        .unwrap();
    assert!(j.dead_letters(false, 10).await.unwrap().is_empty());
    assert_eq!(
        j.dead_letter(dl.id)
            .await
            .unwrap()
            .unwrap()
            .resolution
            .as_deref(),
        Some("replayed: run 1")
    );
    assert_eq!(
        j.event("e1").await.unwrap().unwrap().status,
        EventStatus::Done
    );
    assert!(j.event("nope").await.unwrap().is_none());
}

pub(crate) async fn concurrent_writers_are_group_committed(b: &dyn Backend) {
    let j = b.open().await;
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let j = j.clone();
            tokio::spawn(async move {
                let e = event(&format!("e{i}"));
                j.accept(&e).await.unwrap();
                j.settle(&e.id, "r", &run("x")).await.unwrap();
                j.finish(&e.id).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), EventStatus::Done);
    }
    let listed = j
        .list_events(&EventFilter {
            status: Some(EventStatus::Done),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 500);
    assert!(listed.iter().all(|e| e.runs.len() == 1));
}

pub(crate) async fn retention_prunes_finished_events_only(b: &dyn Backend) {
    let j = b.open().await;
    for i in 0..5 {
        let id = format!("done{i}");
        j.accept(&event(&id)).await.unwrap();
        j.finish(&id).await.unwrap();
    }
    j.accept(&event("pending")).await.unwrap();
    j.accept(&event("dead")).await.unwrap();
    j.settle(
        "dead",
        "a",
        &Settlement::DeadLettered {
            reason: "x".into(),
            retryable: false,
            attempts: 1,
        },
    )
    .await
    .unwrap();
    j.finish("dead").await.unwrap();

    let keep_two = Retention {
        max_age: Duration::from_secs(3600),
        max_events: 2,
    };
    assert_eq!(j.prune(keep_two).await.unwrap(), 3);
    let everything = Retention {
        max_age: Duration::ZERO,
        max_events: 0,
    };
    assert_eq!(j.prune(everything).await.unwrap(), 2);
    assert_eq!(listed(&*j).await, ["dead", "pending"]);
}

pub(crate) async fn an_event_lists_each_of_its_runs_once(b: &dyn Backend) {
    let j = b.open().await;
    j.accept(&event("e1")).await.unwrap();
    let (first, second) = (run("r1"), run("r2"));
    j.settle("e1", "a", &first).await.unwrap();
    j.settle("e1", "b", &second).await.unwrap();
    j.settle("e1", "a", &first).await.unwrap();
    let id = |s: &Settlement| match s {
        Settlement::Ran(r) => r.flow_run_id.to_string(),
        _ => unreachable!(),
    };
    let filter = EventFilter {
        limit: 10,
        ..Default::default()
    };
    let listed = j.list_events(&filter).await.unwrap();
    assert_eq!(listed[0].runs, [id(&first), id(&second)]);
}

pub(crate) async fn skips_are_kept_in_the_event_row_in_their_place_and_found_by_route(
    b: &dyn Backend,
) {
    let j = b.open().await;
    j.accept(&event("e1")).await.unwrap();
    j.settle("e1", "runs", &run("r1")).await.unwrap();
    let skipped = vec![("quiet".to_string(), "when is false".to_string())];
    assert_eq!(
        j.finish_skipped("e1", skipped).await.unwrap(),
        EventStatus::Done
    );
    let d = j.event("e1").await.unwrap().unwrap();
    let kinds: Vec<(&str, &str)> = d
        .decisions
        .iter()
        .map(|d| (d.route.as_str(), d.kind.as_str()))
        .collect();
    assert_eq!(kinds, [("runs", "run_created"), ("quiet", "skipped")]);
    assert_eq!(d.decisions[1].detail.as_deref(), Some("when is false"));
    j.accept(&event("e2")).await.unwrap();
    j.finish("e2").await.unwrap();
    for (route, want) in [
        ("quiet", vec!["e1"]),
        ("runs", vec!["e1"]),
        ("none", vec![]),
    ] {
        assert_eq!(by_route(&*j, route).await, want, "route {route}");
    }
}

pub(crate) async fn an_event_every_route_skips_is_journaled_finished_in_one_write(b: &dyn Backend) {
    let j = b.open().await;
    let skips = vec![
        ("quiet".to_string(), "when is false".to_string()),
        ("other".to_string(), "not for it".to_string()),
    ];
    let e = event("s1");
    assert_eq!(j.accept_skipped(&e, &skips).await.unwrap(), Accepted::New);
    let d = j.event("s1").await.unwrap().unwrap();
    assert_eq!(d.status, EventStatus::Done);
    let history: Vec<(&str, &str, Option<&str>)> = d
        .decisions
        .iter()
        .map(|d| (d.route.as_str(), d.kind.as_str(), d.detail.as_deref()))
        .collect();
    assert_eq!(
        history,
        [
            ("quiet", "skipped", Some("when is false")),
            ("other", "skipped", Some("not for it"))
        ]
    );
    assert!(j.pending().await.unwrap().is_empty(), "nothing pending");
    assert_eq!(
        j.accept_skipped(&e, &skips).await.unwrap(),
        Accepted::Duplicate {
            status: EventStatus::Done,
            settled: vec![]
        }
    );
    assert_eq!(
        j.accept(&e).await.unwrap(),
        Accepted::Duplicate {
            status: EventStatus::Done,
            settled: vec![]
        }
    );
    let mut other = event("s1");
    other.payload = json!({"something": "else"});
    assert_eq!(
        j.accept_skipped(&other, &skips).await.unwrap(),
        Accepted::Conflict
    );
    // No route at all: finished with an empty history.
    assert_eq!(
        j.accept_skipped(&event("s2"), &[]).await.unwrap(),
        Accepted::New
    );
    let d = j.event("s2").await.unwrap().unwrap();
    assert_eq!((d.status, d.decisions.len()), (EventStatus::Done, 0));
    // A pending event under the id is not finished by a skipped delivery of it.
    j.accept(&event("p1")).await.unwrap();
    assert!(matches!(
        j.accept_skipped(&event("p1"), &skips).await.unwrap(),
        Accepted::Duplicate {
            status: EventStatus::Pending,
            ..
        }
    ));
    assert_eq!(by_route(&*j, "other").await, ["s1"]);
    let pruned = j
        .prune(Retention {
            max_events: 0,
            max_age: Duration::from_secs(3600),
        })
        .await
        .unwrap();
    assert_eq!(
        pruned, 2,
        "both finished events retired, the pending one kept"
    );
}

/// What a look found: `state` now, ended or not, due again at once.
fn seen(id: &str, state: (&str, &str), ended: bool) -> RunSeen {
    RunSeen {
        flow_run_id: id.into(),
        state: (state.0.into(), state.1.into()),
        ended,
        next_check: chrono::Utc::now() - chrono::Duration::seconds(1),
    }
}

pub(crate) async fn runs_are_followed_until_they_end(b: &dyn Backend) {
    let j = b.open().await;
    j.accept(&event("e1")).await.unwrap();
    let created = run("r1");
    let Settlement::Ran(r) = &created else {
        unreachable!()
    };
    let id = r.flow_run_id.to_string();
    j.settle("e1", "a", &created).await.unwrap();
    // The same run recorded again (a redelivery) is one run.
    j.settle("e1", "a", &created).await.unwrap();
    let followed = j.followed_run(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            followed.state_type.as_str(),
            followed.event_id.as_str(),
            followed.route.as_str()
        ),
        ("SCHEDULED", "e1", "a")
    );
    assert!(followed.ended_at.is_none());
    // Due at once, then held: asked again within the hold, it is not given out twice.
    let hold = Duration::from_secs(60);
    let due = j.runs_due(10, hold).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].flow_run_id, id);
    assert!(j.runs_due(10, hold).await.unwrap().is_empty());
    // An unchanged state records nothing; a new one is a decision of the event.
    let changed = j
        .runs_seen(vec![seen(&id, ("SCHEDULED", "Scheduled"), false)])
        .await
        .unwrap();
    assert!(changed.is_empty());
    let changed = j
        .runs_seen(vec![seen(&id, ("RUNNING", "Running"), false)])
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert!(!changed[0].ended);
    // Seen again by another look (another instance): recorded once.
    assert!(
        j.runs_seen(vec![seen(&id, ("RUNNING", "Running"), false)])
            .await
            .unwrap()
            .is_empty()
    );
    // Its next look is due (next_check in the past).
    assert_eq!(j.runs_due(10, hold).await.unwrap().len(), 1);
    let changed = j
        .runs_seen(vec![seen(&id, ("COMPLETED", "Completed"), true)])
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].ended);
    assert_eq!(changed[0].run.state_name, "Completed");
    // Ended: never due again, and a late look changes nothing.
    assert!(j.runs_due(10, Duration::ZERO).await.unwrap().is_empty());
    assert!(
        j.runs_seen(vec![seen(&id, ("CRASHED", "Crashed"), true)])
            .await
            .unwrap()
            .is_empty()
    );
    let detail = j.event("e1").await.unwrap().unwrap();
    let states: Vec<_> = detail
        .decisions
        .iter()
        .filter(|d| d.kind == "run_state")
        .map(|d| (d.detail.clone().unwrap_or_default(), d.flow_run_id.clone()))
        .collect();
    assert_eq!(
        states,
        [
            ("Running".to_string(), Some(id.clone())),
            ("Completed".to_string(), Some(id.clone()))
        ]
    );
    assert_eq!(detail.followed.len(), 1);
    assert_eq!(detail.followed[0].state_type, "COMPLETED");
    assert!(detail.followed[0].ended_at.is_some());
    // A run given up on (past following) ends with its state as it was.
    j.accept(&event("e2")).await.unwrap();
    let other = run("r2");
    let Settlement::Ran(o) = &other else {
        unreachable!()
    };
    let other_id = o.flow_run_id.to_string();
    j.settle("e2", "a", &other).await.unwrap();
    assert!(
        j.runs_seen(vec![seen(&other_id, ("SCHEDULED", "Scheduled"), true)])
            .await
            .unwrap()
            .is_empty()
    );
    let given_up = j.followed_run(&other_id).await.unwrap().unwrap();
    assert_eq!(given_up.state_type, "SCHEDULED");
    assert!(given_up.ended_at.is_some());
    assert!(j.runs_due(10, Duration::ZERO).await.unwrap().is_empty());
    assert!(j.followed_run("no-such-run").await.unwrap().is_none());
    // A run under a concurrency key is the key's until it ends.
    j.accept(&event("e3")).await.unwrap();
    let keyed = match run("r3") {
        Settlement::Ran(mut r) => {
            r.concurrency_key = Some("customer-7".into());
            r
        }
        _ => unreachable!(),
    };
    let keyed_id = keyed.flow_run_id.to_string();
    j.settle("e3", "a", &Settlement::Ran(keyed)).await.unwrap();
    let open = j.unfinished_runs("a", "customer-7").await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].flow_run_id, keyed_id);
    assert!(
        j.unfinished_runs("a", "customer-8")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        j.unfinished_runs("b", "customer-7")
            .await
            .unwrap()
            .is_empty()
    );
    j.runs_seen(vec![seen(&keyed_id, ("COMPLETED", "Completed"), true)])
        .await
        .unwrap();
    assert!(
        j.unfinished_runs("a", "customer-7")
            .await
            .unwrap()
            .is_empty()
    );
}
