use std::path::Path;

use super::*;
use crate::sources::stdin::StdinFormat;

fn env(name: &str) -> Option<String> {
    (name == "PREFECT_API_URL").then(|| "http://127.0.0.1:4200/api".to_string())
}

fn load(text: &str) -> Result<crate::routes::Loaded, ConfigError> {
    crate::routes::load_str(Path::new("switchyard.yaml"), text, env)
}

fn err(text: &str) -> String {
    load(text)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "loaded fine".into())
}

const MINIMAL: &str = r#"
sources:
  - {type: webhook, name: orders}
routes:
  - name: r
    action: {type: run_deployment, deployment: "Flow/dep", parameters: {n: "{{ event.payload.n }}"}}
"#;

#[test]
fn minimal_config_gets_defaults() {
    let l = load(MINIMAL).unwrap();
    assert!(!l.legacy);
    assert_eq!(l.config.engine.queue_capacity.get(), 1024);
    assert_eq!(l.config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(l.routes[0].sources, ["orders"]);
    assert_eq!(l.config.prefect.max_in_flight.get(), 4);
}

#[test]
fn legacy_form_is_translated() {
    let l = load(r#"{"threads":[{"publisher_type":"StdInput"}], "settings": {"anything": 1}}"#)
        .unwrap();
    assert!(l.legacy);
    assert!(
        matches!(&l.config.sources[0], SourceConfig::Stdin(s) if s.format == StdinFormat::PrefectEventRouter)
    );
    assert_eq!(l.routes[0].name, legacy::LEGACY_ROUTE);

    assert_eq!(
        err(r#"{"threads":[{"publisher_type":"Kafka"}]}"#),
        "config error in switchyard.yaml at `threads[0].publisher_type`: unknown publisher_type \"Kafka\"; expected one of: StdInput, AzureStorageQueue"
    );
    let l = load(r#"{"threads":[{"publisher_type":"AzureStorageQueue","storage_account":"acct","queue_name":"q","message_flow_actions":{}}]}"#)
        .unwrap();
    assert!(
        matches!(&l.config.sources[0], SourceConfig::AzureQueue(a) if a.account.as_deref() == Some("acct") && a.queue.as_deref() == Some("q"))
    );
    assert_eq!(
        err(r#"{"threads":[{"publisher_type":"AzureStorageQueue","storage_account":"a"}]}"#),
        "config error in switchyard.yaml at `threads[0].queue_name`: expected a string (AzureStorageQueue needs storage_account and queue_name)"
    );
    assert!(err(r#"{"threads":[]}"#).contains("at `threads`: expected at least one thread"));
}

#[test]
fn errors_name_the_file_the_key_and_the_expectation() {
    let cases = [
        (
            MINIMAL.replace("name: orders}", "name: orders, colour: red}"),
            "at `sources[0]`: unknown field `colour`",
        ),
        (
            MINIMAL.replace("type: webhook", "type: pulsar"),
            "unknown variant `pulsar`, expected one of `stdin`, `webhook`, `redis_streams`, `nats`, `amqp`, `mqtt`, `zeromq`, `kafka`",
        ),
        (
            format!("engine: {{queue_capacity: 0}}\n{MINIMAL}"),
            "at `engine.queue_capacity`",
        ),
        (
            format!("engine: {{shutdown_timeout: soon}}\n{MINIMAL}"),
            "at `engine.shutdown_timeout`",
        ),
        (
            format!("http: {{listen: 'nowhere'}}\n{MINIMAL}"),
            "at `http.listen`: invalid socket address syntax",
        ),
        (
            MINIMAL.replace("  - name: r\n", "  - name: r\n    from: [ordrs]\n"),
            "at `routes[0].from[0]`: unknown source \"ordrs\"; expected one of: orders",
        ),
        (
            MINIMAL.replace("deployment: \"Flow/dep\"", "deployment: \"just-a-name\""),
            "at `routes[0].action.deployment`: invalid deployment reference",
        ),
        (
            MINIMAL.replace(
                "{n: \"{{ event.payload.n }}\"}",
                "{n: \"{{ event.payload.n + }}\"}",
            ),
            "at `routes[0].action.parameters.n`: invalid expression",
        ),
        (
            MINIMAL.replace(
                "parameters: {n: \"{{ event.payload.n }}\"}",
                "parameters: 7",
            ),
            "at `routes[0].action.parameters`: expected a map of parameters",
        ),
        (
            MINIMAL.replace(
                "  - name: r\n",
                "  - name: r\n    when: \"event.payload.a >\"\n",
            ),
            "at `routes[0].when`: invalid expression",
        ),
        (
            MINIMAL.replace(
                "name: orders}",
                "name: orders}\n  - {type: webhook, name: orders}",
            ),
            "at `sources[1].name`: duplicate source name \"orders\"",
        ),
        (
            MINIMAL.replace("name: orders}", "name: 'bad name'}"),
            "at `sources[0].name`: expected a name of letters",
        ),
        (
            "routes: []\nsources: []\n".to_string(),
            "at `sources`: expected at least one source",
        ),
        (
            MINIMAL.replace("sources:", "sourcez:"),
            "unknown field `sourcez`",
        ),
        (
            "- a\n- b\n".to_string(),
            "expected a mapping with `sources` and `routes`",
        ),
        ("a: [1\n".to_string(), "not valid YAML or JSON"),
        (
            MINIMAL.replace("Flow/dep", "${DEPLOYMENT}"),
            "line 6: environment variable DEPLOYMENT is not set",
        ),
    ];
    for (text, want) in cases {
        let got = err(&text);
        assert!(got.starts_with("config error in switchyard.yaml"), "{got}");
        assert!(got.contains(want), "wanted {want:?} in {got:?}");
    }
}

#[test]
fn every_example_parses() {
    // The secrets the webhook example reads from its environment (no other test reads these).
    // SAFETY: std's own environment lock orders these writes with every std::env read.
    unsafe {
        std::env::set_var("GITHUB_WEBHOOK_SECRET", "example-github-secret");
        std::env::set_var("STRIPE_WEBHOOK_SECRET", "whsec_example");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if path.to_string_lossy().ends_with(".tests.yaml") {
            // Tests of a config (`switchyard test`), not a config.
            let t: crate::simulate::TestsFile =
                serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!t.tests.is_empty());
            continue;
        }
        let loaded = crate::routes::load_str(&path, &text, env).unwrap_or_else(|e| panic!("{e}"));
        assert!(!loaded.routes.is_empty());
        seen += 1;
    }
    assert!(seen >= 4, "expected the example configs, found {seen}");
}

fn azure(source: &str) -> Result<crate::sources::azure::target::AzureTarget, String> {
    let text = format!(
        "sources:\n  - {source}\nroutes:\n  - {{name: r, action: {{type: run_deployment, deployment: a/b}}}}\n"
    );
    let l = load(&text).map_err(|e| e.to_string())?;
    match &l.config.sources[0] {
        SourceConfig::AzureQueue(a) => {
            crate::sources::azure::target::target(a).map_err(|(k, m)| format!("{k}: {m}"))
        }
        other => Err(format!("not an azure source: {other:?}")),
    }
}

#[test]
fn azure_queue_targets_resolve_from_each_form() {
    let key = "a2V5";
    let t = azure(&format!("{{type: azure_queue, name: a, connection_string: \"AccountName=acct;AccountKey={key};EndpointSuffix=core.windows.net\", queue: jobs}}")).unwrap();
    assert_eq!(
        t.queue_url.as_str(),
        "https://acct.queue.core.windows.net/jobs"
    );
    assert_eq!(t.queue, "jobs");
    assert!(
        matches!(&t.auth, crate::sources::azure::target::AzureAuth::AccountKey { account, key } if account == "acct" && key == b"key")
    );

    let t = azure("{type: azure_queue, name: a, queue_url: \"http://127.0.0.1:10001/devstoreaccount1/q1?sv=1&sig=x\"}").unwrap();
    assert_eq!(
        t.queue_url.as_str(),
        "http://127.0.0.1:10001/devstoreaccount1/q1"
    );
    assert_eq!(t.queue, "q1");
    assert_eq!(
        t.auth,
        crate::sources::azure::target::AzureAuth::Sas("sv=1&sig=x".into())
    );

    let t = azure("{type: azure_queue, name: a, account: acct, queue: q, token_env: AZ_TOKEN}")
        .unwrap();
    assert_eq!(
        t.auth,
        crate::sources::azure::target::AzureAuth::TokenEnv("AZ_TOKEN".into())
    );
    // Secrets never reach Debug output (and so never the logs).
    let t = azure("{type: azure_queue, name: a, account: acct, queue: q, sas: \"?sig=secret\"}")
        .unwrap();
    assert!(!format!("{t:?}").contains("secret"));
}

#[test]
fn azure_queue_mistakes_name_the_key() {
    let e = azure("{type: azure_queue, name: a, account: acct}").unwrap_err();
    assert!(
        e.contains("sources[0].queue") && e.contains("expected the queue name"),
        "{e}"
    );
    let e = azure("{type: azure_queue, name: a, queue: q}").unwrap_err();
    assert!(e.contains("sources[0].account"), "{e}");
    let e = azure(
        "{type: azure_queue, name: a, account: acct, queue: q, account_key: \"not base64!\"}",
    )
    .unwrap_err();
    assert!(
        e.contains("sources[0].account_key") && e.contains("base64"),
        "{e}"
    );
    let e = azure("{type: azure_queue, name: a, connection_string: \"AccountName=x;secretwithoutequals\", queue: q}").unwrap_err();
    assert!(
        e.contains("sources[0].connection_string") && !e.contains("secretwithoutequals"),
        "{e}"
    );
    let e = azure("{type: azure_queue, name: a, queue_url: \"http://h/acct/q\", token_env: T}")
        .unwrap_err();
    assert!(
        e.contains("sources[0].token_env") && e.contains("https"),
        "{e}"
    );
    let e = azure("{type: azure_queue, name: a, account: acct, queue: q, batch: 33}").unwrap_err();
    assert!(
        e.contains("sources[0].batch") && e.contains("1 to 32"),
        "{e}"
    );
}

#[test]
fn routes_that_test_only_the_name_subscribe_to_those_names() {
    let l = load(
        r#"
sources: [{type: webhook, name: a}, {type: webhook, name: b}]
routes:
  - {name: by_name, when: "event.name in ['x', 'y']", action: {type: run_deployment, deployment: f/d}}
  - {name: by_payload, from: [a], when: "event.payload.n > 1", action: {type: run_deployment, deployment: f/d}}
  - {name: all, from: [b], action: {type: run_deployment, deployment: f/d}}
  - {name: counted, from: [a], trigger: {type: event, expect: [z], threshold: 2, within: 60}, action: {type: run_deployment, deployment: f/d}}
"#,
    )
    .unwrap();
    let topics: Vec<Vec<String>> = l.routes.iter().map(|r| r.topics()).collect();
    assert_eq!(topics[0], ["a#x", "a#y", "b#x", "b#y"]);
    assert_eq!(topics[1], ["a"]);
    assert_eq!(topics[2], ["b"]);
    assert_eq!(topics[3], ["a#z", "trigger:counted"]);
}

/// An unknown filter in a parameter is a config error naming the key, so `check` and `run`
/// refuse it instead of dead-lettering every event.
#[test]
fn an_unknown_filter_is_a_config_error_naming_the_key() {
    let e = err(r#"
sources: [{type: webhook, name: orders}]
routes:
  - name: r
    action: {type: run_deployment, deployment: "Flow/dep", parameters: {x: "{{ event.payload.x | nosuchfilter }}"}}
"#);
    assert!(
        e.contains("routes[0].action.parameters.x")
            && e.contains("unknown filter \"nosuchfilter\""),
        "{e}"
    );
}

#[test]
fn routes_can_be_shadow_and_say_what_their_trigger_waits_for() {
    let l = load(
        r#"
sources: [{type: webhook, name: orders}]
routes:
  - name: repeated
    mode: shadow
    trigger: {type: event, expect: [order.failed], threshold: 3, within: 10m, for_each: [customer]}
    action: {type: run_deployment, deployment: "triage/default"}
  - name: absent
    trigger: {type: event, expect: [heartbeat], posture: Proactive, threshold: 1, within: 5m}
    action: {type: run_deployment, deployment: "alert/default"}
  - name: batched
    batch: {max_events: 50, max_delay: 1m, idle: 10s, key: "{{ event.payload.customer }}"}
    action: {type: run_deployment, deployment: "bulk/default"}
"#,
    )
    .unwrap();
    assert!(l.routes[0].shadow && !l.routes[1].shadow);
    let describe = |i: usize| l.config.routes[i].describe_stateful().unwrap_or_default();
    assert_eq!(describe(0), "on 3 × order.failed within 10m per customer");
    assert_eq!(
        describe(1),
        "when fewer than 1 × heartbeat arrive within 5m"
    );
    assert_eq!(
        describe(2),
        "in batches of up to 50, closed 1m after the first event or after 10s idle per event.payload.customer"
    );
    let shadowed = l.into_shadow().unwrap();
    assert!(shadowed.routes.iter().all(|r| r.shadow));
    assert!(err("sources: [{type: webhook, name: o}]\nroutes:\n  - {name: r, mode: dry, action: {type: run_deployment, deployment: f/d}}\n").contains("mode"));
}
