//! Builds a running router from a loaded config — the journal, the Prefect client, the engine
//! routing every event by the routes in force, the background jobs ([`jobs`]) and the sources —
//! reloads its config on SIGHUP, `POST /api/v1/reload` or (`--watch`) a changed file, and stops
//! it in order: sources, then the engine's queue, then the tasks finishing events.

pub mod jobs;
mod reload;
mod topology;

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context as _;
use switchyard_prefect::{ClientConfig, PrefectClient, RetryPolicy};

use crate::config::PrefectConfig;
use crate::routes::Loaded;

/// How `run` behaves beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Shut down once every source has finished (stdin reached end of input and there is no
    /// webhook), instead of waiting for a signal.
    pub exit_when_sources_end: bool,
    /// Journal file, overriding `journal.path`.
    pub journal: Option<PathBuf>,
    /// Reload the config when its file changes (as on SIGHUP).
    pub watch: bool,
    /// Every route in shadow mode (`run --shadow`), reloaded configs too.
    pub shadow: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Events the engine finished.
    pub finished: u64,
    /// Events left pending in the journal (resumed by the next start).
    pub pending: usize,
    /// Why the journal could not take writes at the end, if it could not.
    pub journal_fault: Option<String>,
}

/// Where the configured journal is (`cli`: `--journal`, a path or a `postgres://` URL, wins);
/// the error names the key, as a config error would.
pub fn journal_location(
    j: &crate::config::JournalConfig,
    cli: Option<&std::path::Path>,
) -> Result<crate::journal::Location, String> {
    crate::journal::Location::resolve(
        &j.path,
        j.url.as_deref(),
        j.instance.as_deref(),
        j.lease,
        cli,
    )
    .map_err(|e| format!("journal: {e}"))
}

/// The Prefect client for a config: the file's values, else the `PREFECT_*` environment.
pub fn prefect_client(cfg: &PrefectConfig) -> anyhow::Result<PrefectClient> {
    prefect_client_until(cfg, tokio_util::sync::CancellationToken::new())
}

/// [`prefect_client`] whose waits between retries end when `cancel` is cancelled.
pub fn prefect_client_until(
    cfg: &PrefectConfig,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<PrefectClient> {
    let mut c = ClientConfig::from_env();
    c.cancel = cancel;
    c.api_url = cfg.api_url.clone().unwrap_or(c.api_url);
    c.api_key = cfg.api_key.clone().or(c.api_key);
    c.auth_string = cfg.auth_string.clone().or(c.auth_string);
    c.max_in_flight = cfg.max_in_flight.get();
    c.rate_limit = cfg.rate_limit;
    c.timeout = cfg.request_timeout;
    c.retry = RetryPolicy {
        max_retries: cfg.max_retries,
        ..RetryPolicy::default()
    };
    c.observer = Some(std::sync::Arc::new(crate::metrics::PrefectObserver));
    PrefectClient::new(c).context("cannot set up the Prefect client")
}

/// Runs until `shutdown` resolves (or the sources end, see [`RunOptions`]), then stops the
/// sources within `engine.source_stop_timeout` and drains the queue within
/// `engine.shutdown_timeout`. Events unfinished then stay pending and resume on the next start.
pub async fn run(
    loaded: Loaded,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Stopped> {
    let mut topology = topology::Topology::start(loaded, &opts).await?;
    topology.wait(shutdown, &opts).await;
    Ok(topology.stop().await)
}

/// Resolves SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => drop(s.recv().await),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
