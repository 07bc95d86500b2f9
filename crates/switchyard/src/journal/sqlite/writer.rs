//! The writer thread: group commit, a savepoint per job that writes more than once, answers
//! only after COMMIT.

use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::Job;
use crate::journal::faults::Faults;

/// Jobs committed together at most: enough for every source's accepts in flight at once
/// (`engine.accepts_in_flight`, 256 each by default) to share one commit.
const MAX_JOBS: usize = 1024;

/// Runs the jobs in `rx` until every sender is gone. Between two transactions, when the
/// checkpointer has set `finish_checkpoint`, it finishes the checkpoint the checkpointer could
/// not (see `checkpoints` in the parent module).
pub(super) fn writer(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    fault: &Faults,
    finish_checkpoint: &AtomicBool,
) {
    while let Some(first) = rx.blocking_recv() {
        if finish_checkpoint.swap(false, Ordering::AcqRel) {
            // Passive: it copies what the checkpointer left; a reader still on an older
            // snapshot only keeps the WAL from starting over until the next time.
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            let msg = format!("cannot start a transaction: {e}");
            for job in jobs {
                let (_, reply) = (job.work)(Err(&msg));
                reply(None);
            }
            continue;
        }
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !job.savepoint {
                // One statement at most: a failed one has undone itself.
                let (_, reply) = (job.work)(Ok(&conn));
                replies.push(reply);
                continue;
            }
            let _ = exec(&conn, "SAVEPOINT job");
            let (ok, reply) = (job.work)(Ok(&conn));
            if ok {
                let _ = exec(&conn, "RELEASE job");
            } else {
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            }
            replies.push(reply);
        }
        let commit = exec(&conn, "COMMIT").err().map(|e| {
            fault.set_transient(Some(format!("commit failed: {e}")));
            e.to_string()
        });
        if commit.is_some() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(commit.as_deref());
        }
    }
}

/// Runs a statement from the cache (transaction control runs several times per job).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
