//! The HTTP listener: a connection loop that sheds abuse before it reaches the hooks.
//!
//! - **A cap on connections** (`http.max_connections`, and never more than the open-file
//!   limit allows, whose soft value is raised to the hard one at start). When the cap is
//!   reached, the connection that has waited longest *without a request in progress* is closed
//!   to make room; only when every connection is mid-request is the newcomer turned away.
//!   So thousands of slow or idle clients cannot lock out a normal one.
//! - **Timeouts**: a connection must send a request's headers within `http.header_timeout`
//!   (hyper's header timer, and a reaper that also covers a client trickling bytes), may sit
//!   idle between keep-alive requests for `http.idle_timeout`, and must send its body within
//!   `http.body_timeout` (the hooks answer 408 after it).
//! - **TLS** when `http.tls` is set; a handshake must finish within the header timeout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Files kept free for everything but connections (journal, brokers, Prefect, logs).
const RESERVED_FILES: u64 = 128;
/// How long an in-progress request may finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// The listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See `http.header_timeout`.
    pub header_timeout: Duration,
    /// See `http.idle_timeout`.
    pub idle_timeout: Duration,
    /// Connections at once.
    pub max_connections: usize,
}

/// Raises the soft open-file limit to the hard one; returns the soft limit now in force.
pub fn raise_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Some(lim.rlim_cur)
}

/// The connection cap: the configured one, but below the open-file limit.
pub fn connection_cap(configured: usize, file_limit: Option<u64>) -> usize {
    match file_limit {
        Some(files) => {
            let room =
                usize::try_from(files.saturating_sub(RESERVED_FILES).max(16)).unwrap_or(usize::MAX);
            configured.min(room)
        }
        None => configured,
    }
}

struct Conn {
    /// Requests in progress on it.
    busy: AtomicUsize,
    /// Accepted, or its last request ended.
    since: Mutex<Instant>,
    /// Whether it has completed a request (then the idle timeout applies, else the header one).
    served: AtomicUsize,
    close: CancellationToken,
}

impl Conn {
    fn since(&self) -> Instant {
        *self.since.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Registry {
    next: u64,
    conns: BTreeMap<u64, Arc<Conn>>,
}

type Shared = Arc<Mutex<Registry>>;

fn registry(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes room for one more connection: closes the one waiting longest without a request in
/// progress. `false` when every connection is mid-request.
fn make_room(r: &Shared, cap: usize) -> bool {
    let reg = registry(r);
    // Connections already told to close are on their way out: they do not count.
    let live = reg
        .conns
        .values()
        .filter(|c| !c.close.is_cancelled())
        .count();
    if live < cap {
        return true;
    }
    let victim = reg
        .conns
        .values()
        .filter(|c| c.busy.load(Ordering::SeqCst) == 0 && !c.close.is_cancelled())
        .min_by_key(|c| c.since());
    match victim {
        Some(c) => {
            c.close.cancel();
            true
        }
        None => false,
    }
}

/// Closes connections past their header or idle timeout.
fn reap(r: &Shared, limits: &Limits) -> usize {
    let now = Instant::now();
    let reg = registry(r);
    let mut closed = 0;
    for c in reg.conns.values() {
        if c.busy.load(Ordering::SeqCst) > 0 || c.close.is_cancelled() {
            continue;
        }
        let limit = if c.served.load(Ordering::SeqCst) > 0 {
            limits.idle_timeout
        } else {
            limits.header_timeout
        };
        if now.saturating_duration_since(c.since()) >= limit {
            c.close.cancel();
            closed += 1;
        }
    }
    closed
}

/// Marks a request in progress on its connection until dropped.
struct InProgress(Arc<Conn>);

impl InProgress {
    fn new(conn: &Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(conn))
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.served.fetch_add(1, Ordering::SeqCst);
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` on `listener` until `stop`, over TLS when `tls` is set (the handshake counts
/// against the header timeout).
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let reg: Shared = Arc::default();
    let reaper = {
        let (reg, stop) = (Arc::clone(&reg), stop.clone());
        let every = limits
            .header_timeout
            .min(limits.idle_timeout)
            .div_f64(4.0)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let closed = reap(&reg, &limits);
                if closed > 0 {
                    tracing::debug!(
                        closed,
                        "closed connections past their header or idle timeout"
                    );
                }
            }
        })
    };
    let tasks = tokio_util::task::TaskTracker::new();
    let mut refused: u64 = 0;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of files (EMFILE/ENFILE) or a connection reset before accept: make room
                // and go on; a short pause keeps a persistent error from spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                make_room(&reg, 0);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !make_room(&reg, limits.max_connections) {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    max_connections = limits.max_connections,
                    "every connection is mid-request; turned a new one away"
                );
            }
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
            served: AtomicUsize::new(0),
            close: stop.child_token(),
        });
        let id = {
            let mut r = registry(&reg);
            r.next += 1;
            let id = r.next;
            r.conns.insert(id, Arc::clone(&conn));
            id
        };
        let (app, reg, stop, tls) = (app.clone(), Arc::clone(&reg), stop.clone(), tls.clone());
        tasks.spawn(async move {
            match tls {
                None => serve_one(stream, app, &conn, &limits, &stop).await,
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        _ = conn.close.cancelled() => None,
                        s = acceptor.accept(stream) => Some(s),
                    };
                    match handshake {
                        Some(Ok(stream)) => serve_one(stream, app, &conn, &limits, &stop).await,
                        Some(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        None => {}
                    }
                }
            }
            registry(&reg).conns.remove(&id);
        });
    }
    reaper.abort();
    tasks.close();
    tasks.wait().await;
}

async fn serve_one<S>(
    stream: S,
    app: Router,
    conn: &Arc<Conn>,
    limits: &Limits,
    stop: &CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let for_service = Arc::clone(conn);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = InProgress::new(&for_service);
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(guard);
            resp
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        _ = conn.close.cancelled() => {
            if stop.is_cancelled() {
                // Shutdown: let a request in progress finish, then close.
                served.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN, served.as_mut()).await;
            }
            // Otherwise shed (timeout or room needed): dropping closes the socket.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        assert_eq!(connection_cap(4096, Some(1024)), 896);
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(4096, Some(10)), 16);
        assert_eq!(connection_cap(4096, None), 4096);
    }

    fn conn(busy: usize, age: Duration) -> Arc<Conn> {
        Arc::new(Conn {
            busy: AtomicUsize::new(busy),
            since: Mutex::new(Instant::now() - age),
            served: AtomicUsize::new(0),
            close: CancellationToken::new(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn room_is_made_by_closing_the_oldest_idle_connection() {
        tokio::time::advance(Duration::from_secs(100)).await;
        let reg: Shared = Arc::default();
        let (old_busy, old_idle, new_idle) = (
            conn(1, Duration::from_secs(30)),
            conn(0, Duration::from_secs(20)),
            conn(0, Duration::from_secs(10)),
        );
        for (i, c) in [&old_busy, &old_idle, &new_idle].into_iter().enumerate() {
            registry(&reg).conns.insert(i as u64, Arc::clone(c));
        }
        assert!(make_room(&reg, 10), "below the cap nothing is closed");
        assert!(!old_idle.close.is_cancelled());
        assert!(make_room(&reg, 3));
        assert!(old_idle.close.is_cancelled(), "the oldest idle one goes");
        assert!(!old_busy.close.is_cancelled() && !new_idle.close.is_cancelled());
        registry(&reg).conns.remove(&1);
        new_idle.busy.store(1, Ordering::SeqCst);
        assert!(
            !make_room(&reg, 2),
            "everyone mid-request: the newcomer is refused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_reaper_applies_the_header_and_idle_timeouts() {
        tokio::time::advance(Duration::from_secs(100)).await;
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10,
        };
        let reg: Shared = Arc::default();
        let silent = conn(0, Duration::from_secs(11));
        let kept_alive = conn(0, Duration::from_secs(11));
        kept_alive.served.store(1, Ordering::SeqCst);
        let working = conn(1, Duration::from_secs(90));
        for (i, c) in [&silent, &kept_alive, &working].into_iter().enumerate() {
            registry(&reg).conns.insert(i as u64, Arc::clone(c));
        }
        assert_eq!(reap(&reg, &limits), 1);
        assert!(silent.close.is_cancelled());
        assert!(!kept_alive.close.is_cancelled() && !working.close.is_cancelled());
    }
}
