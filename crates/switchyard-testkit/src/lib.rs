//! Test harness for Switchyard's black-box tests.
//!
//! * [`PrefectServer::shared`] — one real Prefect server per test binary, installed by
//!   `scripts/prefect-env.sh`, on a free loopback port with a fresh home directory. It is
//!   killed and its directory removed when the test binary exits (an exit hook), and killed by
//!   the kernel if the binary dies (parent-death signal).
//!   With `SWITCHYARD_PREFECT_DATABASE=postgres` its database is a fresh PostgreSQL database on
//!   the machine's server (127.0.0.1:5432, user `postgres`, trust auth; `SWITCHYARD_PREFECT_PG`
//!   overrides the address), created with `psql` and dropped at exit, instead of SQLite.
//! * [`ChildGuard`] — a child process killed when the guard drops.
//! * [`wait_until`] — polls a condition against a deadline (tests never sleep a fixed time).
//! * [`TempDir`], [`free_port`].

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system temp dir.
    pub fn new(prefix: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that is killed (and reaped) when the guard drops.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `cmd`, asking the kernel to kill it if this process dies first.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        die_with_parent(cmd);
        Ok(Self {
            child: Some(cmd.spawn()?),
        })
    }

    /// The child, e.g. to take its stdin.
    pub fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .unwrap_or_else(|| unreachable!("child taken only on drop"))
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends a signal (e.g. `libc::SIGINT`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Waits for the child to exit, up to `deadline`; returns its exit code (None if killed
    /// by a signal). Panics when the deadline passes.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            match self.child().try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if start.elapsed() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => panic!("process {} did not exit within {deadline:?}", self.pid()),
                Err(e) => panic!("waiting for {}: {e}", self.pid()),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls the async-signal-safe
    // prctl(2).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Polls `cond` every 50 ms until it returns `Some`, or panics with `what` after `deadline`.
pub fn wait_until<T>(what: &str, deadline: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_until`] for async conditions: polls every 10 ms for up to 30 s (tokio's clock, so a
/// paused clock advances by itself).
pub async fn wait_until_async<T, F, Fut>(what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Duration::from_secs(30);
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The workspace root (where `scripts/` and `.prefect-venv/` live).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("scripts").join("prefect-env.sh").exists())
        .map(Path::to_path_buf)
        .unwrap_or(here)
}

/// A real Prefect server started for this test binary.
pub struct PrefectServer {
    /// `http://127.0.0.1:PORT/api`.
    pub api_url: String,
    /// Its home directory (database, logs).
    pub home: PathBuf,
}

impl PrefectServer {
    /// What its database is: `"PostgreSQL"` or `"SQLite"` (for benches to print).
    pub fn database_kind(&self) -> &'static str {
        if SERVER_DATABASE.get().is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }
}

static SERVER: OnceLock<PrefectServer> = OnceLock::new();
static SERVER_PID: AtomicI32 = AtomicI32::new(0);
static SERVER_HOME: OnceLock<PathBuf> = OnceLock::new();
static SERVER_DATABASE: OnceLock<PostgresDatabase> = OnceLock::new();

/// A PostgreSQL database made for one Prefect server: created on [`PostgresDatabase::create`],
/// dropped (with its connections) on [`PostgresDatabase::drop_now`].
struct PostgresDatabase {
    /// `host:port`.
    address: String,
    name: String,
}

impl PostgresDatabase {
    fn create() -> Self {
        Self::named(format!("switchyard_prefect_{}", std::process::id()))
    }

    fn named(name: String) -> Self {
        let address =
            std::env::var("SWITCHYARD_PREFECT_PG").unwrap_or_else(|_| "127.0.0.1:5432".into());
        let me = Self { address, name };
        // A database left by an earlier process with the same id goes first.
        me.drop_now();
        me.psql(&format!("CREATE DATABASE {}", me.name));
        me
    }

    /// The SQLAlchemy URL Prefect connects with.
    fn url(&self) -> String {
        format!(
            "postgresql+asyncpg://postgres@{}/{}",
            self.address, self.name
        )
    }

    fn drop_now(&self) {
        self.psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }

    /// Runs one statement in the server's `postgres` database (to make or drop this one).
    fn psql(&self, sql: &str) {
        self.run_sql("postgres", sql);
    }

    /// Runs one statement with `psql` in `database` (fails the test if it fails); returns
    /// what psql printed, unaligned and without headers.
    fn run_sql(&self, database: &str, sql: &str) -> String {
        let (host, port) = self
            .address
            .rsplit_once(':')
            .unwrap_or((self.address.as_str(), "5432"));
        let out = Command::new("psql")
            .args(["-h", host, "-p", port, "-U", "postgres", "-d", database])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql (PostgreSQL client): {e}"));
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// A PostgreSQL database of one test's own on the machine's server (`SWITCHYARD_PREFECT_PG`,
/// default `127.0.0.1:5432`, user `postgres`, trust auth): created empty, dropped with its
/// connections when this goes.
pub struct TestDatabase(PostgresDatabase);

impl TestDatabase {
    /// Creates `switchyard_test_<prefix>_<pid>_<n>`.
    pub fn create(prefix: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        Self(PostgresDatabase::named(format!(
            "switchyard_test_{prefix}_{}_{n}",
            std::process::id()
        )))
    }

    /// Its `postgres://` URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@{}/{}", self.0.address, self.0.name)
    }

    /// Runs one SQL statement in it with `psql` (fails the test if it fails); returns what
    /// psql printed, unaligned and without headers.
    pub fn query(&self, sql: &str) -> String {
        self.0.run_sql(&self.0.name, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.0.drop_now();
    }
}

/// Whether the tests asked for a PostgreSQL-backed Prefect.
fn wants_postgres() -> bool {
    std::env::var("SWITCHYARD_PREFECT_DATABASE").is_ok_and(|v| v == "postgres")
}

extern "C" fn stop_server_at_exit() {
    let pid = SERVER_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    if let Some(home) = SERVER_HOME.get() {
        let _ = std::fs::remove_dir_all(home);
    }
    if let Some(db) = SERVER_DATABASE.get() {
        db.drop_now();
    }
}

impl PrefectServer {
    /// The server for this test binary, started on first use (15-20 s on a fresh database).
    ///
    /// The Prefect executable is `$SWITCHYARD_PREFECT` or `.prefect-venv/bin/prefect`
    /// (install it with `scripts/prefect-env.sh`; the test script does).
    pub fn shared() -> &'static PrefectServer {
        SERVER.get_or_init(Self::start)
    }

    fn start() -> PrefectServer {
        let prefect = prefect_executable();
        let home = std::env::temp_dir().join(format!("switchyard-prefect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
        let _ = SERVER_HOME.set(home.clone());
        let port = free_port();
        let database =
            wants_postgres().then(|| SERVER_DATABASE.get_or_init(PostgresDatabase::create).url());
        let log_path = home.join("server.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create server log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log handle: {e}"));

        // The keeper thread spawns the server and then waits on it for the life of the
        // process: PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it must be
        // a thread that never does.
        let (tx, rx) = std::sync::mpsc::channel();
        let home2 = home.clone();
        std::thread::spawn(move || {
            let mut cmd = prefect_command(&prefect, &home2, port, log, log_err);
            if let Some(url) = &database {
                cmd.env("PREFECT_API_DATABASE_CONNECTION_URL", url);
            }
            die_with_parent(&mut cmd);
            match cmd.spawn() {
                Ok(mut child) => {
                    SERVER_PID.store(child.id() as i32, Ordering::SeqCst);
                    let _ = tx.send(Ok(()));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        });
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("cannot start Prefect: {e}"),
            Err(_) => panic!("Prefect keeper thread died"),
        }
        // SAFETY: registering a plain extern "C" function with atexit(3).
        unsafe {
            libc::atexit(stop_server_at_exit);
        }

        let api_url = format!("http://127.0.0.1:{port}/api");
        let start = Instant::now();
        loop {
            if healthy(port) {
                break;
            }
            let pid = SERVER_PID.load(Ordering::SeqCst);
            // SAFETY: signal 0 only checks that the process exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0;
            if !alive || start.elapsed() > Duration::from_secs(120) {
                let mut log = String::new();
                let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut log));
                panic!(
                    "Prefect did not become healthy on port {port} (alive: {alive}); log:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let server = PrefectServer { api_url, home };
        eprintln!(
            "prefect server up at {} after {:.1}s ({})",
            server.api_url,
            start.elapsed().as_secs_f64(),
            server.database_kind()
        );
        server
    }
}

/// A name unique within this test binary, for flows and deployments that must not collide.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The Prefect executable: `$SWITCHYARD_PREFECT` or `.prefect-venv/bin/prefect`.
pub fn prefect_executable() -> PathBuf {
    let prefect = std::env::var_os("SWITCHYARD_PREFECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".prefect-venv/bin/prefect"));
    assert!(
        prefect.exists(),
        "Prefect is not installed at {}: run scripts/prefect-env.sh (scripts/test.sh does it)",
        prefect.display()
    );
    prefect
}

/// `prefect server start` on 127.0.0.1:`port`, quiet and offline, its home in `home`.
fn prefect_command(
    prefect: &Path,
    home: &Path,
    port: u16,
    out: std::fs::File,
    err: std::fs::File,
) -> Command {
    let mut cmd = Command::new(prefect);
    cmd.args([
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ])
    .env("PREFECT_HOME", home)
    .env("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    .env("DO_NOT_TRACK", "1")
    .env("PREFECT_SERVER_UI_ENABLED", "false")
    .env("PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED", "false")
    .env("PREFECT_SERVER_LOG_RETRYABLE_ERRORS", "true")
    .env_remove("PREFECT_API_URL")
    .stdin(Stdio::null())
    .stdout(Stdio::from(out))
    .stderr(Stdio::from(err));
    cmd
}

/// Polls `/api/health` until it answers, panicking with the server log if the process dies
/// or two minutes pass.
fn wait_healthy(port: u16, log_path: &Path, alive: impl Fn() -> bool) {
    let start = Instant::now();
    loop {
        if healthy(port) {
            eprintln!(
                "prefect server up on port {port} after {:.1}s",
                start.elapsed().as_secs_f64()
            );
            return;
        }
        let alive = alive();
        if !alive || start.elapsed() > Duration::from_secs(120) {
            let mut log = String::new();
            let _ = std::fs::File::open(log_path).and_then(|mut f| f.read_to_string(&mut log));
            panic!("Prefect did not become healthy on port {port} (alive: {alive}); log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Prefect server owned by one test, which can stop it and start it again on the same port
/// and database (to test what happens while Prefect is down). Killed when dropped.
pub struct OwnedPrefect {
    /// `http://127.0.0.1:PORT/api`.
    pub api_url: String,
    port: u16,
    home: TempDir,
    process: Option<ChildGuard>,
}

impl OwnedPrefect {
    /// Starts a server with a fresh database and waits until it is healthy.
    pub fn start() -> Self {
        let port = free_port();
        let mut me = Self {
            api_url: format!("http://127.0.0.1:{port}/api"),
            port,
            home: TempDir::new("switchyard-owned-prefect"),
            process: None,
        };
        me.restart();
        me
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.signal(libc::SIGTERM);
            let start = Instant::now();
            while p.child().try_wait().ok().flatten().is_none()
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts it again (same port, same database) and waits until it is healthy.
    pub fn restart(&mut self) {
        self.stop();
        let log_path = self.home.path().join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open server log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log handle: {e}"));
        let mut cmd = prefect_command(
            &prefect_executable(),
            &self.home.path().join("home"),
            self.port,
            log,
            err,
        );
        let guard =
            ChildGuard::spawn(&mut cmd).unwrap_or_else(|e| panic!("cannot start Prefect: {e}"));
        let pid = guard.pid() as i32;
        self.process = Some(guard);
        // SAFETY: signal 0 only checks that the process exists.
        wait_healthy(self.port, &log_path, || unsafe { libc::kill(pid, 0) == 0 });
    }
}

/// A real Prefect process worker serving one work pool, in a process group of its own so
/// the flow-run subprocesses it starts are stopped with it (SIGTERM, then SIGKILL) on drop.
pub struct PrefectWorker {
    pid: i32,
    child: Option<Child>,
    /// Its home and log.
    pub home: TempDir,
}

impl PrefectWorker {
    /// Starts `prefect worker start --pool POOL` against `api_url`, polling every second and
    /// not prefetching (a run is picked up within about a second). The pool must exist.
    pub fn start(api_url: &str, pool: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let home = TempDir::new("switchyard-worker");
        let log = std::fs::File::create(home.path().join("worker.log"))
            .unwrap_or_else(|e| panic!("cannot create the worker log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log handle: {e}"));
        let mut cmd = Command::new(prefect_executable());
        cmd.args(["worker", "start", "--pool", pool, "--name", pool])
            .env("PREFECT_API_URL", api_url)
            .env("PREFECT_HOME", home.path())
            .env("DO_NOT_TRACK", "1")
            .env("PREFECT_WORKER_QUERY_SECONDS", "1")
            .env("PREFECT_WORKER_PREFETCH_SECONDS", "0")
            .env_remove("PREFECT_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .process_group(0);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a Prefect worker: {e}"));
        Self {
            pid: child.id() as i32,
            child: Some(child),
            home,
        }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("worker.log")).unwrap_or_default()
    }

    /// Stops it and every run it started (SIGTERM to the group; SIGKILL after 10 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the process group this worker leads.
        unsafe {
            libc::kill(-self.pid, libc::SIGTERM);
        }
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; whatever is left of the group goes.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for PrefectWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private Kafka-protocol broker (tansu, memory storage) on a free loopback port, installed by
/// `scripts/kafka-env.sh`; returns the guard and the port once it accepts connections.
pub fn start_tansu() -> (ChildGuard, u16) {
    let tansu = workspace_root().join(".kafka-venv/tansu");
    assert!(
        tansu.exists(),
        "tansu is not installed: run scripts/kafka-env.sh (scripts/test.sh does)"
    );
    let port = free_port();
    let listener = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(tansu);
    cmd.args([
        "broker",
        "--listener-url",
        &listener,
        "--advertised-listener-url",
        &listener,
        "--storage-engine",
        "memory://tansu/",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let guard = ChildGuard::spawn(&mut cmd).unwrap_or_else(|e| panic!("cannot start tansu: {e}"));
    wait_until("tansu to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (guard, port)
}

/// A private Azure Storage queue emulator (Azurite, in memory) on a free loopback port,
/// installed by `scripts/azure-env.sh`; returns the guard and the port once it accepts
/// connections. Account `devstoreaccount1`, see [`AZURITE_KEY`].
pub fn start_azurite() -> (ChildGuard, u16) {
    let bin = workspace_root().join(".azurite/node_modules/.bin/azurite-queue");
    assert!(
        bin.exists(),
        "azurite is not installed: run scripts/azure-env.sh (scripts/test.sh does)"
    );
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        &port.to_string(),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let guard = ChildGuard::spawn(&mut cmd).unwrap_or_else(|e| panic!("cannot start azurite: {e}"));
    wait_until("azurite to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (guard, port)
}

/// The public key of Azurite's development account `devstoreaccount1`.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `GET /api/health` over plain HTTP/1.0 (usable from sync and async tests alike).
fn healthy(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /api/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") && answer.trim_end().ends_with("true")
}
