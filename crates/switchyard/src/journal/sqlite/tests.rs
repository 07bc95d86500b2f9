use std::sync::Arc;

use futures::future::BoxFuture;
use switchyard_testkit::TempDir;

use super::*;
use crate::journal::contract::{Backend, journal_contract};

/// A journal file in a directory of its own.
struct Sqlite(TempDir);

impl Backend for Sqlite {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>> {
        let path = self.0.path().join("nested/dir/j.db");
        Box::pin(async move { Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Store> })
    }
}

journal_contract!(Sqlite(TempDir::new("journal")));

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
    assert_eq!(version, "4");
    let indexes: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(indexes, ["events_pending", "events_retired"]);
}
