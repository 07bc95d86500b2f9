//! `switchyard events` and `switchyard dlq`: reading the journal, replaying and purging dead
//! letters. Works whether or not a router is running on the same journal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::app;
use crate::journal::{EventFilter, EventStatus, JournalError, Location, Store};
use crate::routes::{self, Loaded};

/// Which journal: `--journal`, else the config's `journal.path`, else `switchyard.db`.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Config file (for the journal path, and the routes and Prefect settings a replay uses).
    #[arg(long, short = 'c', value_name = "FILE", env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Journal file, or a PostgreSQL journal's `postgres://` URL (default: the config's, with
    /// SWITCHYARD_JOURNAL_URL before its `journal.url`).
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "SWITCHYARD_JOURNAL",
        hide_env_values = true
    )]
    pub journal: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `switchyard events ...`
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Recent events, newest first.
    List {
        /// Only events in this status.
        #[arg(long, value_parser = ["pending", "done", "dead"])]
        status: Option<String>,
        /// Only events from this source.
        #[arg(long)]
        source: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One event with every decision, attempt and run.
    Show {
        /// Event id.
        id: String,
    },
}

/// `switchyard dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Open dead letters, newest first.
    List {
        /// Include resolved ones.
        #[arg(long)]
        all: bool,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One dead letter and its event.
    Show {
        /// Dead letter number.
        id: i64,
    },
    /// Run the route again for dead letters (after fixing the cause); needs `--config`.
    Replay {
        /// Dead letter numbers.
        ids: Vec<i64>,
        /// Every open dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Mark dead letters resolved without replaying (their events become prunable).
    Purge {
        /// Dead letter numbers.
        ids: Vec<i64>,
        /// Every open dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

/// The config (if given) and the journal `args` name (a file, or a `postgres://` URL; with
/// neither, the config's, and `SWITCHYARD_JOURNAL_URL` before its `journal.url`).
pub(crate) async fn open(
    args: &JournalArgs,
) -> Result<(Option<Loaded>, std::sync::Arc<dyn Store>), String> {
    let loaded = args
        .config
        .as_deref()
        .map(routes::load)
        .transpose()
        .map_err(|e| e.to_string())?;
    let config = loaded
        .as_ref()
        .map(|l| l.config.journal.clone())
        .unwrap_or_default();
    let location = crate::app::journal_location(&config, args.journal.as_deref())?;
    if let Location::File(path) = &location
        && !Path::new(path).exists()
    {
        return Err(format!(
            "no journal at {} (pass --journal PATH or --config FILE)",
            path.display()
        ));
    }
    // Not an instance: a command reads, or replays what it is told to.
    let store = location.open(false).await.map_err(|e| e.to_string())?;
    Ok((loaded, store))
}

fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => say!("{s}"),
        Err(e) => eprintln!("error: {e}"),
    }
}

/// Rows under a header, each column as wide as its widest cell (the last one is not padded).
/// On a terminal (and without `NO_COLOR`) the header is bold and the `status` column, when
/// there is one, is coloured by status.
fn table(header: &[&str], rows: Vec<Vec<String>>, status: Option<usize>) {
    use std::io::IsTerminal as _;
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let last = widths.len().saturating_sub(1);
    let pad = |i: usize, c: &str| {
        if i == last {
            c.to_string()
        } else {
            format!("{c:<w$}", w = widths[i])
        }
    };
    let head: Vec<String> = header.iter().enumerate().map(|(i, h)| pad(i, h)).collect();
    if colour {
        say!("\x1b[1m{}\x1b[0m", head.join("  "));
    } else {
        say!("{}", head.join("  "));
    }
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let padded = pad(i, c);
                let code = match c.as_str() {
                    "done" => "32",
                    "dead" => "31",
                    "pending" => "33",
                    _ => "",
                };
                if colour && Some(i) == status && !code.is_empty() {
                    format!("\x1b[{code}m{padded}\x1b[0m")
                } else {
                    padded
                }
            })
            .collect();
        say!("{}", cells.join("  "));
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// Runs `switchyard events`.
/// `switchyard journal ...`
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Copy a SQLite journal's events, history, dead letters and trigger state into a
    /// PostgreSQL journal (made and migrated if new).
    Migrate {
        /// The SQLite file.
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
        /// The PostgreSQL journal.
        #[arg(
            long,
            value_name = "URL",
            env = "SWITCHYARD_JOURNAL_URL",
            hide_env_values = true
        )]
        to: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `switchyard journal ...`
pub async fn journal(cmd: JournalCommand) -> ExitCode {
    let JournalCommand::Migrate { from, to, json } = cmd;
    if let Err(e) = crate::config::check_journal_url(&to) {
        return fail(format!("--to: {e}"));
    }
    #[cfg(feature = "postgres")]
    {
        let shown = crate::secrets::url(&to);
        let opts = crate::journal::PostgresOptions {
            url: to,
            instance: None,
            lease: std::time::Duration::from_secs(20),
            register: false,
        };
        let store = match crate::journal::PostgresStore::open(&opts).await {
            Ok(s) => s,
            Err(e) => return fail(e.to_string()),
        };
        match store.import_sqlite(&from).await {
            Ok(m) if json => print_json(&m),
            Ok(m) => say!(
                "copied {} events ({} pending, claimed by the first instance to start), {} decisions, {} dead letters, {} trigger buckets from {} into {}; {} were there already",
                m.events,
                m.pending,
                m.decisions,
                m.dead_letters,
                m.trigger_states,
                from.display(),
                shown,
                m.skipped
            ),
            Err(e) => return fail(e.to_string()),
        }
        ExitCode::SUCCESS
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = (from, json);
        unreachable!("check_url refuses a URL in a build without PostgreSQL")
    }
}

/// `switchyard status`.
pub async fn status(args: JournalArgs) -> ExitCode {
    let (_, store) = match open(&args).await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let counts = store.counts().await;
    let instances = store.instances().await;
    let ((pending, dead), instances) = match (counts, instances) {
        (Ok(c), Ok(i)) => (c, i),
        (Err(e), _) | (_, Err(e)) => return fail(e.to_string()),
    };
    if args.json {
        print_json(&serde_json::json!({
            "journal": store.describe(),
            "pending": pending,
            "dead_letters": dead,
            "instances": instances,
        }));
        return ExitCode::SUCCESS;
    }
    say!("journal       {}", store.describe());
    say!("pending       {pending}");
    say!("dead letters  {dead} open");
    if instances.is_empty() {
        return ExitCode::SUCCESS;
    }
    say!("instances");
    say!(
        "  {:<32} {:<7} {:>8}  {:<24} {}",
        "NAME",
        "LEASE",
        "PENDING",
        "HOST (PID)",
        "LAST RENEWED"
    );
    for i in instances {
        say!(
            "  {:<32} {:<7} {:>8}  {:<24} {}",
            i.id,
            if i.alive { "held" } else { "lapsed" },
            i.pending,
            format!("{} ({})", i.host, i.pid),
            i.heartbeat_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    ExitCode::SUCCESS
}

pub async fn events(args: JournalArgs, cmd: EventsCommand) -> ExitCode {
    let (loaded, store) = match open(&args).await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    match cmd {
        EventsCommand::List {
            status,
            source,
            limit,
        } => {
            let filter = EventFilter {
                status: status.as_deref().map(EventStatus::parse),
                source,
                limit,
                ..Default::default()
            };
            match store.list_events(&filter).await {
                Ok(list) if args.json => print_json(&list),
                Ok(list) if list.is_empty() => say!("no events"),
                Ok(list) => {
                    let rows = list
                        .into_iter()
                        .map(|e| {
                            // A redelivered event finds the run it started: list it once.
                            let mut runs = e.runs;
                            let mut seen = std::collections::HashSet::new();
                            runs.retain(|r| seen.insert(r.clone()));
                            vec![
                                e.accepted_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                                e.status.as_str().to_string(),
                                e.id,
                                e.source,
                                e.name,
                                if runs.is_empty() {
                                    "-".to_string()
                                } else {
                                    runs.join(",")
                                },
                            ]
                        })
                        .collect();
                    table(
                        &["accepted", "status", "event", "source", "name", "runs"],
                        rows,
                        Some(1),
                    );
                }
                Err(e) => return fail(e),
            }
        }
        EventsCommand::Show { id } => match store.event(&id).await {
            Ok(Some(d)) if args.json => print_json(&d),
            Ok(Some(d)) => {
                // Only to name the Prefect UI's pages: no request is made.
                let prefect = loaded
                    .as_ref()
                    .map(|l| l.config.prefect.clone())
                    .unwrap_or_default();
                let prefect = app::prefect_client(&prefect).ok();
                say!(
                    "event {} ({}) from {} — {}",
                    d.event.id,
                    d.event.name,
                    d.event.source,
                    d.status.as_str()
                );
                say!("  accepted {}", d.accepted_at.to_rfc3339());
                for (k, v) in &d.event.labels {
                    say!("  label    {k} = {v}");
                }
                say!("  payload  {}", d.event.payload);
                for x in d.decisions {
                    let what = match x.kind.as_str() {
                        "run_created" => {
                            let id = x.flow_run_id.unwrap_or_default();
                            let page = prefect
                                .as_ref()
                                .map(|p| format!(" — {}", p.run_page(&id)))
                                .unwrap_or_default();
                            format!(
                                "flow run {id} ({}) of {}{}{page}",
                                x.flow_run_name.unwrap_or_default(),
                                x.deployment.unwrap_or_default(),
                                if x.replayed == Some(true) {
                                    ", already existed"
                                } else {
                                    ""
                                }
                            )
                        }
                        "run_state" => format!(
                            "flow run {} ({}) is {}",
                            x.flow_run_id.unwrap_or_default(),
                            x.flow_run_name.unwrap_or_default(),
                            x.detail.unwrap_or_default()
                        ),
                        _ => x.detail.unwrap_or_default(),
                    };
                    let attempt = x.attempt.map(|a| format!(" #{a}")).unwrap_or_default();
                    say!(
                        "  {}  {:<16} {}{attempt}: {what}",
                        x.at.format("%H:%M:%S%.3f"),
                        x.route,
                        x.kind
                    );
                }
            }
            Ok(None) => return fail(format!("no event {id:?} in the journal")),
            Err(e) => return fail(e),
        },
    }
    ExitCode::SUCCESS
}

/// Runs `switchyard dlq`.
pub async fn dlq(args: JournalArgs, cmd: DlqCommand) -> ExitCode {
    let (loaded, store) = match open(&args).await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    match cmd {
        DlqCommand::List { all, limit } => match store.dead_letters(all, limit).await {
            Ok(list) if args.json => print_json(&list),
            Ok(list) if list.is_empty() => say!("no dead letters"),
            Ok(list) => {
                let rows = list
                    .into_iter()
                    .map(|d| {
                        vec![
                            format!("#{}", d.id),
                            d.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                            d.event_id,
                            d.route,
                            format!(
                                "{}{}",
                                d.attempts,
                                if d.retryable { " (transient)" } else { "" }
                            ),
                            d.resolution.unwrap_or_else(|| "open".into()),
                            d.reason,
                        ]
                    })
                    .collect();
                table(
                    &[
                        "dead letter",
                        "at",
                        "event",
                        "route",
                        "attempts",
                        "state",
                        "reason",
                    ],
                    rows,
                    None,
                );
            }
            Err(e) => return fail(e),
        },
        DlqCommand::Show { id } => match store.dead_letter(id).await {
            Ok(Some(d)) => {
                let event = store.event(&d.event_id).await.ok().flatten();
                if args.json {
                    print_json(&serde_json::json!({"dead_letter": d, "event": event}));
                } else {
                    say!("dead letter #{} — route {} — {}", d.id, d.route, d.reason);
                    if let Some(e) = event {
                        say!(
                            "event {} ({}) from {}: {}",
                            e.event.id,
                            e.event.name,
                            e.event.source,
                            e.event.payload
                        );
                    }
                }
            }
            Ok(None) => return fail(format!("no dead letter #{id}")),
            Err(e) => return fail(e),
        },
        DlqCommand::Replay { ids, all } => {
            let Some(loaded) = loaded else {
                return fail("replay needs --config FILE (for the routes and Prefect settings)");
            };
            return replay(
                &loaded,
                &*store,
                match selected(&*store, ids, all).await {
                    Ok(ids) => ids,
                    Err(e) => return fail(e),
                },
            )
            .await;
        }
        DlqCommand::Purge { ids, all } => {
            let ids = match selected(&*store, ids, all).await {
                Ok(ids) => ids,
                Err(e) => return fail(e),
            };
            for id in &ids {
                if let Err(e) = store.resolve_dead_letter(*id, "purged").await {
                    return fail(e);
                }
            }
            say!("purged {} dead letter(s)", ids.len());
        }
    }
    ExitCode::SUCCESS
}

async fn selected(store: &dyn Store, ids: Vec<i64>, all: bool) -> Result<Vec<i64>, JournalError> {
    if all {
        Ok(store
            .dead_letters(false, usize::MAX >> 1)
            .await?
            .into_iter()
            .rev()
            .map(|d| d.id)
            .collect())
    } else {
        Ok(ids)
    }
}

async fn replay(loaded: &Loaded, store: &dyn Store, ids: Vec<i64>) -> ExitCode {
    let prefect = match app::prefect_client(&loaded.config.prefect) {
        Ok(p) => p,
        Err(e) => return fail(format!("{e:#}")),
    };
    let mut failed = 0;
    for id in ids {
        let outcome = crate::replay::dead_letter(&loaded.routes, store, &prefect, id).await;
        match outcome {
            Ok(message) => say!("#{id}: {message}"),
            Err(message) => {
                failed += 1;
                say!("#{id}: replay failed: {message}");
            }
        }
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
