//! The `webhook` source's settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A webhook source.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Source name: the hook is `POST /hooks/<name>`.
    pub name: String,
    /// What the hook is for (shown by `check`).
    pub description: Option<String>,
    /// Event name (default `<name>.received`). It wins over any name the sender supplies.
    pub event: Option<String>,
    /// Where the event name comes from when `event` is not set: `config` (`<name>.received`;
    /// the sender's name lands in a label) or `sender` (`ce-type`, `X-GitHub-Event`, a
    /// Stripe event's `type`). Default: `sender` for `verify: {github}` and `{stripe}`, whose
    /// senders are authenticated, `config` otherwise.
    pub event_from: Option<EventFrom>,
    /// What the body is: `body` (default: any JSON, the payload) or `prefect_event` (a Prefect
    /// event as `POST /api/events` takes one: `event` is the name, `resource` the labels).
    #[serde(default)]
    pub format: WebhookFormat,
    /// How a request proves where it comes from (default: it does not).
    pub verify: Option<Verify>,
    /// Requests accepted per second (default: no limit); over it, 429 with `Retry-After`.
    pub rate_limit: Option<RateLimit>,
    /// A Prefect-Cloud-style webhook template: Jinja over `body`, `headers`, `method`,
    /// `query` and `raw_body` that renders a Prefect event as JSON (`event`, `resource`,
    /// `payload`, `related`), as Prefect Cloud's webhooks do. With it the hook also takes
    /// `GET`, `PUT`, `PATCH` and `DELETE`.
    pub template: Option<String>,
    /// What the answer to a request waits for: `accepted` (the default: 202 once the event is
    /// in the journal), `created` (200 once every route has decided, with the flow runs
    /// created) or `finished` (200 once those runs have ended, with their final states). An
    /// answer that cannot wait that long (`respond_timeout`) is a 202 with where things
    /// stand: the event is journaled and goes on. A CloudEvents batch is always answered
    /// `accepted`.
    #[serde(default)]
    pub respond: Respond,
    /// Longest a `created` or `finished` answer waits (default `30s`; `1s` to `1h`).
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<crate::durations::HumanDuration>")]
    pub respond_timeout: Option<std::time::Duration>,
}

/// What a webhook's answer waits for (see [`WebhookConfig::respond`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Respond {
    /// The event is in the journal (202).
    #[default]
    Accepted,
    /// Every route has decided: the runs created, with their ids and names (200).
    Created,
    /// The runs created have ended: their final states (200).
    Finished,
}

/// How long a `created` or `finished` answer waits by default.
pub const DEFAULT_RESPOND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A webhook body's form.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// Any JSON: the payload.
    #[default]
    Body,
    /// A Prefect event: `{"id"?, "occurred"?, "event", "resource", "payload"?, "related"?}`.
    PrefectEvent,
}

/// Where an event's name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventFrom {
    /// The hook's settings.
    Config,
    /// The sender's header or body.
    Sender,
}

/// How a hook verifies requests. Every secret may be several (`[{env: A}, {env: B}]`): a
/// request signed with any of them passes, so a secret can be rotated without downtime.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Verify {
    /// The Standard Webhooks spec: `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, with a
    /// `whsec_` secret; the id is the event id.
    StandardWebhooks {
        /// The signing secret(s), `whsec_<base64>`.
        secret: Secrets,
        /// How far the timestamp may be from now (default 5m).
        #[serde(default = "default_tolerance", with = "humantime_serde")]
        #[schemars(with = "crate::durations::HumanDuration")]
        tolerance: Duration,
    },
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`;
    /// `X-GitHub-Delivery` is the event id, `X-GitHub-Event` the name.
    Github {
        /// The webhook secret(s).
        secret: Secrets,
    },
    /// Stripe: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "{t}.{body}">`; the
    /// Stripe event's `id` is the event id, its `type` the name.
    Stripe {
        /// The endpoint's signing secret(s) (`whsec_...`).
        secret: Secrets,
        /// How far `t` may be from now (default 5m).
        #[serde(default = "default_tolerance", with = "humantime_serde")]
        #[schemars(with = "crate::durations::HumanDuration")]
        tolerance: Duration,
    },
    /// Any other HMAC over the raw body, in a header of the sender's choosing.
    Hmac {
        /// The shared secret(s).
        secret: Secrets,
        /// The header carrying the signature.
        header: String,
        /// The hash (default sha256).
        #[serde(default)]
        algorithm: HmacAlgorithm,
        /// How the signature is written (default hex).
        #[serde(default)]
        encoding: SignatureEncoding,
        /// Text before the signature in the header, e.g. `sha256=`.
        #[serde(default)]
        prefix: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token(s).
        token: Secrets,
    },
    /// `Authorization: Basic` with this user and password.
    Basic {
        /// The user name.
        username: String,
        /// The password(s).
        password: Secrets,
    },
}

impl Verify {
    /// The scheme's name, for logs.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::StandardWebhooks { .. } => "standard_webhooks",
            Self::Github { .. } => "github",
            Self::Stripe { .. } => "stripe",
            Self::Hmac { .. } => "hmac",
            Self::Bearer { .. } => "bearer",
            Self::Basic { .. } => "basic",
        }
    }

    /// The key of its secrets (for errors) and the secrets.
    pub fn secrets(&self) -> (&'static str, &Secrets) {
        match self {
            Self::StandardWebhooks { secret, .. }
            | Self::Github { secret }
            | Self::Stripe { secret, .. }
            | Self::Hmac { secret, .. } => ("secret", secret),
            Self::Bearer { token } => ("token", token),
            Self::Basic { password, .. } => ("password", password),
        }
    }
}

fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}

/// An HMAC's hash.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    /// SHA-256.
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
    /// SHA-1 (only for senders that offer nothing better).
    Sha1,
}

/// How a signature is written.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Lower- or upper-case hex.
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// One secret or several (rotation).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Secrets {
    /// One.
    One(SecretRef),
    /// Several: any of them verifies.
    Many(Vec<SecretRef>),
}

/// Where a secret is: never in the config file itself.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file (its content, trailing newline removed), e.g. a mounted Kubernetes secret.
    File(PathBuf),
}

impl Secrets {
    /// Reads every secret; an error names which one and why (never its value).
    pub fn resolve(&self) -> Result<Vec<String>, String> {
        let refs: &[SecretRef] = match self {
            Self::One(r) => std::slice::from_ref(r),
            Self::Many(v) => v,
        };
        if refs.is_empty() {
            return Err("expected at least one secret".into());
        }
        refs.iter()
            .map(|r| {
                let value = match r {
                    SecretRef::Env(var) => std::env::var(var)
                        .map_err(|_| format!("environment variable {var} is not set"))?,
                    SecretRef::File(path) => std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                };
                if value.is_empty() {
                    return Err(match r {
                        SecretRef::Env(var) => format!("environment variable {var} is empty"),
                        SecretRef::File(path) => format!("{} is empty", path.display()),
                    });
                }
                crate::secrets::register(&value);
                Ok(value)
            })
            .collect()
    }
}

/// The HTTP server for webhook sources (started only when there is one).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: std::net::SocketAddr,
    /// Largest accepted request body in bytes (default 1 MiB); larger gets 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: std::num::NonZeroUsize,
    /// How long a client may take to send a request's headers (default 10s); a connection
    /// that has sent none within it is closed.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body (default 30s); 408 after it.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub body_timeout: Duration,
    /// How long a keep-alive connection may sit between requests (default 60s).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::durations::HumanDuration")]
    pub idle_timeout: Duration,
    /// Connections served at once (default 4096, and never more than the open-file limit
    /// allows). When full, the connection that has been waiting longest without a request in
    /// progress is closed to make room, so slow or idle clients cannot lock others out.
    #[serde(default = "default_max_connections")]
    pub max_connections: std::num::NonZeroUsize,
    /// Serve HTTPS with this certificate and key (PEM files), for a direct exposure without a
    /// proxy in front.
    pub tls: Option<TlsConfig>,
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            tls: None,
        }
    }
}

fn default_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(1 << 20).unwrap_or(std::num::NonZeroUsize::MIN)
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_connections() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN)
}

/// A hook's rate limit: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once above that (default: one second's worth, at least 1).
    pub burst: Option<u32>,
}
