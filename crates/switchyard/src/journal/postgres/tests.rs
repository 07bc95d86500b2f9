//! The PostgreSQL journal against the machine's server, each test in a database of its own:
//! the contract every store passes, then what only a shared journal does.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use switchyard_testkit::TestDatabase;

use super::*;
use crate::journal::contract::{Backend, event, journal_contract, run};

/// A database of the test's own; every open is the same instance restarting.
struct Postgres(TestDatabase);

impl Postgres {
    fn new() -> Self {
        Self(TestDatabase::create("journal"))
    }

    async fn instance(&self, name: &str, lease: Duration) -> PostgresStore {
        PostgresStore::open(&PostgresOptions {
            url: self.0.url(),
            instance: Some(name.into()),
            lease,
            register: true,
        })
        .await
        .unwrap()
    }
}

impl Backend for Postgres {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>> {
        Box::pin(async move {
            Arc::new(self.instance("only", Duration::from_secs(30)).await) as Arc<dyn Store>
        })
    }
}

journal_contract!(Postgres::new());

/// Lapses an instance's lease at once, as if it had died a lease ago.
fn lapse(db: &TestDatabase, instance: &str) {
    db.query(&format!(
        "UPDATE switchyard.instances SET heartbeat_at = 'epoch' WHERE id = '{instance}'"
    ));
}

/// A retry at another instance finds the first delivery: held there while that instance
/// lives (nothing written), a plain duplicate once it is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_is_unique_across_instances() {
    let pg = Postgres::new();
    let a = pg.instance("a", Duration::from_secs(30)).await;
    let b = pg.instance("b", Duration::from_secs(30)).await;
    let e = event("e1");
    assert_eq!(a.accept(&e).await.unwrap(), Accepted::New);
    assert_eq!(b.accept(&e).await.unwrap(), Accepted::Elsewhere);
    let mut other = event("e1");
    other.payload = serde_json::json!({"n": 2});
    assert_eq!(b.accept(&other).await.unwrap(), Accepted::Conflict);
    // B's sweep does not take what A holds.
    assert!(b.pending().await.unwrap().is_empty());
    a.settle("e1", "r", &run("x")).await.unwrap();
    a.finish("e1").await.unwrap();
    assert_eq!(
        b.accept(&e).await.unwrap(),
        Accepted::Duplicate {
            status: EventStatus::Done,
            settled: vec!["r".into()]
        }
    );
}

/// When an instance's lease lapses, another claims its pending events with what they had
/// settled, and the journal says who owns what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_instances_pending_events_are_claimed_by_another() {
    let pg = Postgres::new();
    let a = pg.instance("a", Duration::from_secs(30)).await;
    let b = pg.instance("b", Duration::from_secs(30)).await;
    for id in ["e1", "e2", "e3"] {
        a.accept(&event(id)).await.unwrap();
    }
    a.settle("e2", "r", &run("x")).await.unwrap();
    let owned = |list: Vec<Instance>| -> Vec<(String, bool, u64, bool)> {
        list.into_iter()
            .map(|i| (i.id, i.alive, i.pending, i.this))
            .collect()
    };
    assert_eq!(
        owned(b.instances().await.unwrap()),
        [("a".into(), true, 3, false), ("b".into(), true, 0, true)]
    );
    lapse(&pg.0, "a");
    // A redelivery at B takes the event over, with what it had settled.
    assert_eq!(
        b.accept(&event("e2")).await.unwrap(),
        Accepted::Duplicate {
            status: EventStatus::Pending,
            settled: vec!["r".into()]
        }
    );
    // The sweep takes the rest.
    let claimed: Vec<String> = b
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.event.id)
        .collect();
    assert_eq!(claimed, ["e1", "e2", "e3"]);
    assert_eq!(
        owned(b.instances().await.unwrap()),
        [("a".into(), false, 0, false), ("b".into(), true, 3, true)]
    );
    // A, back, finds them held elsewhere.
    assert_eq!(a.accept(&event("e1")).await.unwrap(), Accepted::Elsewhere);
}

/// Instances that sweep at once each claim a share, never the same event twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_never_take_an_event_twice() {
    let pg = Postgres::new();
    let dead = pg.instance("dead", Duration::from_secs(30)).await;
    let n = 600;
    let accepts: Vec<_> = (0..n)
        .map(|i| {
            let d = dead.clone();
            tokio::spawn(async move { d.accept(&event(&format!("e{i}"))).await.unwrap() })
        })
        .collect();
    for t in accepts {
        assert_eq!(t.await.unwrap(), Accepted::New);
    }
    lapse(&pg.0, "dead");
    let mut claimers = Vec::new();
    for name in ["x", "y", "z"] {
        claimers.push(pg.instance(name, Duration::from_secs(30)).await);
    }
    let sweeps: Vec<_> = claimers
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = c.pending_before(None, 50).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    // Claimed, then finished, as the sweep's resumption does.
                    let fresh: Vec<String> = got.into_iter().map(|p| p.event.id).collect();
                    for id in &fresh {
                        c.finish(id).await.unwrap();
                    }
                    mine.extend(fresh);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for s in sweeps {
        all.extend(s.await.unwrap());
    }
    let count = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        (count, all.len()),
        (n, n),
        "each event claimed exactly once"
    );
}

/// Instances that open a fresh database together migrate it once; a database from a newer
/// switchyard is refused, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_start_together_migrate_once() {
    let pg = Postgres::new();
    let opens: Vec<_> = (0..3)
        .map(|i| {
            let url = pg.0.url();
            tokio::spawn(async move {
                PostgresStore::open(&PostgresOptions {
                    url,
                    instance: Some(format!("i{i}")),
                    lease: Duration::from_secs(30),
                    register: true,
                })
                .await
                .map(|_| ())
            })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    assert_eq!(
        pg.0.query("SELECT value FROM switchyard.meta WHERE key = 'schema_version'"),
        SCHEMA_VERSION.to_string()
    );
    pg.0.query("UPDATE switchyard.meta SET value = '99' WHERE key = 'schema_version'");
    let refused = PostgresStore::open(&PostgresOptions {
        url: pg.0.url(),
        instance: None,
        lease: Duration::from_secs(30),
        register: true,
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(refused.contains("schema version 99 is newer"), "{refused}");
}

/// A name another live instance holds is refused once its lease has had time to lapse and
/// has not; a database that cannot be reached is named, its password masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_name_and_an_unreachable_database_are_refused_clearly() {
    let pg = Postgres::new();
    let _a = pg.instance("a", Duration::from_secs(30)).await;
    // Another process's row: a different pid, renewed just now.
    pg.0.query(
        "UPDATE switchyard.instances SET pid = pid + 1, heartbeat_at = now() WHERE id = 'a'",
    );
    let opts = PostgresOptions {
        url: pg.0.url(),
        instance: Some("a".into()),
        lease: Duration::from_secs(1),
        register: true,
    };
    let taken = PostgresStore::open(&opts);
    // A live instance keeps renewing; the open gives up once the lease has had time to
    // lapse (a second here, and one more).
    let db = &pg.0;
    let renew = async {
        loop {
            db.query("UPDATE switchyard.instances SET heartbeat_at = now() WHERE id = 'a'");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let refused = tokio::select! {
        r = taken => r,
        () = renew => unreachable!(),
    };
    let refused = refused.err().unwrap().to_string();
    assert!(refused.contains("is alive"), "{refused}");

    let port = switchyard_testkit::free_port();
    let unreachable = PostgresStore::open(&PostgresOptions {
        url: format!("postgres://postgres:hunter2@127.0.0.1:{port}/none"),
        instance: None,
        lease: Duration::from_secs(30),
        register: true,
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(unreachable.contains("cannot connect"), "{unreachable}");
    assert!(!unreachable.contains("hunter2"), "{unreachable}");
}

/// A SQLite journal moves whole: every event with its history, its dead letters and the
/// trigger buckets; pending events are claimed by the first instance; a second run copies
/// nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_journal_migrates_whole_and_a_second_run_copies_nothing_twice() {
    let dir = switchyard_testkit::TempDir::new("migrate");
    let file = dir.path().join("j.db");
    {
        let j = crate::journal::SqliteStore::open(&file).unwrap();
        for id in ["done", "dead", "waiting"] {
            j.accept(&event(id)).await.unwrap();
        }
        j.settle("done", "a", &run("r1")).await.unwrap();
        j.finish_skipped("done", vec![("b".into(), "not for it".into())])
            .await
            .unwrap();
        j.attempt_failed("dead", "a", 1, "Prefect down", true)
            .await
            .unwrap();
        let dead = Settlement::DeadLettered {
            reason: "deployment gone".into(),
            retryable: false,
            attempts: 2,
        };
        j.settle("dead", "a", &dead).await.unwrap();
        j.finish("dead").await.unwrap();
        j.settle("waiting", "a", &run("r2")).await.unwrap();
        j.absorb(&TriggerChange {
            route: "t".into(),
            states: vec![("k".into(), Some(serde_json::json!({"count": 2})))],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let pg = Postgres::new();
    let target = PostgresStore::open(&PostgresOptions {
        url: pg.0.url(),
        instance: None,
        lease: Duration::from_secs(30),
        register: false,
    })
    .await
    .unwrap();
    let m = target.import_sqlite(&file).await.unwrap();
    assert_eq!(
        (
            m.events,
            m.pending,
            m.decisions,
            m.dead_letters,
            m.trigger_states,
            m.skipped
        ),
        (3, 1, 4, 1, 1, 0)
    );
    let again = target.import_sqlite(&file).await.unwrap();
    assert_eq!((again.events, again.skipped, again.decisions), (0, 3, 0));

    let sqlite = crate::journal::SqliteStore::open(&file).unwrap();
    let a = pg.instance("first", Duration::from_secs(30)).await;
    for id in ["done", "dead", "waiting"] {
        let (from, to) = (
            sqlite.event(id).await.unwrap().unwrap(),
            a.event(id).await.unwrap().unwrap(),
        );
        assert_eq!(from.event, to.event, "{id}");
        assert_eq!(from.status, to.status, "{id}");
        let kinds = |d: &EventDetail| -> Vec<(String, String, Option<String>)> {
            d.decisions
                .iter()
                .map(|x| (x.route.clone(), x.kind.clone(), x.detail.clone()))
                .collect()
        };
        assert_eq!(kinds(&from), kinds(&to), "{id}");
        // Runs being followed go on being followed.
        assert_eq!(from.followed, to.followed, "{id}");
    }
    assert_eq!(
        a.runs_due(10, Duration::from_secs(60)).await.unwrap().len(),
        2
    );
    let dl = a.dead_letters(false, 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].reason, "deployment gone");
    assert_eq!(
        a.trigger_states("t").await.unwrap(),
        [("k".to_string(), serde_json::json!({"count": 2}))]
    );
    let pending = a.pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].event.id.as_str(), pending[0].settled.clone()),
        ("waiting", vec!["a".to_string()])
    );
    assert_eq!(a.instances().await.unwrap()[0].pending, 1, "claimed");
}
