//! The webhook source's answers, over a real socket: 202, 400, 404, 413, and 503 with
//! `Retry-After` when the queue is full.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard::journal::{SqliteStore, Store};
use switchyard::outcome::Routed;
use switchyard::pipeline::{Dispatcher, Inbound};
use switchyard::routes::RouteOutcome;
use switchyard::sources::webhook;
use switchyard::sources::webhook::WebhookConfig;
use switchyard_core::engine::{BoxError, Collector, CollectorQueue, Payload};
use switchyard_testkit::TempDir;
use tokio_util::task::TaskTracker;

/// A queue that is never started, so nothing drains: capacity is exactly what it holds.
fn stalled_queue(capacity: usize) -> CollectorQueue<Inbound, Routed> {
    let c = Collector::new("routes", |_: Arc<Payload<Inbound>>, _| async {
        let skip = RouteOutcome::Skipped {
            reason: "test".into(),
        };
        Ok::<_, BoxError>(vec![("r".to_string(), skip)])
    });
    CollectorQueue::builder(vec![c])
        .capacity(capacity)
        .build()
        .unwrap()
}

/// Serves the hook over `queue`, with a journal in a temporary directory.
async fn serve(
    queue: &CollectorQueue<Inbound, Routed>,
    max_body: usize,
) -> (String, Arc<dyn Store>, TempDir) {
    let dir = TempDir::new("webhook-journal");
    let journal: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("j.db")).unwrap());
    let hooks = vec![WebhookConfig {
        name: "orders".into(),
        event: Some("order.created".into()),
        ..Default::default()
    }];
    let dispatch = Dispatcher::new(
        queue.get_publisher(),
        Arc::clone(&journal),
        TaskTracker::new(),
    );
    let app = webhook::app(hooks, dispatch, max_body);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), journal, dir)
}

async fn post(
    url: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

#[tokio::test]
async fn answers_each_kind_of_request() {
    let queue = stalled_queue(10);
    let (base, journal, _dir) = serve(&queue, 1024).await;
    let hook = format!("{base}/hooks/orders");

    let (status, body, _) = post(&hook, r#"{"id": 1}"#, &[("idempotency-key", "abc")]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"id": "orders:abc", "status": "accepted"}));

    let (status, body, _) = post(&hook, "{not json", &[]).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{body}"
    );

    let big = format!(r#"{{"blob": "{}"}}"#, "x".repeat(2000));
    let (status, body, _) = post(&hook, big, &[]).await;
    assert_eq!(status, 413, "{body}");

    let (status, body, _) = post(&format!("{base}/hooks/nope"), "{}", &[]).await;
    assert_eq!(status, 404);
    // The answer does not list the hooks that exist (#11); the log does.
    assert_eq!(body, json!({"error": "no such hook"}));

    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(
        queue.get_publisher().queued(),
        1,
        "only the valid event was queued"
    );
    let pending = journal.pending().await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "the valid event was journaled before the 202"
    );
    assert_eq!(pending[0].event.id, "orders:abc");
}

#[tokio::test]
async fn ce_headers_set_the_event_identity() {
    let queue = stalled_queue(10);
    let (base, _journal, _dir) = serve(&queue, 1024).await;
    let (status, body, _) = post(
        &format!("{base}/hooks/orders"),
        "{}",
        &[
            ("ce-id", "42"),
            ("ce-type", "com.example.order"),
            ("ce-time", "2026-01-02T03:04:05Z"),
        ],
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(body["id"], "orders:42");
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_keeps_serving() {
    let queue = stalled_queue(2);
    let (base, journal, _dir) = serve(&queue, 1024).await;
    let hook = format!("{base}/hooks/orders");
    let results = futures::future::join_all((0..6).map(|i| {
        let hook = hook.clone();
        async move { post(&hook, format!(r#"{{"n": {i}}}"#), &[]).await }
    }))
    .await;
    let accepted = results.iter().filter(|r| r.0 == 202).count();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(accepted, 2, "{results:?}");
    assert_eq!(refused.len(), 4);
    assert_eq!(
        journal.pending().await.unwrap().len(),
        2,
        "refused events were not journaled"
    );
    assert_eq!(
        journal.pending().await.unwrap().len(),
        2,
        "refused events were not journaled"
    );
    for (_, body, retry) in refused {
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"], "the event queue is full");
    }
    // Once there is room again, the same hook accepts.
    queue.start().await.unwrap();
    let publisher = queue.get_publisher();
    publisher.wait().await;
    let (status, _, _) = post(&hook, "{}", &[]).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_reused_idempotency_key_with_another_body_is_a_409_and_the_same_body_is_the_same_event() {
    let queue = stalled_queue(10);
    let (base, journal, _dir) = serve(&queue, 1024).await;
    let hook = format!("{base}/hooks/orders");
    let key = [("idempotency-key", "k-1")];
    let (status, first, _) = post(&hook, r#"{"amount": 10}"#, &key).await;
    assert_eq!(status, 202, "{first}");
    let (status, again, _) = post(&hook, r#"{ "amount" : 10 }"#, &key).await;
    assert_eq!(
        status, 202,
        "the same body (spelled differently) is a retry: {again}"
    );
    assert_eq!(again["id"], first["id"]);
    let (status, body, _) = post(&hook, r#"{"amount": 99}"#, &key).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "idempotency key \"k-1\" was already used with a different body"
    );
    let pending = journal.pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].event.payload,
        json!({"amount": 10}),
        "the first body is kept"
    );
}

#[tokio::test]
async fn integers_beyond_64_bits_are_refused_not_rounded() {
    let queue = stalled_queue(10);
    let (base, journal, _dir) = serve(&queue, 1 << 16).await;
    let hook = format!("{base}/hooks/orders");
    let (status, body, _) = post(&hook, r#"{"n": 12345678901234567890123}"#, &[]).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("12345678901234567890123") && error.contains("beyond 64 bits"),
        "{error}"
    );
    // Within 64 bits (either sign), in strings, or floats: kept as they are.
    for ok in [
        r#"{"n": 18446744073709551615}"#,
        r#"{"n": -9223372036854775808}"#,
        r#"{"s": "12345678901234567890123", "f": 1.5e300, "e": 12345678901234567890123e0}"#,
    ] {
        let (status, body, _) = post(&hook, ok.to_string(), &[]).await;
        assert_eq!(status, 202, "{ok}: {body}");
    }
    let kept: Vec<Value> = journal
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.event.payload)
        .collect();
    assert!(
        kept.contains(&json!({"n": 18446744073709551615u64})),
        "{kept:?}"
    );
    assert!(kept.contains(&json!({"n": i64::MIN})), "{kept:?}");
}

#[tokio::test]
async fn readyz_says_whether_events_can_be_accepted() {
    let queue = stalled_queue(10);
    let (base, _journal, _dir) = serve(&queue, 1024).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({"ready": true}));
}

/// The sweep resumes a pending event that no task holds (here: journaled behind the
/// dispatcher's back, as an event whose end could not be written is left) and finishes it.
#[tokio::test]
async fn the_sweep_finishes_pending_events_that_no_one_holds() {
    let queue = stalled_queue(10);
    queue.start().await.unwrap();
    let dir = TempDir::new("webhook-journal");
    let journal: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("j.db")).unwrap());
    let dispatch = Dispatcher::new(
        queue.get_publisher(),
        Arc::clone(&journal),
        TaskTracker::new(),
    );
    let orphan = switchyard_core::Event::builder("orders", "order.created", json!({"n": 1}))
        .id("orphan")
        .build();
    journal.accept(&orphan).await.unwrap();
    let resumed = switchyard_testkit::wait_until_async("the sweep to take the orphan", || async {
        let n = dispatch
            .sweep(std::time::Duration::ZERO, 100)
            .await
            .unwrap();
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(resumed, 1);
    switchyard_testkit::wait_until_async("the orphan to finish", || async {
        journal.pending().await.unwrap().is_empty().then_some(())
    })
    .await;
    let detail = journal.event("orphan").await.unwrap().unwrap();
    assert_eq!(detail.status, switchyard::journal::EventStatus::Done);
    // Nothing is left to sweep, and a held event is never taken twice.
    assert_eq!(
        dispatch
            .sweep(std::time::Duration::ZERO, 100)
            .await
            .unwrap(),
        0
    );
}
