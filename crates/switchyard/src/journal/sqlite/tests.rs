use std::time::Duration;

use serde_json::json;
use switchyard_core::Event;
use switchyard_testkit::TempDir;
use uuid::Uuid;

use super::*;
use crate::actions::RunCreated;

fn event(id: &str) -> Event {
    Event::builder("hooks", "order.created", json!({"n": 1}))
        .id(id)
        .label("k", "v")
        .build()
}

/// The ids of the events the journal lists (newest first, up to 100).
async fn listed(j: &SqliteStore) -> Vec<String> {
    let filter = EventFilter {
        limit: 100,
        ..Default::default()
    };
    let events = j.list_events(&filter).await.unwrap();
    events.into_iter().map(|e| e.id).collect()
}

/// The ids of the events a `--route` filter finds (newest first, up to 10).
async fn by_route(j: &SqliteStore, route: &str) -> Vec<String> {
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

fn run(name: &str) -> Settlement {
    Settlement::Ran(RunCreated {
        deployment: "Flow/dep".into(),
        deployment_id: Uuid::new_v4(),
        flow_run_id: Uuid::new_v4(),
        flow_run_name: name.into(),
        replayed: false,
    })
}

#[tokio::test]
async fn accept_is_idempotent_and_reports_settled_routes() {
    let dir = TempDir::new("journal");
    let j = SqliteStore::open(&dir.path().join("j.db")).unwrap();
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

#[tokio::test]
async fn pending_events_survive_a_reopen_with_their_settled_routes() {
    let dir = TempDir::new("journal");
    let path = dir.path().join("nested/dir/j.db");
    {
        let j = SqliteStore::open(&path).unwrap();
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
    let j = SqliteStore::open(&path).unwrap();
    let pending = j.pending().await.unwrap();
    let ids: Vec<_> = pending
        .iter()
        .map(|p| (p.event.id.as_str(), p.settled.clone()))
        .collect();
    assert_eq!(ids, [("e2", vec!["a".to_string()]), ("e3", vec![])]);
    assert_eq!(
        pending[0].event,
        event("e2").clone_with_times(&pending[0].event)
    );
}

trait SameTimes {
    fn clone_with_times(self, other: &Event) -> Event;
}
impl SameTimes for Event {
    fn clone_with_times(mut self, other: &Event) -> Event {
        self.occurred = other.occurred;
        self.received = other.received;
        self
    }
}

#[tokio::test]
async fn dead_letters_keep_the_reason_and_resolve() {
    let dir = TempDir::new("journal");
    let j = SqliteStore::open(&dir.path().join("j.db")).unwrap();
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

#[tokio::test]
async fn concurrent_writers_are_group_committed() {
    let dir = TempDir::new("journal");
    let j = SqliteStore::open(&dir.path().join("j.db")).unwrap();
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

#[tokio::test]
async fn retention_prunes_finished_events_only() {
    let dir = TempDir::new("journal");
    let j = SqliteStore::open(&dir.path().join("j.db")).unwrap();
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
    assert_eq!(listed(&j).await, ["dead", "pending"]);
}

/// Retention past one chunk keeps exactly the newest `max_events`, oldest going first, and
/// leaves the journal taking writes between its chunks.
#[tokio::test]
async fn retention_deletes_in_chunks_and_keeps_the_newest() {
    let dir = TempDir::new("journal");
    let j = SqliteStore::open(&dir.path().join("j.db")).unwrap();
    let n = PRUNE_CHUNK * 2 + 44;
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
    let left = listed(&j).await;
    let newest: Vec<String> = (n - 10..n).rev().map(|i| format!("e{i:04}")).collect();
    assert_eq!(left, newest);
}

/// A run recorded twice for one event (a redelivery found the run it started) is listed once.
#[tokio::test]
async fn an_event_lists_each_of_its_runs_once() {
    let dir = TempDir::new("journal");
    let j = SqliteStore::open(&dir.path().join("j.db")).unwrap();
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

#[tokio::test]
async fn skips_are_kept_in_the_event_row_in_their_place_and_found_by_route() {
    let dir = TempDir::new("journal");
    let j = SqliteStore::open(&dir.path().join("j.db")).unwrap();
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
        assert_eq!(by_route(&j, route).await, want, "route {route}");
    }
}

/// An event every route skips is journaled finished in one write, with its skips as its
/// history; a second delivery finds it (a duplicate, settled; a conflict when the message
/// differs) and writes nothing; and it is retired by retention like any finished event.
#[tokio::test]
async fn an_event_every_route_skips_is_journaled_finished_in_one_write() {
    let dir = TempDir::new("journal");
    let j = SqliteStore::open(&dir.path().join("j.db")).unwrap();
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
    assert_eq!(by_route(&j, "other").await, ["s1"]);
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

/// A journal written by version 2 (skips as decision rows, full status indexes) opens as
/// version 3 with its history intact, and takes new events the new way.
#[tokio::test]
async fn a_version_2_journal_migrates_and_keeps_its_history() {
    let dir = TempDir::new("journal");
    let path = dir.path().join("old.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '2');
             CREATE TABLE events (id TEXT PRIMARY KEY, source TEXT NOT NULL, name TEXT NOT NULL,
                 occurred TEXT NOT NULL, received TEXT NOT NULL, payload TEXT NOT NULL,
                 labels TEXT NOT NULL, status TEXT NOT NULL, accepted_at INTEGER NOT NULL,
                 finished_at INTEGER, digest TEXT);
             CREATE INDEX events_status ON events (status, accepted_at);
             CREATE INDEX events_done ON events (status, finished_at);
             CREATE TABLE decisions (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
                 route TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT, flow_run_id TEXT, flow_run_name TEXT,
                 deployment TEXT, replayed INTEGER, attempt INTEGER, at INTEGER NOT NULL);
             INSERT INTO events VALUES ('old', 'hooks', 'n', '2026-01-01T00:00:00+00:00',
                 '2026-01-01T00:00:00+00:00', '{}', '{}', 'done', 1, 2, NULL);
             INSERT INTO events VALUES ('waiting', 'hooks', 'n', '2026-01-01T00:00:00+00:00',
                 '2026-01-01T00:00:00+00:00', '{}', '{}', 'pending', 1, NULL, NULL);
             INSERT INTO decisions (event_id, route, kind, detail, at) VALUES ('old', 'r', 'skipped', 'no', 2);",
        )
        .unwrap();
    }
    let j = SqliteStore::open(&path).unwrap();
    let d = j.event("old").await.unwrap().unwrap();
    assert_eq!(d.decisions.len(), 1);
    assert_eq!(d.decisions[0].kind, "skipped");
    let pending: Vec<String> = j
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.event.id)
        .collect();
    assert_eq!(pending, ["waiting"]);
    j.finish_skipped("waiting", vec![("r".into(), "no".into())])
        .await
        .unwrap();
    assert!(j.pending().await.unwrap().is_empty());
    drop(j);
    let c = Connection::open(&path).unwrap();
    let version: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "3");
    let indexes: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(indexes, ["events_pending", "events_retired"]);
}
