//! The command line without a Prefect server: `--help`, `check` on good and broken configs.

mod common;

use switchyard_testkit::TempDir;

fn switchyard(args: &[&str]) -> (i32, String, String) {
    common::switchyard(args, &[("PREFECT_API_URL", "http://127.0.0.1:9/api")])
}

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn help_lists_the_commands() {
    let (code, out, _) = switchyard(&["--help"]);
    assert_eq!(code, 0);
    for want in ["run", "check", "PREFECT_API_URL", "--log-level"] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    let (code, out, _) = switchyard(&["run", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--config") && out.contains("--exit-when-sources-end"),
        "{out}"
    );
}

#[test]
fn check_accepts_every_example() {
    let mut names: Vec<String> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in [
        "webhook.yaml",
        "stdin.yaml",
        "demo.yaml",
        "brokers.yaml",
        "prefect-event-router.json",
        "triggers.yaml",
        "webhooks-on-the-internet.yaml",
        "triggers.tests.yaml",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} is gone");
    }
    for name in &names {
        // A tests file runs under `switchyard test` against the config it is named after.
        if let Some(config) = name.strip_suffix(".tests.yaml") {
            let config = examples().join(format!("{config}.yaml"));
            let tests = examples().join(name);
            let (code, out, err) =
                switchyard(&["test", config.to_str().unwrap(), tests.to_str().unwrap()]);
            assert_eq!(code, 0, "{name}: {out}{err}");
            assert!(out.contains(" passed, 0 failed"), "{out}");
            continue;
        }
        let path = examples().join(name);
        let (code, out, err) = common::switchyard(
            &["check", "--config", path.to_str().unwrap()],
            &[
                ("PREFECT_API_URL", "http://127.0.0.1:9/api"),
                // The secrets the webhook example reads from its environment.
                ("GITHUB_WEBHOOK_SECRET", "example-github-secret"),
                ("STRIPE_WEBHOOK_SECRET", "whsec_example"),
            ],
        );
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.contains(": OK"), "{out}");
    }
    let path = examples().join("webhooks-on-the-internet.yaml");
    let (code, _, err) = switchyard(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 2, "a missing secret is a config error");
    assert!(
        err.contains("sources[0].verify") && err.contains("GITHUB_WEBHOOK_SECRET is not set"),
        "{err}"
    );
    let (_, out, _) = switchyard(&[
        "check",
        examples()
            .join("prefect-event-router.json")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        out.contains("prefect-event-router form") && out.contains("(from the event)"),
        "{out}"
    );
}

#[test]
fn check_names_the_file_and_key_of_a_broken_config() {
    let dir = TempDir::new("switchyard-cli");
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "sources:\n  - {type: webhook, name: orders}\nroutes:\n  - name: r\n    from: [ordrs]\n    action: {type: run_deployment, deployment: a/b}\n",
    )
    .unwrap();
    let (code, _, err) = switchyard(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        format!(
            "error: config error in {} at `routes[0].from[0]`: unknown source \"ordrs\"; expected one of: orders",
            path.display()
        )
    );
    let (code, _, err) = switchyard(&["check", dir.path().join("missing.yaml").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.yaml: cannot read the file"), "{err}");
    let (code, _, err) = switchyard(&["check"]);
    assert_eq!(code, 2);
    assert!(err.contains("no config file"), "{err}");
}

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `run CONFIG --exit-when-sources-end --journal JOURNAL` with nothing on standard input:
/// `(exit code, stderr)`.
fn run_to_end(config: &str, journal: &std::path::Path) -> (i32, String) {
    let journal = journal.to_str().unwrap();
    let (code, _, err) = switchyard(&[
        "run",
        config,
        "--exit-when-sources-end",
        "--journal",
        journal,
    ]);
    (code, err)
}

/// A config reading standard input into one route.
fn stdin_config(dir: &TempDir) -> String {
    write(
        dir,
        "c.yaml",
        &format!("sources:\n  - {{type: stdin, name: s}}\n{ROUTE}"),
    )
}

const ROUTE: &str = "routes:\n  - name: r\n    action: {type: run_deployment, deployment: a/b}\n";

/// Every out-of-range number of the red team's list: exit 2, the key, the allowed range;
/// never a panic (exit 101), never accepted only to fail on every event.
#[test]
fn check_refuses_numbers_out_of_range_naming_the_key_and_the_range() {
    let dir = TempDir::new("switchyard-cli");
    let src = "sources:\n  - {type: webhook, name: h}\n";
    let trigger = |t: &str| {
        format!(
            "{src}routes:\n  - name: r\n    trigger: {t}\n    action: {{type: run_deployment, deployment: a/b}}\n"
        )
    };
    let batch = |b: &str| {
        format!(
            "{src}routes:\n  - name: r\n    batch: {b}\n    action: {{type: run_deployment, deployment: a/b}}\n"
        )
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            trigger("{type: event, expect: [x], threshold: 2, within: 1e20}"),
            "routes[0].trigger.within",
            "at most",
        ),
        (
            trigger("{type: event, expect: [x], threshold: 2, within: 1e14}"),
            "routes[0].trigger.within",
            "at most",
        ),
        (
            trigger("{type: event, expect: [x], threshold: 2, within: 100000000y}"),
            "routes[0].trigger.within",
            "at most",
        ),
        (
            trigger(
                "{type: compound, require: all, within: 1e14, triggers: [{type: event, expect: [a]}]}",
            ),
            "routes[0].trigger.within",
            "at most",
        ),
        (
            trigger(
                "{type: sequence, within: 10m, triggers: [{type: event, expect: [a], within: 1e14}]}",
            ),
            "routes[0].trigger.triggers[0].within",
            "at most",
        ),
        (
            batch("{max_delay: 1e14}"),
            "routes[0].batch.max_delay",
            "at most",
        ),
        (batch("{idle: 1e20}"), "routes[0].batch.idle", "at most"),
        (
            format!("prefect: {{rate_limit: 1e-300}}\n{src}{ROUTE}"),
            "prefect.rate_limit",
            "between 0.001 and 100000",
        ),
        (
            format!("prefect: {{rate_limit: 0}}\n{src}{ROUTE}"),
            "prefect.rate_limit",
            "between 0.001 and 100000",
        ),
        (
            format!("prefect: {{rate_limit: -5}}\n{src}{ROUTE}"),
            "prefect.rate_limit",
            "between 0.001 and 100000",
        ),
        (
            format!("prefect: {{request_timeout: 0s}}\n{src}{ROUTE}"),
            "prefect.request_timeout",
            "between 100ms and 1h",
        ),
        (
            format!("journal: {{retention: {{max_age: 300000000y}}}}\n{src}{ROUTE}"),
            "journal.retention.max_age",
            "between 1m and 100years",
        ),
        (
            format!(
                "{src}routes:\n  - name: r\n    action: {{type: run_deployment, deployment: a/b, rate_limit: 1e-300}}\n"
            ),
            "routes[0].action.rate_limit",
            "between 0.001",
        ),
        (
            format!("templates: {{fuel: 0}}\n{src}{ROUTE}"),
            "templates.fuel",
            "between 100 and",
        ),
        (
            format!("delivery: {{backoff: 10s, max_backoff: 1s}}\n{src}{ROUTE}"),
            "delivery.max_backoff",
            "between 10s and 1day",
        ),
    ];
    for (i, (config, key, range)) in cases.iter().enumerate() {
        let path = write(&dir, &format!("c{i}.yaml"), config);
        let (code, _, err) = switchyard(&["check", &path]);
        assert_eq!(code, 2, "{config}\n{err}");
        assert!(
            err.contains(&format!("at `{key}`")) && err.contains(range),
            "expected key {key} and range {range:?} in:\n{err}"
        );
    }
}

/// A `${VAR}` in a YAML comment is not a reference.
#[test]
fn a_variable_in_a_comment_is_left_alone() {
    let dir = TempDir::new("switchyard-cli");
    let path = write(
        &dir,
        "c.yaml",
        &format!(
            "# set ${{SWITCHYARD_TEST_UNSET_VAR}} to change the hook\nsources:\n  - {{type: webhook, name: h}} # ${{ALSO_UNSET}}\n{ROUTE}"
        ),
    );
    let (code, out, err) = switchyard(&["check", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": OK"), "{out}");
}

/// A journal that cannot be written is refused at start, with the reason; the router does not
/// start only to answer 503 to everything.
#[test]
fn run_refuses_a_journal_it_cannot_write() {
    let dir = TempDir::new("switchyard-cli");
    let config = stdin_config(&dir);
    let journal = dir.path().join("journal.db");
    // Create it, then make it unwritable, for root too (the immutable attribute).
    let (code, err) = run_to_end(&config, &journal);
    assert_eq!(code, 0, "{err}");
    let mut perms = std::fs::metadata(&journal).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o400);
    std::fs::set_permissions(&journal, perms).unwrap();
    let immutable = unsafe { libc::geteuid() } == 0;
    if immutable {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&journal)
            .status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "chattr +i is needed to make a file read-only for root"
        );
    }
    let (code, err) = run_to_end(&config, &journal);
    if immutable {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&journal)
            .status();
    }
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot open the journal at") && err.contains("journal.db"),
        "{err}"
    );
}

/// The journal and its directory are created private: they hold every payload.
#[test]
fn the_journal_is_created_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("switchyard-cli");
    let config = stdin_config(&dir);
    let journal = dir.path().join("state/journal.db");
    let (code, err) = run_to_end(&config, &journal);
    assert_eq!(code, 0, "{err}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&journal), 0o600);
    assert_eq!(mode(journal.parent().unwrap()), 0o700);
    for side in ["journal.db-wal", "journal.db-shm"] {
        let p = dir.path().join("state").join(side);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{side}");
        }
    }
}

/// `--exit-when-sources-end` with events left pending (Prefect unreachable) exits 1 and says
/// how many, as the README promises.
#[test]
fn exit_when_sources_end_with_pending_events_exits_1() {
    let dir = TempDir::new("switchyard-cli");
    let config = write(
        &dir,
        "c.yaml",
        "prefect: {max_retries: 0}\ndelivery: {max_attempts: 100, backoff: 1h, max_backoff: 1h}\nsources:\n  - {type: stdin, name: s}\nroutes:\n  - name: r\n    action: {type: run_deployment, deployment: a/b}\n",
    );
    let journal = dir.path().join("journal.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "run",
            &config,
            "--exit-when-sources-end",
            "--journal",
            journal.to_str().unwrap(),
        ])
        .env("PREFECT_API_URL", "http://127.0.0.1:9/api")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            for n in 0..3 {
                writeln!(stdin, "{{\"n\": {n}}}")?;
            }
            drop(stdin);
            child.wait_with_output()
        })
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("3 events left pending in the journal"),
        "{err}"
    );
}

/// `switchyard test`: offline on a simulated clock; a wrong expectation fails with a readable
/// diff and exit 1; a malformed tests file is exit 2 naming the file and the key.
#[test]
fn switchyard_test_reports_a_wrong_expectation_with_a_diff() {
    let dir = TempDir::new("switchyard-cli");
    let config = examples().join("triggers.yaml");
    let tests = write(
        &dir,
        "wrong.tests.yaml",
        r#"
tests:
  - name: expects four failures where three are counted
    events:
      - {source: events, name: order.failed, labels: {customer: c1}, payload: {amount: 120}, at: 0s}
      - {source: events, name: order.failed, labels: {customer: c1}, payload: {amount: 130}, at: 4m}
      - {source: events, name: order.failed, labels: {customer: c1}, payload: {amount: 210}, at: 9m}
    expect_runs:
      - {route: repeated-failures, parameters: {name: "c1 failed 4 times"}}
  - name: expects nothing from a quiet device
    events:
      - {source: events, name: device.heartbeat, labels: {prefect.resource.id: pump-1}, at: 0s}
    advance: 10m
    expect_runs: []
"#,
    );
    let started = std::time::Instant::now();
    let (code, out, err) = switchyard(&["test", config.to_str().unwrap(), &tests]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAILED  expects four failures where three are counted"),
        "{out}"
    );
    assert!(
        out.contains(r#"- repeated-failures {"name":"c1 failed 4 times"}"#),
        "{out}"
    );
    assert!(
        out.contains(
            r#"+ +00:09:00 repeated-failures -> greet/from-switchyard {"name":"c1 failed 3 times"}"#
        ),
        "{out}"
    );
    // Ten simulated minutes, and the absence fired at five of them.
    assert!(
        out.contains("+ +00:05:00 heartbeat-missing -> greet/from-switchyard"),
        "{out}"
    );
    assert!(out.contains("0 passed, 2 failed"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(err.is_empty(), "quiet by default: {err}");

    let bad = write(
        &dir,
        "bad.tests.yaml",
        "tests:
  - {name: x, events: [{source: events, nme: a}], expect_runs: []}
",
    );
    let (code, _, err) = switchyard(&["test", config.to_str().unwrap(), &bad]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.tests.yaml") && err.contains("tests[0].events[0]"),
        "{err}"
    );
    let unknown = write(
        &dir,
        "src.tests.yaml",
        "tests:
  - {name: x, events: [{source: nope, name: a}], expect_runs: []}
",
    );
    let (code, out, _) = switchyard(&["test", config.to_str().unwrap(), &unknown]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no source \"nope\""), "{out}");
}

/// `check --online` fails when it cannot even build a Prefect client, instead of saying OK.
#[test]
fn check_online_fails_when_the_client_cannot_be_built() {
    let dir = TempDir::new("switchyard-cli");
    let path = write(
        &dir,
        "c.yaml",
        &format!(
            "prefect: {{api_url: \"not a url\"}}\nsources:\n  - {{type: webhook, name: h}}\n{ROUTE}"
        ),
    );
    let (code, out, _) = switchyard(&["check", "--online", &path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("online check failed") && out.contains("invalid Prefect API URL"),
        "{out}"
    );
    assert!(!out.contains("OK"), "{out}");
}

/// `check --online` with a Prefect that does not answer fails and never prints OK; trigger
/// and batch routes print as what they wait for, a shadow route says so.
#[test]
fn check_online_fails_when_prefect_does_not_answer_and_describes_triggers() {
    let dir = TempDir::new("switchyard-cli");
    let path = write(
        &dir,
        "c.yaml",
        "sources:\n  - {type: webhook, name: orders}\nroutes:\n  - name: triage\n    mode: shadow\n    trigger: {type: event, expect: [order.failed], threshold: 3, within: 10m, for_each: [customer]}\n    action: {type: run_deployment, deployment: triage/default}\n",
    );
    let (code, out, _) = switchyard(&["check", "--online", &path]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("prefect: online check failed"), "{out}");
    assert!(!out.contains(": OK"), "{out}");
    assert!(out.contains(": FAILED"), "{out}");
    assert!(
        out.contains("route triage: from [orders] on 3 × order.failed within 10m per customer -> run_deployment triage/default (shadow"),
        "{out}"
    );
    let (code, out, _) = switchyard(&["check", &path]);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with(": OK"), "{out}");
}

/// `switchyard events list | head` must not panic when the reader has gone (a closed pipe):
/// the command ends quietly.
#[test]
fn a_closed_pipe_ends_a_listing_quietly() {
    let dir = TempDir::new("switchyard-cli");
    let config = stdin_config(&dir);
    let journal = dir.path().join("journal.db");
    let (code, err) = run_to_end(&config, &journal);
    assert_eq!(code, 0, "{err}");
    for args in [vec!["list"], vec!["list", "--json"]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["events", "--journal", journal.to_str().unwrap()])
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The systemd unit in `deploy/` passes `systemd-analyze verify` (with its ExecStart pointed at
/// this build), when the machine has systemd-analyze.
#[test]
fn the_systemd_unit_verifies() {
    let analyze = std::path::Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("systemd-analyze not installed; the unit is not verified here");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/switchyard.service"
    ))
    .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/switchyard "),
        "{unit}"
    );
    let dir = switchyard_testkit::TempDir::new("unit");
    let path = dir.path().join("switchyard.service");
    let here = unit.replace(
        "/usr/local/bin/switchyard",
        env!("CARGO_BIN_EXE_switchyard"),
    );
    std::fs::write(&path, here).unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// The Dockerfile copies only what exists and builds the profile and binary that exist.
#[test]
fn the_dockerfile_names_what_the_repository_has() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let docker = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    for line in docker
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                root.join(src).exists(),
                "{line}: {src} is not in the repository"
            );
        }
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(docker.contains("--profile dist") && manifest.contains("[profile.dist]"));
    assert!(docker.contains("USER switchyard") && docker.contains("VOLUME"));
}

fn docs() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// `docs/config.schema.json` and `docs/reference.md` are what `switchyard config` prints from
/// the config types now.
#[test]
fn the_published_schema_and_reference_are_current() {
    for (what, file) in [
        ("schema", "config.schema.json"),
        ("reference", "reference.md"),
    ] {
        let (code, out, err) = switchyard(&["config", what]);
        assert_eq!(code, 0, "{err}");
        let published = std::fs::read_to_string(docs().join(file)).unwrap_or_default();
        assert!(
            published == out,
            "docs/{file} is stale: run `cargo run --bin switchyard -- config {what} > docs/{file}`"
        );
    }
}

/// The JSON Schema validates every example config (after `${VAR}` interpolation, as `run`
/// reads them), each YAML example names it for editors, and a broken config fails it.
#[test]
fn the_schema_validates_every_example() {
    let (_, out, _) = switchyard(&["config", "schema"]);
    let schema: serde_json::Value = serde_json::from_str(&out).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let env = |name: &str| match name {
        "PREFECT_API_URL" => Some("http://127.0.0.1:4200/api".to_string()),
        _ => None,
    };
    let mut checked = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".tests.yaml") {
            continue; // tests of a config (`switchyard test`, run in check_accepts_every_example)
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if name.ends_with(".yaml") {
            assert!(
                text.starts_with("# yaml-language-server: $schema=../docs/config.schema.json\n"),
                "{name} does not name the schema for editors"
            );
        }
        let text = switchyard::config::interpolate(&text, env).unwrap();
        let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        checked += 1;
    }
    assert!(checked >= 6, "{checked} example configs");
    for (broken, why) in [
        (
            "sources: [{type: stdin, name: s, colour: red}]\nroutes: []",
            "an unknown key",
        ),
        (
            "sources: []\nroutes: [{name: r, action: {type: run_deployment}}]",
            "a missing deployment",
        ),
        (
            "sources: []\nroutes: []\nengine: {queue_capacity: 0}",
            "a zero capacity",
        ),
        (
            "sources: []\nroutes: []\nprefect: {request_timeout: soon}",
            "a duration in words",
        ),
        (
            "sources: [{type: kafka, name: k}]\nroutes: []",
            "a Kafka source without topics",
        ),
    ] {
        let doc: serde_json::Value = serde_norway::from_str(broken).unwrap();
        assert!(!validator.is_valid(&doc), "the schema accepted {why}");
    }
}

#[test]
fn config_help_names_the_editor_comment() {
    let (code, out, _) = switchyard(&["config", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("yaml-language-server: $schema="), "{out}");
}

/// What the README's `cargo install --path crates/switchyard --locked` needs: the package
/// has the `switchyard` binary, and the lock file agrees with every manifest (`--locked`
/// refuses to install otherwise). The install itself is a full release build, left out of
/// the suite.
#[test]
fn the_package_installs_as_the_readme_says() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("cargo install --path crates/switchyard --locked"));
    let manifest = std::fs::read_to_string(root.join("crates/switchyard/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[[bin]]\nname = \"switchyard\""),
        "{manifest}"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
