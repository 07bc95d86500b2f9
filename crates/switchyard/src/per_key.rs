//! Per-key concurrency (`concurrency: {key, limit}` on a route): at most `limit` runs of the
//! route that have not ended per key. An event whose key is busy waits, and when a run of
//! the key ends the earliest-received waiting event starts next.
//!
//! What runs are unfinished is the journal's: the first time a key is asked for (after a
//! start, or once the key has been idle), its unfinished runs are read from the journal
//! ([`Store::unfinished_runs`]), so a restart does not start a second run beside one still
//! running. A key with nothing running and no one waiting is forgotten (memory follows the
//! keys in use, not every key ever seen). Each running run is watched through the
//! [`Follower`] until it ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, oneshot};
use tokio_util::sync::CancellationToken;

use crate::follow::Follower;
use crate::journal::{JournalError, Store};

/// How long one wait on a run's end lasts before it is asked again.
const WATCH: Duration = Duration::from_secs(300);

/// One key's runs and waiters.
#[derive(Default)]
struct Key {
    /// Runs not ended, by id.
    running: HashSet<String>,
    /// Slots handed out whose run is being created.
    reserved: usize,
    /// Events waiting, earliest received first.
    waiting: BTreeMap<(DateTime<Utc>, String), oneshot::Sender<()>>,
}

impl Key {
    fn busy(&self) -> usize {
        self.running.len() + self.reserved
    }

    fn idle(&self) -> bool {
        self.running.is_empty() && self.reserved == 0 && self.waiting.is_empty()
    }
}

/// A route's per-key limit.
pub struct PerKey {
    route: String,
    limit: usize,
    keys: Mutex<HashMap<String, Key>>,
}

impl std::fmt::Debug for PerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PerKey({}, limit {})", self.route, self.limit)
    }
}

/// Why no slot was given.
#[derive(Debug)]
pub enum Refused {
    /// Shutdown came first.
    Interrupted,
    /// The journal could not say what runs.
    Journal(JournalError),
}

/// A place among a key's `limit`: held while the run is created, then by the run until it
/// ends ([`Slot::bind`]); given back when dropped unbound (no run was created).
pub struct Slot {
    limiter: Arc<PerKey>,
    key: String,
    bound: bool,
}

impl PerKey {
    /// The limit of `route`.
    pub fn new(route: &str, limit: u32) -> Arc<Self> {
        Arc::new(Self {
            route: route.to_string(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
            keys: Mutex::default(),
        })
    }

    /// Waits for a place under `key` for an event received at `received` (`id` breaks ties).
    pub async fn acquire(
        self: &Arc<Self>,
        key: &str,
        received: DateTime<Utc>,
        id: &str,
        journal: &Arc<dyn Store>,
        follower: &Arc<Follower>,
        interrupt: &CancellationToken,
    ) -> Result<Slot, Refused> {
        let wait = {
            let mut keys = self.keys.lock().await;
            if !keys.contains_key(key) {
                // Read under the lock: no other event of the key gets ahead of what runs.
                let runs = journal
                    .unfinished_runs(&self.route, key)
                    .await
                    .map_err(Refused::Journal)?;
                let mut k = Key::default();
                for r in runs {
                    k.running.insert(r.flow_run_id.clone());
                    self.watch(key.to_string(), r.flow_run_id, Arc::clone(follower));
                }
                keys.insert(key.to_string(), k);
            }
            let Some(k) = keys.get_mut(key) else {
                return Err(Refused::Interrupted);
            };
            if k.busy() < self.limit && k.waiting.is_empty() {
                k.reserved += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                k.waiting.insert((received, id.to_string()), tx);
                tracing::info!(route = %self.route, key, running = k.running.len(), waiting = k.waiting.len(), "concurrency key busy; the event waits");
                Some(rx)
            }
        };
        if let Some(rx) = wait {
            tokio::select! {
                granted = rx => {
                    if granted.is_err() {
                        return Err(Refused::Interrupted);
                    }
                }
                _ = interrupt.cancelled() => {
                    self.leave(key, received, id).await;
                    return Err(Refused::Interrupted);
                }
            }
        }
        Ok(Slot {
            limiter: Arc::clone(self),
            key: key.to_string(),
            bound: false,
        })
    }

    /// A waiter that gave up: out of the line (or, granted meanwhile, its place given on).
    async fn leave(self: &Arc<Self>, key: &str, received: DateTime<Utc>, id: &str) {
        let mut keys = self.keys.lock().await;
        if let Some(k) = keys.get_mut(key)
            && k.waiting.remove(&(received, id.to_string())).is_none()
        {
            // Granted just as it left: the reservation is its.
            k.reserved = k.reserved.saturating_sub(1);
            self.grant(k);
        }
        Self::forget_idle(&mut keys, key);
    }

    /// Hands free places to the earliest waiters.
    fn grant(&self, k: &mut Key) {
        while k.busy() < self.limit {
            let Some((_, tx)) = k.waiting.pop_first() else {
                return;
            };
            k.reserved += 1;
            if tx.send(()).is_err() {
                k.reserved -= 1;
            }
        }
    }

    fn forget_idle(keys: &mut HashMap<String, Key>, key: &str) {
        if keys.get(key).is_some_and(Key::idle) {
            keys.remove(key);
        }
    }

    /// Watches run `id` of `key` until it ends, then frees its place.
    fn watch(self: &Arc<Self>, key: String, id: String, follower: Arc<Follower>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            if let Ok(uuid) = uuid::Uuid::parse_str(&id) {
                loop {
                    match follower.ended(uuid, WATCH).await {
                        Some(r) if r.ended_at.is_none() => {
                            // Not ended (or too many waits at once): ask again shortly.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        _ => break,
                    }
                }
            }
            let mut keys = me.keys.lock().await;
            if let Some(k) = keys.get_mut(&key) {
                k.running.remove(&id);
                me.grant(k);
            }
            Self::forget_idle(&mut keys, &key);
        });
    }
}

impl Slot {
    /// Its key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The run created in this place: it holds the place until it ends.
    pub async fn bind(mut self, flow_run_id: &str, follower: &Arc<Follower>) {
        self.bound = true;
        let limiter = Arc::clone(&self.limiter);
        let mut keys = limiter.keys.lock().await;
        if let Some(k) = keys.get_mut(&self.key) {
            k.reserved = k.reserved.saturating_sub(1);
            k.running.insert(flow_run_id.to_string());
        }
        drop(keys);
        limiter.watch(
            self.key.clone(),
            flow_run_id.to_string(),
            Arc::clone(follower),
        );
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.bound {
            return;
        }
        // No run was created: the place goes to the next waiter (no runtime: the process is
        // ending, and the place with it).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (limiter, key) = (Arc::clone(&self.limiter), self.key.clone());
        runtime.spawn(async move {
            let mut keys = limiter.keys.lock().await;
            if let Some(k) = keys.get_mut(&key) {
                k.reserved = k.reserved.saturating_sub(1);
                limiter.grant(k);
            }
            PerKey::forget_idle(&mut keys, &key);
        });
    }
}
