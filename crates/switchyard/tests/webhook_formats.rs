//! Webhook bodies beyond plain JSON, against the `switchyard` binary and a real Prefect: a
//! Prefect Cloud webhook (its definition as Prefect Cloud's API returns it, brought over by
//! `switchyard import`) produces the event Prefect's documentation describes, from the
//! documentation's own form-encoded `curl`; a CloudEvents batch of 100 gives 100 events and
//! 100 runs.

mod common;

use common::Router;
use serde_json::{Value, json};
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique};

fn api() -> &'static str {
    &PrefectServer::shared().api_url
}

/// The dynamic template from Prefect's webhook documentation ("Dynamic Webhook Events").
const DOCS_TEMPLATE: &str = r#"{
    "event": "model.refreshed",
    "resource": {
        "prefect.resource.id": "product.models.{{ body.model }}",
        "prefect.resource.name": "{{ body.friendly_name }}",
        "producing-team": "Data Science"
    }
}"#;

/// POSTs `body` with exactly one `Content-Type`, as `curl -d` does.
fn post(url: &str, body: &str, content_type: &str) -> (u16, Value) {
    common::rt().block_on(async {
        let resp = reqwest::Client::new()
            .post(url)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn an_imported_prefect_cloud_webhook_and_a_cloudevents_batch_start_their_runs() {
    let dir = TempDir::new("webhook-formats");
    let cloud = json!({
        "id": "2b7a1c52-5b63-4b8e-9d89-2f1a7c8e0b11",
        "name": "Model refreshed",
        "description": "The data science team's daily model refresh",
        "template": DOCS_TEMPLATE,
        "enabled": true,
        "slug": "AERylZ_uewzpDx-8fcweHQ",
        "service_account_id": null
    });
    let def = dir.path().join("webhook.json");
    std::fs::write(&def, cloud.to_string()).unwrap();
    let (code, yaml, stderr) = common::switchyard(&["import", def.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("consider `verify`"), "{stderr}");
    let imported: Value = serde_norway::from_str(&yaml).unwrap();
    let hook = &imported["sources"][0];
    assert_eq!(hook["type"], "webhook");
    assert_eq!(hook["name"], "model-refreshed");
    assert_eq!(hook["template"], DOCS_TEMPLATE);
    assert_eq!(
        hook["description"],
        "The data science team's daily model refresh"
    );

    let flow = unique("Formats");
    let models = common::deploy(api(), &flow, "models", json!({}));
    let batch = common::deploy(api(), &flow, "batch", json!({}));
    let port = free_port();
    let config = json!({
        "http": {"listen": format!("127.0.0.1:{port}")},
        "sources": [hook, {"type": "webhook", "name": "ce", "event_from": "sender"}],
        "routes": [
            {"name": "models", "from": ["model-refreshed"], "when": "event.name == 'model.refreshed'",
             "action": {"type": "run_deployment", "deployment": format!("{flow}/models"),
                        "flow_run_name": "{{ event.labels['prefect.resource.id'] }} by {{ event.labels['producing-team'] }}"}},
            {"name": "batch", "from": ["ce"], "when": "event.name == 'com.example.order'",
             "action": {"type": "run_deployment", "deployment": format!("{flow}/batch"),
                        "flow_run_name": "order-{{ event.payload.n }}"}}
        ]
    });
    let router = Router::start(
        dir.path(),
        api(),
        "formats.yaml",
        &serde_norway::to_string(&config).unwrap(),
        &[],
    );
    router.wait_for_http(port);

    // The documentation's `curl -d model=recommendations -d friendly_name=...`.
    let (status, answer) = post(
        &format!("http://127.0.0.1:{port}/hooks/model-refreshed"),
        "model=recommendations&friendly_name=Recommendations%20[Products]",
        "application/x-www-form-urlencoded",
    );
    assert_eq!(status, 202, "{answer}");
    let runs = common::wait_for_runs(api(), models, 1);
    assert_eq!(
        runs[0].name,
        "product.models.recommendations by Data Science"
    );

    let entries: Vec<Value> = (0..100)
        .map(|n| {
            json!({"specversion": "1.0", "id": format!("order-{n}"), "source": "/shop",
                   "type": "com.example.order", "time": "2026-12-01T10:00:00Z", "data": {"n": n}})
        })
        .collect();
    let (status, answer) = post(
        &format!("http://127.0.0.1:{port}/hooks/ce"),
        &Value::Array(entries).to_string(),
        "application/cloudevents-batch+json",
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["ids"].as_array().map(Vec::len), Some(100));
    assert_eq!(answer["ids"][99], "ce:order-99");
    let runs = common::wait_for_runs(api(), batch, 100);
    let mut names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 100, "one run per entry");
    assert_eq!(common::count_runs(api(), batch), 100);
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}
