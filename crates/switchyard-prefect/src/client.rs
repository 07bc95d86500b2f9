use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use crate::limit::{AdaptiveLimit, RateLimiter};
use crate::retry::{is_transient, retry_after};
use crate::types::{
    CreatedRun, Deployment, DeploymentCreate, DeploymentRef, Flow, FlowRun, FlowRunCreate,
};
use crate::{PrefectError, RetryPolicy};

/// Most flow runs one [`PrefectClient::flow_runs_by_id`] reads (Prefect's page size).
pub const MAX_RUNS_PER_READ: usize = 200;

/// How to reach Prefect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base, ending in `/api` for a self-hosted server.
    pub api_url: String,
    /// Prefect Cloud API key, sent as `Authorization: Bearer`.
    pub api_key: Option<String>,
    /// `user:password` for a self-hosted server started with `PREFECT_SERVER_API_AUTH_STRING`,
    /// sent as Basic auth; takes precedence over `api_key`, as in Prefect's own client.
    pub auth_string: Option<String>,
    /// Timeout of one HTTP attempt (default 30 s).
    pub timeout: Duration,
    /// Retry of transient failures.
    pub retry: RetryPolicy,
    /// Most write calls in flight at once (default 4). The client starts at one and adapts
    /// between one and this: more while answers are fast and successful, half as many on
    /// each overload signal. A SQLite-backed server answers 503 to concurrent writers, so it
    /// settles near one or two.
    pub max_in_flight: usize,
    /// At most this many write calls per second (default: unlimited).
    pub rate_limit: Option<f64>,
    /// Cancelled at shutdown: a call waiting to retry stops waiting and fails as unavailable
    /// (default: never).
    pub cancel: tokio_util::sync::CancellationToken,
    /// Told of every HTTP attempt (for metrics; default: none).
    pub observer: Option<Arc<dyn Observer>>,
}

/// Sees every HTTP attempt the client makes: the operation (`create_flow_run`,
/// `read_deployment`, ...), the status (`None` when no answer came) and how long it took.
pub trait Observer: Send + Sync {
    /// One attempt ended.
    fn request(&self, operation: &'static str, status: Option<u16>, took: Duration);
}

impl std::fmt::Debug for dyn Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl ClientConfig {
    /// Defaults for the server at `api_url`.
    pub fn new(api_url: impl Into<String>) -> Self {
        Self {
            api_url: api_url.into(),
            api_key: None,
            auth_string: None,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_in_flight: 4,
            rate_limit: None,
            cancel: tokio_util::sync::CancellationToken::new(),
            observer: None,
        }
    }

    /// `PREFECT_API_URL` (default `http://127.0.0.1:4200/api`), `PREFECT_API_KEY` and
    /// `PREFECT_API_AUTH_STRING` from the environment.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut cfg =
            Self::new(var("PREFECT_API_URL").unwrap_or_else(|| "http://127.0.0.1:4200/api".into()));
        cfg.api_key = var("PREFECT_API_KEY");
        cfg.auth_string = var("PREFECT_API_AUTH_STRING");
        cfg
    }
}

/// The Prefect REST client. Cheap to clone; clones share the connection pool, the deployment
/// cache and the in-flight limit.
#[derive(Clone)]
pub struct PrefectClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: Option<HeaderValue>,
    retry: RetryPolicy,
    cancel: tokio_util::sync::CancellationToken,
    writes: AdaptiveLimit,
    rate: Option<RateLimiter>,
    deployments: Mutex<HashMap<DeploymentRef, Arc<Deployment>>>,
    observer: Option<Arc<dyn Observer>>,
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl PrefectClient {
    /// Builds a client (no request is made).
    pub fn new(config: ClientConfig) -> Result<Self, PrefectError> {
        let mut base = Url::parse(config.api_url.trim()).map_err(|e| {
            PrefectError::Client(format!(
                "invalid Prefect API URL {:?}: {e}",
                without_credentials(&config.api_url)
            ))
        })?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let auth = match (&config.auth_string, &config.api_key) {
            (Some(basic), _) => Some(basic_header(basic)?),
            (None, Some(key)) => Some(HeaderValue::from_str(&format!("Bearer {key}")).map_err(
                |_| PrefectError::Client("PREFECT_API_KEY contains invalid characters".into()),
            )?),
            (None, None) => None,
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PrefectError::Client(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                retry: config.retry,
                cancel: config.cancel,
                writes: AdaptiveLimit::new(1, config.max_in_flight.max(1)),
                rate: config.rate_limit.and_then(RateLimiter::per_second),
                deployments: Mutex::new(HashMap::new()),
                observer: config.observer,
            }),
        })
    }

    /// The API base URL.
    pub fn api_url(&self) -> &Url {
        &self.inner.base
    }

    /// The Prefect UI's address: the API's without its `/api` (credentials left out).
    pub fn ui_url(&self) -> String {
        let mut base = self.inner.base.clone();
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let api = base.as_str().trim_end_matches('/');
        api.strip_suffix("/api").unwrap_or(api).to_string()
    }

    /// The Prefect UI's page of a flow run.
    pub fn run_page(&self, flow_run_id: &str) -> String {
        format!("{}/runs/flow-run/{flow_run_id}", self.ui_url())
    }

    /// The current adaptive limit on write calls in flight.
    pub fn in_flight_limit(&self) -> f64 {
        self.inner.writes.limit()
    }

    /// `GET /health`: Ok when the server answers `true`.
    pub async fn health(&self) -> Result<(), PrefectError> {
        let a = self
            .call("health", Method::GET, &["health"], None, false, "health")
            .await?;
        expect_ok(&a, "health")
    }

    /// The deployment, from the cache or `GET /deployments/name/{flow}/{deployment}` (or by
    /// id). Names match exactly.
    pub async fn resolve(
        &self,
        reference: &DeploymentRef,
    ) -> Result<Arc<Deployment>, PrefectError> {
        if let Some(d) = self.cached(reference) {
            return Ok(d);
        }
        let id_string;
        let path: Vec<&str> = match reference {
            DeploymentRef::Id(id) => {
                id_string = id.to_string();
                vec!["deployments", &id_string]
            }
            DeploymentRef::Name { flow, deployment } => {
                vec!["deployments", "name", flow, deployment]
            }
        };
        let what = format!("deployment {reference}");
        let a = self
            .call("read_deployment", Method::GET, &path, None, false, &what)
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Err(PrefectError::DeploymentNotFound {
                reference: reference.to_string(),
            });
        }
        expect_ok(&a, &what)?;
        let d: Arc<Deployment> = Arc::new(decode(&a, &what)?);
        self.cache().insert(reference.clone(), Arc::clone(&d));
        Ok(d)
    }

    /// Forgets a cached deployment (it was deleted or recreated).
    pub fn invalidate(&self, reference: &DeploymentRef) {
        self.cache().remove(reference);
    }

    /// `POST /deployments/{id}/create_flow_run`. A repeated idempotency key returns the
    /// existing run with `replayed: true`.
    pub async fn create_flow_run(
        &self,
        deployment_id: &Uuid,
        body: &FlowRunCreate,
    ) -> Result<CreatedRun, PrefectError> {
        let id = deployment_id.to_string();
        let body = serde_json::to_value(body).map_err(|e| PrefectError::Client(e.to_string()))?;
        let what = format!("create_flow_run on deployment {id}");
        let a = self
            .call(
                "create_flow_run",
                Method::POST,
                &["deployments", &id, "create_flow_run"],
                Some(&body),
                true,
                &what,
            )
            .await?;
        let replayed = match a.status {
            StatusCode::CREATED => false,
            StatusCode::OK => true,
            StatusCode::NOT_FOUND => {
                return Err(PrefectError::DeploymentNotFound { reference: id });
            }
            StatusCode::CONFLICT => {
                return Err(PrefectError::Rejected {
                    detail: detail(&a.body),
                });
            }
            _ => return Err(status_error(&a)),
        };
        Ok(CreatedRun {
            run: decode(&a, &what)?,
            replayed,
        })
    }

    /// Resolves `reference` and creates a run. If a cached name points at a deployment that
    /// has since been deleted (404), the name is resolved again once.
    ///
    /// With `key_suffix`, the idempotency key is `<deployment id>:<suffix>`, built for the
    /// deployment actually called (Prefect scopes keys per flow, so the id keeps two
    /// deployments of one flow apart); otherwise `body.idempotency_key` is used as given.
    pub async fn run_deployment(
        &self,
        reference: &DeploymentRef,
        body: &FlowRunCreate,
        key_suffix: Option<&str>,
    ) -> Result<(Arc<Deployment>, CreatedRun), PrefectError> {
        let create = |deployment: Arc<Deployment>| async move {
            let keyed;
            let body = match key_suffix {
                Some(suffix) => {
                    keyed = FlowRunCreate {
                        idempotency_key: Some(format!("{}:{suffix}", deployment.id)),
                        ..body.clone()
                    };
                    &keyed
                }
                None => body,
            };
            self.create_flow_run(&deployment.id, body)
                .await
                .map(|run| (deployment, run))
        };
        let was_cached = self.cached(reference).is_some();
        match create(self.resolve(reference).await?).await {
            Err(PrefectError::DeploymentNotFound { .. }) if was_cached => {
                self.invalidate(reference);
                create(self.resolve(reference).await?).await
            }
            Err(PrefectError::DeploymentNotFound { .. }) => Err(PrefectError::DeploymentNotFound {
                reference: reference.to_string(),
            }),
            other => other,
        }
    }

    /// `GET /flow_runs/{id}`.
    pub async fn flow_run(&self, id: &Uuid) -> Result<FlowRun, PrefectError> {
        let id = id.to_string();
        let what = format!("flow run {id}");
        let a = self
            .call(
                "read_flow_run",
                Method::GET,
                &["flow_runs", &id],
                None,
                false,
                &what,
            )
            .await?;
        expect_ok(&a, &what)?;
        decode(&a, &what)
    }

    /// `POST /flow_runs/filter` with a raw filter body (see Prefect's API docs).
    pub async fn filter_flow_runs(&self, filter: &Value) -> Result<Vec<FlowRun>, PrefectError> {
        let a = self
            .call(
                "filter_flow_runs",
                Method::POST,
                &["flow_runs", "filter"],
                Some(filter),
                false,
                "flow_runs/filter",
            )
            .await?;
        expect_ok(&a, "flow_runs/filter")?;
        decode(&a, "flow_runs/filter")
    }

    /// The runs among `ids` that exist (at most [`MAX_RUNS_PER_READ`] ids: one call).
    pub async fn flow_runs_by_id(&self, ids: &[Uuid]) -> Result<Vec<FlowRun>, PrefectError> {
        let ids = &ids[..ids.len().min(MAX_RUNS_PER_READ)];
        let filter = serde_json::json!({
            "flow_runs": {"id": {"any_": ids}},
            "limit": ids.len(),
        });
        self.filter_flow_runs(&filter).await
    }

    /// `POST /flow_runs/count` with a raw filter body.
    pub async fn count_flow_runs(&self, filter: &Value) -> Result<u64, PrefectError> {
        let a = self
            .call(
                "count_flow_runs",
                Method::POST,
                &["flow_runs", "count"],
                Some(filter),
                false,
                "flow_runs/count",
            )
            .await?;
        expect_ok(&a, "flow_runs/count")?;
        decode(&a, "flow_runs/count")
    }

    /// `POST /flows/` (an upsert by name).
    pub async fn create_flow(&self, name: &str) -> Result<Flow, PrefectError> {
        let body = serde_json::json!({ "name": name });
        let a = self
            .call(
                "create_flow",
                Method::POST,
                &["flows", ""],
                Some(&body),
                true,
                "create flow",
            )
            .await?;
        expect_ok(&a, "create flow")?;
        decode(&a, "create flow")
    }

    /// `POST /deployments/` (an upsert by flow and name).
    pub async fn create_deployment(
        &self,
        d: &DeploymentCreate,
    ) -> Result<Deployment, PrefectError> {
        let body = serde_json::to_value(d).map_err(|e| PrefectError::Client(e.to_string()))?;
        let a = self
            .call(
                "create_deployment",
                Method::POST,
                &["deployments", ""],
                Some(&body),
                true,
                "create deployment",
            )
            .await?;
        expect_ok(&a, "create deployment")?;
        decode(&a, "create deployment")
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<DeploymentRef, Arc<Deployment>>> {
        self.inner
            .deployments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self, reference: &DeploymentRef) -> Option<Arc<Deployment>> {
        self.cache().get(reference).cloned()
    }

    /// One logical call: sends, retries transient failures, returns the final answer.
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        path: &[&str],
        body: Option<&Value>,
        write: bool,
        what: &str,
    ) -> Result<Answer, PrefectError> {
        let mut url = self.inner.base.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|_| {
                PrefectError::Client(format!(
                    "Prefect API URL {} cannot take a path",
                    self.inner.base
                ))
            })?;
            segments.pop_if_empty();
            segments.extend(path);
        }
        let policy = self.inner.retry;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut req = self.inner.http.request(method.clone(), url.clone());
            if let Some(auth) = &self.inner.auth {
                req = req.header(AUTHORIZATION, auth.clone());
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let outcome = {
                if write && let Some(rate) = &self.inner.rate {
                    rate.ready().await;
                }
                let permit = if write {
                    Some(self.inner.writes.acquire().await)
                } else {
                    None
                };
                let started = Instant::now();
                let result = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        resp.bytes()
                            .await
                            .map(|body| (status, headers, body.to_vec()))
                    }
                    Err(e) => Err(e),
                };
                if let Some(o) = &self.inner.observer {
                    let status = result.as_ref().ok().map(|(s, _, _)| s.as_u16());
                    o.request(op, status, started.elapsed());
                }
                if let Some(permit) = permit {
                    match &result {
                        Ok((status, _, _)) if is_transient(*status) => permit.overloaded(),
                        Ok((status, _, _)) if status.is_success() => {
                            permit.succeeded(started.elapsed())
                        }
                        Err(e) if !e.is_builder() => permit.overloaded(),
                        _ => drop(permit),
                    }
                }
                result
            };
            let (reason, after) = match outcome {
                Ok((status, headers, body)) if is_transient(status) => (
                    format!("HTTP {}: {}", status.as_u16(), detail(&body)),
                    retry_after(&headers),
                ),
                Ok((status, _, body)) => return Ok(Answer { status, body }),
                Err(e) if e.is_builder() => {
                    return Err(PrefectError::Client(e.without_url().to_string()));
                }
                // Without the URL: it may carry credentials.
                Err(e) => (transport_reason(&e.without_url()), None),
            };
            if attempt > policy.max_retries {
                return Err(PrefectError::Unavailable {
                    attempts: attempt,
                    last: reason,
                });
            }
            let delay = policy.delay(attempt - 1, after);
            tracing::warn!(call = what, attempt, delay_ms = delay.as_millis() as u64, %reason, "transient Prefect failure, retrying");
            tokio::select! {
                _ = self.inner.cancel.cancelled() => {
                    return Err(PrefectError::Unavailable {
                        attempts: attempt,
                        last: format!("{reason} (interrupted by shutdown before the next attempt)"),
                    });
                }
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// A URL that cannot be parsed, fit to print: whatever stands between `://` and the last `@`
/// before the path is dropped.
fn without_credentials(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => raw.to_string(),
            }
        }
        None => raw.to_string(),
    }
}

fn basic_header(auth_string: &str) -> Result<HeaderValue, PrefectError> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(auth_string.as_bytes());
    HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
        PrefectError::Client("PREFECT_API_AUTH_STRING contains invalid characters".into())
    })
}

fn transport_reason(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The human part of an error body: Prefect's `detail` or `exception_message`, else the text.
fn detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        for key in ["detail", "exception_message"] {
            match v.get(key) {
                Some(Value::String(s)) => return s.clone(),
                Some(other) if !other.is_null() => return other.to_string(),
                _ => {}
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn status_error(a: &Answer) -> PrefectError {
    let detail = detail(&a.body);
    match a.status.as_u16() {
        401 | 403 => PrefectError::Unauthorized {
            status: a.status.as_u16(),
            detail,
        },
        422 => PrefectError::Unprocessable { detail },
        status => PrefectError::Http { status, detail },
    }
}

fn expect_ok(a: &Answer, _what: &str) -> Result<(), PrefectError> {
    if a.status.is_success() {
        Ok(())
    } else {
        Err(status_error(a))
    }
}

fn decode<T: DeserializeOwned>(a: &Answer, what: &str) -> Result<T, PrefectError> {
    serde_json::from_slice(&a.body).map_err(|source| PrefectError::Decode {
        what: what.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_address_is_the_api_s_without_api_and_without_credentials() {
        for (api, ui) in [
            ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200"),
            (
                "https://user:secret@prefect.example/api/",
                "https://prefect.example",
            ),
            ("http://host/prefect/api", "http://host/prefect"),
        ] {
            let c = PrefectClient::new(ClientConfig::new(api)).unwrap();
            assert_eq!(c.ui_url(), ui);
            assert_eq!(c.run_page("r1"), format!("{ui}/runs/flow-run/r1"));
        }
    }

    /// At shutdown a call waiting to retry stops waiting (here: a 1-hour backoff).
    #[tokio::test]
    async fn a_cancelled_client_does_not_wait_to_retry() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut config = ClientConfig::new(format!("http://127.0.0.1:{port}/api"));
        config.retry = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(3600),
            max_delay: Duration::from_secs(3600),
            jitter: 0.0,
        };
        config.cancel.cancel();
        let client = PrefectClient::new(config).unwrap();
        let err = client.health().await.unwrap_err();
        assert!(
            matches!(&err, PrefectError::Unavailable { attempts: 1, last } if last.contains("interrupted by shutdown")),
            "{err:?}"
        );
    }

    #[test]
    fn basic_auth_header_is_base64_of_the_auth_string() {
        assert_eq!(
            basic_header("admin:s3cret").unwrap(),
            HeaderValue::from_static("Basic YWRtaW46czNjcmV0")
        );
    }

    #[test]
    fn error_details() {
        assert_eq!(
            detail(br#"{"detail":"Deployment not found"}"#),
            "Deployment not found"
        );
        assert_eq!(
            detail(br#"{"exception_message":"Service Unavailable"}"#),
            "Service Unavailable"
        );
        assert_eq!(detail(b"plain"), "plain");
    }
}
