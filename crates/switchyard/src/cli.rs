//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app::{self, RunOptions};
use crate::config;
use crate::telemetry::{self, LogFormat};

/// Switchyard routes events from streaming sources (stdin, webhooks, ...) into Prefect flow
/// runs, by rules, with parameters rendered from each event.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None, after_help = "\
Examples:
  switchyard run examples/webhook.yaml
  switchyard check --config examples/webhook.yaml
  echo '{\"flow_name\": \"Test Flow\", \"deployment_name\": \"integration-test\", \"payload\": {}}' \\
    | PREFECT_API_URL=http://127.0.0.1:4200/api switchyard run examples/prefect-event-router.json

Prefect is reached at PREFECT_API_URL (default http://127.0.0.1:4200/api), with PREFECT_API_KEY
(Prefect Cloud) or PREFECT_API_AUTH_STRING (self-hosted basic auth) when set.")]
pub struct Cli {
    /// Log level or filter (e.g. `debug`, `info,switchyard=debug`; default `info`, and `warn`
    /// for `test`); RUST_LOG wins when set.
    #[arg(long, global = true, env = "SWITCHYARD_LOG")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the router until SIGINT or SIGTERM; SIGHUP reloads the config.
    #[command(after_help = "\
Examples:
  PREFECT_API_URL=http://127.0.0.1:4200/api switchyard run examples/webhook.yaml
  switchyard run --watch --journal /var/lib/switchyard/switchyard.db app.yaml
  some-producer | switchyard run --exit-when-sources-end examples/stdin.yaml

Exit codes: 0 everything settled, 1 events left pending (they resume on the next start) or the
journal failed, 2 a config error.")]
    Run {
        /// The config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Exit once every source has finished (e.g. stdin reached its end) and the queue is
        /// drained, instead of waiting for a signal.
        #[arg(long)]
        exit_when_sources_end: bool,
        /// Journal file, or a PostgreSQL journal's `postgres://` URL (overrides `journal.path`
        /// and `journal.url`; SWITCHYARD_JOURNAL_URL overrides `journal.url` alone).
        #[arg(
            long,
            value_name = "PATH|URL",
            env = "SWITCHYARD_JOURNAL",
            hide_env_values = true
        )]
        journal: Option<PathBuf>,
        /// Every route in shadow mode: decide, render, check against the deployment's schema
        /// and record what would run, without creating any flow run.
        #[arg(long)]
        shadow: bool,
        /// Reload the config when the file changes, as on SIGHUP or `POST /api/v1/reload`:
        /// checked first (a config that fails keeps the running one), routes swapped between
        /// events, only changed sources restarted.
        #[arg(long)]
        watch: bool,
    },
    /// Inspect events in the journal: what was decided, which runs they started.
    #[command(after_help = "\
Examples:
  switchyard events --config app.yaml list --status dead
  switchyard events --journal switchyard.db list --source orders --limit 50 --json
  switchyard events --config app.yaml show 0f6c2d4e-1b7a-4c39-9d8e-5a1f2b3c4d5e")]
    Events {
        /// Which journal.
        #[command(flatten)]
        journal: crate::admin::JournalArgs,
        /// What to show.
        #[command(subcommand)]
        command: crate::admin::EventsCommand,
    },
    /// Dead letters: list, show, replay after fixing the cause, purge.
    #[command(after_help = "\
Examples:
  switchyard dlq --config app.yaml list
  switchyard dlq --config app.yaml show 3
  switchyard dlq --config app.yaml replay --all      # after fixing the cause
  switchyard dlq --config app.yaml purge 3 4")]
    Dlq {
        /// Which journal.
        #[command(flatten)]
        journal: crate::admin::JournalArgs,
        /// What to do.
        #[command(subcommand)]
        command: crate::admin::DlqCommand,
    },
    /// Journal maintenance: move a SQLite journal into a PostgreSQL one.
    #[command(after_help = "\
Examples:
  switchyard journal migrate --from switchyard.db --to postgres://switchyard@db/switchyard

Stop the instance that writes the file first. Running it again after a stop finishes the copy
(events already copied are left as they are).")]
    Journal {
        /// What to do.
        #[command(subcommand)]
        command: crate::admin::JournalCommand,
    },
    /// The journal at a glance: where it is, what is pending, open dead letters, and the
    /// instances sharing it (a PostgreSQL journal) with what each owns.
    #[command(after_help = "\
Examples:
  switchyard status --config app.yaml
  SWITCHYARD_JOURNAL_URL=postgres://switchyard@db/switchyard switchyard status --json")]
    Status {
        /// Which journal.
        #[command(flatten)]
        journal: crate::admin::JournalArgs,
    },
    /// Convert Prefect automations (JSON from the API or `prefect automation inspect --json`)
    /// or a prefect.yaml's deployment `triggers:` into Switchyard routes, printed as YAML.
    #[command(after_help = "\
Examples:
  prefect automation inspect 'Three failures' --json > automation.json
  switchyard import automation.json > app.yaml && switchyard check --online app.yaml
  switchyard import prefect.yaml
  curl -s -X POST $PREFECT_API_URL/automations/filter -H 'content-type: application/json' -d '{}' | switchyard import -

What cannot be carried over (other actions, related-resource matches, template variables
Switchyard has no value for) is named on stderr.")]
    Import {
        /// The automation JSON or prefect.yaml ("-" for standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Watch every decision of a running router as it happens (its admin server's tap), one
    /// line each, until interrupted.
    #[command(after_help = "\
Examples:
  switchyard tap
  switchyard tap --route big-orders --decision dead
  switchyard tap --admin https://switchyard.internal:9595 --json | jq .")]
    Tap {
        /// The router's admin server.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9595")]
        admin: String,
        /// Its token.
        #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        /// Only this decision (skipped, ran, dead, absorbed, fired, refused).
        #[arg(long)]
        decision: Option<String>,
        /// Print the JSON of each decision instead.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config file and print what it defines.
    #[command(after_help = "\
Examples:
  switchyard check examples/webhook.yaml
  PREFECT_API_URL=http://127.0.0.1:4200/api switchyard check --online examples/webhook.yaml

Exits 0 when the file is valid (and, with --online, every check passed), 1 when an online check
failed, 2 for a config error.")]
    Check {
        /// The config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Also ask Prefect whether each fixed deployment exists.
        #[arg(long)]
        online: bool,
        /// Print one JSON document (sources, routes, each deployment check) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-evaluate journaled events against the current config: with --dry-run, what would
    /// run now beside what ran then; without it, start the runs it decides (routes without a
    /// trigger; a run an event already has is found, not doubled).
    #[command(after_help = "\
Examples:
  switchyard replay --config app.yaml --since 2026-12-01T00:00:00Z --dry-run
  switchyard replay --config app.yaml --route big-orders --since 2026-12-01T09:00:00Z")]
    Replay(crate::rerun::ReplayArgs),
    /// The config's JSON Schema, for editors, or its reference (every option with its type,
    /// default and meaning), both generated from the types `run` reads.
    #[command(after_help = "\
Examples:
  switchyard config schema > config.schema.json
  switchyard config reference > reference.md

A YAML file can name the schema for editors that use yaml-language-server (VS Code's YAML
extension, Neovim, Helix...):  # yaml-language-server: $schema=docs/config.schema.json")]
    Config {
        /// What to print.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Test a config's routes offline, on a simulated clock: feed the events of each test in
    /// TESTS (YAML files), let time run on, compare the runs decided with the expected ones.
    /// No Prefect, broker or network is used. Exits 1 if a test failed.
    #[command(after_help = "\
Example:
  switchyard test examples/triggers.yaml examples/triggers.tests.yaml")]
    Test {
        /// The config file.
        config: PathBuf,
        /// Tests files (see examples/triggers.tests.yaml).
        #[arg(required = true)]
        tests: Vec<PathBuf>,
    },
}

/// `switchyard config ...`
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema (2020-12) of a config file.
    Schema,
    /// Print the reference of every option (Markdown).
    Reference,
}

/// `FILE` or `--config FILE`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Config file (YAML or JSON).
    #[arg(value_name = "FILE", conflicts_with = "config")]
    file: Option<PathBuf>,
    /// Config file (YAML or JSON).
    #[arg(long, short = 'c', value_name = "FILE", env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    /// Loads the config; on failure prints the error and gives the exit code (2).
    fn load(&self) -> Result<crate::routes::Loaded, ExitCode> {
        let path = self
            .file
            .clone()
            .or_else(|| self.config.clone())
            .ok_or_else(|| "no config file: pass FILE or --config FILE".to_string());
        path.and_then(|p| crate::routes::load(&p).map_err(|e| e.to_string()))
            .map_err(|e| {
                eprintln!("error: {}", crate::secrets::redact(&e));
                ExitCode::from(2)
            })
    }
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Test { .. });
    let level = cli
        .log_level
        .clone()
        .unwrap_or_else(|| if quiet { "warn" } else { "info" }.to_string());
    telemetry::init(&level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(execute(cli.command))
}

async fn execute(command: Command) -> ExitCode {
    match command {
        Command::Run {
            config,
            exit_when_sources_end,
            journal,
            shadow,
            watch,
        } => {
            let mut loaded = match config.load() {
                Ok(l) => l,
                Err(code) => return code,
            };
            if shadow {
                loaded = match loaded.into_shadow() {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                };
            }
            match app::run(
                loaded,
                RunOptions {
                    exit_when_sources_end,
                    journal,
                    watch,
                    shadow,
                },
                app::shutdown_signal(),
            )
            .await
            {
                Ok(app::Stopped {
                    journal_fault: Some(why),
                    ..
                }) => {
                    eprintln!("switchyard: the journal failed: {why}");
                    ExitCode::FAILURE
                }
                Ok(stopped) if stopped.pending == 0 => ExitCode::SUCCESS,
                // Not lost (they resume on the next start), but not done: say so.
                Ok(stopped) => {
                    eprintln!(
                        "switchyard: {} events left pending in the journal; they resume on the next start",
                        stopped.pending
                    );
                    ExitCode::FAILURE
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    let e = crate::secrets::redact(&e);
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check {
            config,
            online,
            json,
        } => check(config, online, json).await,
        Command::Test { config, tests } => crate::simulate::main(&config, &tests).await,
        Command::Replay(args) => crate::rerun::main(args).await,
        Command::Import { file } => import(&file),
        Command::Tap {
            admin,
            token,
            source,
            route,
            decision,
            json,
        } => {
            let filter = crate::tap::TapFilter {
                source,
                route,
                decision,
            };
            tap(&admin, token.as_deref(), &filter, json).await
        }
        Command::Config { command } => {
            say!(
                "{}",
                match command {
                    ConfigCommand::Schema => config::schema::json_schema_text(),
                    ConfigCommand::Reference => config::schema::reference(),
                }
                .trim_end()
            );
            ExitCode::SUCCESS
        }
        Command::Events { journal, command } => crate::admin::events(journal, command).await,
        Command::Dlq { journal, command } => crate::admin::dlq(journal, command).await,
        Command::Status { journal } => crate::admin::status(journal).await,
        Command::Journal { command } => crate::admin::journal(command).await,
    }
}

fn import(file: &std::path::Path) -> ExitCode {
    let text = if file == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match crate::import::import(&text) {
        Ok(imported) => {
            for w in &imported.warnings {
                eprintln!("warning: {w}");
            }
            match imported.to_yaml(&file.display().to_string()) {
                Ok(yaml) => {
                    say!("{}", yaml.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot write YAML: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

/// `switchyard tap`: reads the admin server's SSE stream and prints each decision.
async fn tap(
    admin: &str,
    token: Option<&str>,
    filter: &crate::tap::TapFilter,
    json: bool,
) -> ExitCode {
    let mut url = match url::Url::parse(admin).and_then(|u| u.join("api/v1/tap")) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: --admin {admin:?} is not a URL: {e}");
            return ExitCode::from(2);
        }
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in [
            ("source", &filter.source),
            ("route", &filter.route),
            ("decision", &filter.decision),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
    let client = reqwest::Client::new();
    let mut req = client.get(url.clone());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = match req.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            eprintln!(
                "error: {} answered {}",
                crate::secrets::url(url.as_str()),
                r.status()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "error: cannot reach the admin server at {admin}: {}",
                e.without_url()
            );
            return ExitCode::FAILURE;
        }
    };
    eprintln!("tapping {} (Ctrl-C to stop)", crate::secrets::url(admin));
    let mut buf = String::new();
    loop {
        let chunk = tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            c = resp.chunk() => c,
        };
        let chunk = match chunk {
            Ok(Some(c)) => c,
            Ok(None) => {
                eprintln!("the router closed the tap");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("error: the tap broke: {}", e.without_url());
                return ExitCode::FAILURE;
            }
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        // One SSE event per blank line.
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let kind = block.lines().find_map(|l| l.strip_prefix("event: "));
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            let line = match (kind, serde_json::from_str::<crate::tap::Tapped>(&data)) {
                (Some("lagged"), _) => {
                    format!("… {data} decisions skipped (this terminal fell behind)")
                }
                (_, Ok(t)) if json => serde_json::to_string(&t).unwrap_or_default(),
                (_, Ok(t)) => crate::tap::render(&t),
                _ => continue,
            };
            say!("{line}");
        }
    }
}

async fn check(config: ConfigArg, online: bool, json: bool) -> ExitCode {
    let loaded = match config.load() {
        Ok(l) => l,
        Err(code) => {
            if json {
                say!(
                    "{}",
                    serde_json::json!({"ok": false, "error": "config error (on stderr)"})
                );
            }
            return code;
        }
    };
    // Text as it goes; with --json, one document at the end.
    macro_rules! text {
        ($($arg:tt)*) => {
            if !json {
                say!($($arg)*);
            }
        };
    }
    let mut report_sources = Vec::new();
    let mut report_routes = Vec::new();
    let mut report_prefect = serde_json::Value::Null;
    text!(
        "checking {}{}",
        loaded.path.display(),
        if loaded.legacy {
            " (prefect-event-router form)"
        } else {
            ""
        }
    );
    for s in &loaded.config.sources {
        let kind = match s {
            config::SourceConfig::Webhook(w) => {
                let http = &loaded.config.http;
                let scheme = if http.tls.is_some() { "https" } else { "http" };
                let guard = match &w.verify {
                    Some(v) => format!("verified: {}", v.scheme()),
                    None => "unauthenticated: anyone who can reach it can send events".into(),
                };
                let mut extra = vec![guard];
                if w.template.is_some() {
                    extra.push("Prefect Cloud template".into());
                }
                if let Some(r) = &w.rate_limit {
                    extra.push(format!("at most {}/s", r.per_second));
                }
                match w.respond {
                    crate::sources::webhook::Respond::Accepted => {}
                    crate::sources::webhook::Respond::Created => {
                        extra.push("answers once the runs exist".into())
                    }
                    crate::sources::webhook::Respond::Finished => {
                        extra.push("answers once the runs have ended".into())
                    }
                }
                format!(
                    "webhook {}://{}/hooks/{} ({})",
                    scheme,
                    http.listen,
                    w.name,
                    extra.join(", ")
                )
            }
            other => other.spec().describe(),
        };
        text!("  source {}: {kind}", s.name());
        report_sources.push(serde_json::json!({"name": s.name(), "what": kind}));
    }
    let mut failed = false;
    let client = if online {
        match app::prefect_client(&loaded.config.prefect) {
            Ok(c) => {
                match tokio::time::timeout(std::time::Duration::from_secs(10), c.health()).await {
                    Ok(Ok(())) => {
                        let at = crate::secrets::url(c.api_url().as_str());
                        text!("  prefect: answering at {at}");
                        report_prefect = serde_json::json!({"ok": true, "url": at});
                        Some(c)
                    }
                    Ok(Err(e)) => {
                        let why = crate::secrets::redact(&e.to_string()).to_string();
                        text!("  prefect: online check failed: {why}");
                        report_prefect = serde_json::json!({"ok": false, "error": why});
                        failed = true;
                        None
                    }
                    Err(_) => {
                        text!("  prefect: online check failed: no answer within 10s");
                        report_prefect =
                            serde_json::json!({"ok": false, "error": "no answer within 10s"});
                        failed = true;
                        None
                    }
                }
            }
            Err(e) => {
                let why = crate::secrets::redact(&format!("{e:#}")).to_string();
                text!("  prefect: online check failed: {why}");
                report_prefect = serde_json::json!({"ok": false, "error": why});
                failed = true;
                None
            }
        }
    } else {
        None
    };
    for (r, cfg) in loaded.routes.iter().zip(&loaded.config.routes) {
        let target = r
            .action
            .static_deployment()
            .map(|d| d.to_string())
            .unwrap_or_else(|| "(from the event)".into());
        let on = cfg
            .describe_stateful()
            .map(|d| format!(" {d}"))
            .unwrap_or_default();
        text!(
            "  route {}: from [{}]{}{on} -> run_deployment {target}{}",
            r.name,
            r.sources.join(", "),
            r.when
                .as_ref()
                .map(|w| format!(" when {}", w.source()))
                .unwrap_or_default(),
            match (r.shadow, &r.finish) {
                (true, _) => " (shadow: records would-runs, creates none)".to_string(),
                (false, Some(p)) => format!(
                    " (settled when its run ends: on_failure {}{}, finish_timeout {})",
                    match p.on_failure {
                        config::OnFailure::DeadLetter => "dead_letter",
                        config::OnFailure::Retry => "retry",
                        config::OnFailure::Accept => "accept",
                    },
                    if p.on_failure == config::OnFailure::Retry {
                        format!(" up to {} runs", p.max_runs)
                    } else {
                        String::new()
                    },
                    humantime_serde::re::humantime::format_duration(p.timeout)
                ),
                (false, None) => String::new(),
            } + &limits(cfg)
        );
        let mut route = serde_json::json!({
            "name": r.name,
            "from": r.sources,
            "when": r.when.as_ref().map(|w| w.source().to_string()),
            "waits_for": cfg.describe_stateful(),
            "deployment": r.action.static_deployment().map(|d| d.to_string()),
            "shadow": r.shadow,
            "settle_on": if r.finish.is_some() { "finished" } else { "created" },
        });
        if let (Some(client), Some(dep)) = (&client, r.action.static_deployment()) {
            match r.schema_problems(client).await {
                Ok(problems) => {
                    if let Ok(d) = client.resolve(dep).await {
                        text!("    deployment found: {}", d.id);
                        route["deployment_id"] = serde_json::json!(d.id);
                    }
                    for p in &problems {
                        text!("    parameters: {p}");
                    }
                    failed |= !problems.is_empty();
                    route["problems"] = serde_json::json!(problems);
                }
                Err(e) => {
                    text!("    deployment check failed: {e}");
                    route["error"] = serde_json::json!(e.to_string());
                    failed = true;
                }
            }
        }
        report_routes.push(route);
    }
    if json {
        say!(
            "{}",
            serde_json::json!({
                "file": loaded.path.display().to_string(),
                "ok": !failed,
                "online": online,
                "legacy": loaded.legacy,
                "prefect": report_prefect,
                "sources": report_sources,
                "routes": report_routes,
            })
        );
    }
    let what = if online {
        "OK, online checks passed"
    } else {
        "OK"
    };
    if failed {
        text!("{}: FAILED (see above)", loaded.path.display());
        ExitCode::FAILURE
    } else {
        text!("{}: {what}", loaded.path.display());
        ExitCode::SUCCESS
    }
}

/// A route's holds, as `check` prints them: ` (at most N runs waiting; K at a time per KEY)`.
fn limits(cfg: &config::RouteConfig) -> String {
    let mut parts = Vec::new();
    if let Some(n) = cfg.max_backlog {
        parts.push(format!("holds new runs while {n} wait"));
    }
    if let Some(c) = &cfg.concurrency {
        parts.push(format!("at most {} unfinished per key {}", c.limit, c.key));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}
