//! Error handling against a scripted HTTP server: classification of every answer, retries of
//! transient ones, `Retry-After`, auth headers. (The real-server behaviour is in
//! `real_server.rs`.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::any;
use serde_json::json;
use switchyard_prefect::*;
use uuid::Uuid;

/// Status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);
/// Status, body, the check the error must pass.
type Case = (u16, &'static str, Box<dyn Fn(&PrefectError) -> bool>);

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<(String, Option<String>)>>,
}

async fn serve(script: Arc<Script>) -> String {
    let app = Router::new().fallback(any({
        let script = Arc::clone(&script);
        move |uri: axum::http::Uri, headers: HeaderMap| {
            let script = Arc::clone(&script);
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                script
                    .seen
                    .lock()
                    .unwrap()
                    .push((uri.path().to_string(), auth));
                let (status, hdrs, body) = script.answers.lock().unwrap().pop_front().unwrap_or((
                    500,
                    vec![],
                    "script exhausted".into(),
                ));
                let mut resp = Response::builder().status(StatusCode::from_u16(status).unwrap());
                for (k, v) in hdrs {
                    resp = resp.header(k, v);
                }
                resp.body(Body::from(body)).unwrap()
            }
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/api")
}

fn run_json(id: Uuid) -> String {
    json!({"id": Uuid::new_v4(), "name": "quiet-fox", "flow_id": Uuid::new_v4(), "deployment_id": id,
           "parameters": {"n": 1}, "idempotency_key": "k", "tags": [], "state_type": "SCHEDULED"})
    .to_string()
}

fn client(url: String, retries: u32) -> PrefectClient {
    let mut cfg = ClientConfig::new(url);
    cfg.retry = RetryPolicy {
        max_retries: retries,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_secs(2),
        jitter: 0.2,
    };
    PrefectClient::new(cfg).unwrap()
}

fn script(answers: Vec<Answer>) -> Arc<Script> {
    Arc::new(Script {
        answers: Mutex::new(answers.into()),
        seen: Mutex::default(),
    })
}

#[tokio::test]
async fn transient_answers_are_retried_until_success() {
    let dep = Uuid::new_v4();
    let s = script(vec![
        (
            503,
            vec![],
            r#"{"exception_message":"Service Unavailable"}"#.into(),
        ),
        (502, vec![], "bad gateway".into()),
        (429, vec![], "slow down".into()),
        (201, vec![], run_json(dep)),
    ]);
    let c = client(serve(Arc::clone(&s)).await, 5);
    let created = c
        .create_flow_run(&dep, &FlowRunCreate::default())
        .await
        .unwrap();
    assert!(!created.replayed);
    assert_eq!(s.seen.lock().unwrap().len(), 4);
    assert_eq!(
        s.seen.lock().unwrap()[0].0,
        format!("/api/deployments/{dep}/create_flow_run")
    );
}

#[tokio::test]
async fn exhausted_retries_are_a_retryable_error_naming_the_last_failure() {
    let s = script(
        (0..4)
            .map(|_| {
                (
                    503,
                    vec![],
                    r#"{"exception_message":"Service Unavailable"}"#.into(),
                )
            })
            .collect(),
    );
    let c = client(serve(Arc::clone(&s)).await, 2);
    let err = c
        .create_flow_run(&Uuid::new_v4(), &FlowRunCreate::default())
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        "Prefect unavailable after 3 attempts: HTTP 503: Service Unavailable"
    );
    assert_eq!(s.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let dep = Uuid::new_v4();
    let s = script(vec![
        (503, vec![("retry-after", "1".into())], String::new()),
        (201, vec![], run_json(dep)),
    ]);
    let c = client(serve(Arc::clone(&s)).await, 3);
    let start = Instant::now();
    c.create_flow_run(&dep, &FlowRunCreate::default())
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn permanent_answers_are_classified_and_not_retried() {
    let dep = Uuid::new_v4();
    let cases: Vec<Case> = vec![
        (
            404,
            r#"{"detail":"Deployment not found"}"#,
            Box::new(|e| matches!(e, PrefectError::DeploymentNotFound { .. })),
        ),
        (
            409,
            r#"{"detail":"Error creating flow run: Validation failed for field 'count'"}"#,
            Box::new(
                |e| matches!(e, PrefectError::Rejected { detail } if detail.contains("field 'count'")),
            ),
        ),
        (
            422,
            r#"{"exception_message":"Invalid request received."}"#,
            Box::new(|e| matches!(e, PrefectError::Unprocessable { .. })),
        ),
        (
            401,
            r#"{"exception_message":"Unauthorized"}"#,
            Box::new(|e| matches!(e, PrefectError::Unauthorized { status: 401, .. })),
        ),
        (
            500,
            "oops",
            Box::new(|e| matches!(e, PrefectError::Http { status: 500, .. })),
        ),
    ];
    for (status, body, check) in cases {
        let s = script(vec![(status, vec![], body.into())]);
        let c = client(serve(Arc::clone(&s)).await, 5);
        let err = c
            .create_flow_run(&dep, &FlowRunCreate::default())
            .await
            .unwrap_err();
        assert!(check(&err), "{status}: {err:?}");
        assert!(!err.is_retryable(), "{status}");
        assert_eq!(
            s.seen.lock().unwrap().len(),
            1,
            "{status} must not be retried"
        );
    }
}

#[tokio::test]
async fn replay_is_reported_and_a_server_that_is_down_is_unavailable() {
    let dep = Uuid::new_v4();
    let s = script(vec![(200, vec![], run_json(dep))]);
    let c = client(serve(Arc::clone(&s)).await, 0);
    assert!(
        c.create_flow_run(&dep, &FlowRunCreate::default())
            .await
            .unwrap()
            .replayed
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(format!("http://127.0.0.1:{port}/api"), 2);
    let err = c
        .create_flow_run(&dep, &FlowRunCreate::default())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .starts_with("Prefect unavailable after 3 attempts"),
        "{err}"
    );
}

#[tokio::test]
async fn auth_headers() {
    for (auth_string, api_key, want) in [
        (
            Some("admin:s3cret"),
            Some("key"),
            Some("Basic YWRtaW46czNjcmV0"),
        ),
        (None, Some("pnu_123"), Some("Bearer pnu_123")),
        (None, None, None),
    ] {
        let s = script(vec![(200, vec![], "true".into())]);
        let mut cfg = ClientConfig::new(serve(Arc::clone(&s)).await);
        cfg.auth_string = auth_string.map(String::from);
        cfg.api_key = api_key.map(String::from);
        PrefectClient::new(cfg).unwrap().health().await.unwrap();
        assert_eq!(s.seen.lock().unwrap()[0].1.as_deref(), want);
    }
}

#[tokio::test]
async fn names_are_path_encoded_and_cached() {
    let dep = Uuid::new_v4();
    let d = json!({"id": dep, "name": "integration-test", "flow_id": Uuid::new_v4()}).to_string();
    let s = script(vec![(200, vec![], d)]);
    let c = client(serve(Arc::clone(&s)).await, 0);
    let r = DeploymentRef::name("Test Flow", "integration-test");
    assert_eq!(c.resolve(&r).await.unwrap().id, dep);
    assert_eq!(c.resolve(&r).await.unwrap().id, dep);
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "second resolve comes from the cache");
    assert_eq!(
        seen[0].0,
        "/api/deployments/name/Test%20Flow/integration-test"
    );
}

#[tokio::test]
async fn calls_in_flight_grow_with_success_and_shrink_on_overload() {
    let dep = Uuid::new_v4();
    let mut answers: Vec<Answer> = (0..12).map(|_| (201, vec![], run_json(dep))).collect();
    answers.push((503, vec![], String::new()));
    answers.push((201, vec![], run_json(dep)));
    let s = script(answers);
    let mut cfg = ClientConfig::new(serve(Arc::clone(&s)).await);
    cfg.max_in_flight = 8;
    cfg.retry = RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        jitter: 0.0,
    };
    let c = PrefectClient::new(cfg).unwrap();
    assert_eq!(c.in_flight_limit(), 1.0, "starts at one call in flight");
    for _ in 0..12 {
        c.create_flow_run(&dep, &FlowRunCreate::default())
            .await
            .unwrap();
    }
    let grown = c.in_flight_limit();
    assert!(grown > 2.0, "grew on fast successes: {grown}");
    c.create_flow_run(&dep, &FlowRunCreate::default())
        .await
        .unwrap();
    let shrunk = c.in_flight_limit();
    assert!(
        shrunk < grown && shrunk >= grown / 2.0 - 0.01,
        "halved on the 503: {grown} -> {shrunk}"
    );
}
