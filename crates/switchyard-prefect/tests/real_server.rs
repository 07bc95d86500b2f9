//! The client against a real Prefect server (started by the testkit on a free port).

use serde_json::{Map, Value, json};
use switchyard_prefect::*;
use switchyard_testkit::{PrefectServer, unique};

fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

async fn setup(strict: bool) -> (PrefectClient, String, String) {
    let server = PrefectServer::shared();
    let client = PrefectClient::new(ClientConfig::new(&server.api_url)).unwrap();
    client.health().await.unwrap();
    let flow_name = unique("Client Flow");
    let flow = client.create_flow(&flow_name).await.unwrap();
    let dep_name = "dep".to_string();
    client
        .create_deployment(&DeploymentCreate {
            name: dep_name.clone(),
            flow_id: flow.id,
            enforce_parameter_schema: strict,
            parameter_openapi_schema: Some(json!({
                "title": "Parameters", "type": "object",
                "properties": {"name": {"type": "string"}, "count": {"type": "integer", "default": 1}},
                "required": ["name"]
            })),
            tags: vec!["switchyard-test".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    (client, flow_name, dep_name)
}

#[tokio::test]
async fn creates_runs_idempotently() {
    let (client, flow, dep) = setup(true).await;
    let reference: DeploymentRef = format!("{flow}/{dep}").parse().unwrap();
    let body = FlowRunCreate {
        parameters: params(json!({"name": "alice", "count": 3})),
        tags: vec!["from-rust".into()],
        idempotency_key: Some(unique("key")),
        name: Some("first".into()),
        labels: params(json!({"switchyard.event.id": "evt-1"})),
    };
    let (deployment, first) = client
        .run_deployment(&reference, &body, None)
        .await
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.run.name, "first");
    assert_eq!(first.run.parameters["count"], 3);
    assert_eq!(first.run.deployment_id, Some(deployment.id));
    assert_eq!(
        first.run.labels["switchyard.event.id"], "evt-1",
        "Prefect 3 keeps the labels a run is created with"
    );

    let again = FlowRunCreate {
        parameters: params(json!({"name": "bob"})),
        name: Some("second".into()),
        ..body.clone()
    };
    let (_, second) = client
        .run_deployment(&reference, &again, None)
        .await
        .unwrap();
    assert!(second.replayed, "same key → same run");
    assert_eq!(second.run.id, first.run.id);
    assert_eq!(second.run.parameters["name"], "alice");

    let fetched = client.flow_run(&first.run.id).await.unwrap();
    assert_eq!(fetched.state_type.as_deref(), Some("SCHEDULED"));
    let found = client
        .filter_flow_runs(
            &json!({"flow_runs": {"idempotency_key": {"any_": [body.idempotency_key]}}}),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn schema_rejection_and_unknown_names_are_permanent_errors() {
    let (client, flow, dep) = setup(true).await;
    let reference = DeploymentRef::name(&flow, &dep);
    let bad = FlowRunCreate {
        parameters: params(json!({"name": "x", "count": "three"})),
        ..Default::default()
    };
    let err = client
        .run_deployment(&reference, &bad, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PrefectError::Rejected { detail } if detail.contains("'three' is not of type 'integer'")),
        "{err}"
    );
    assert!(!err.is_retryable());

    // Exact names: a prefix of an existing flow name is not that flow.
    let short = DeploymentRef::name(&flow[..flow.len() - 2], &dep);
    let err = client
        .run_deployment(&short, &FlowRunCreate::default(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PrefectError::DeploymentNotFound { .. }),
        "{err}"
    );
    assert_eq!(err.to_string(), format!("deployment {short} not found"));
}
