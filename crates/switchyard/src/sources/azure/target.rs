//! Where an Azure Storage Queue source points and how it authenticates, resolved from its
//! settings without touching the network (so `check` reports mistakes).

use base64::Engine as _;
use url::Url;

use super::AzureQueueConfig;

/// How requests to the queue are authorised.
#[derive(Clone, PartialEq, Eq)]
pub enum AzureAuth {
    /// A shared access signature appended to every request (no leading `?`).
    Sas(String),
    /// The account key: Switchyard signs account SAS tokens with it.
    AccountKey {
        /// Storage account name.
        account: String,
        /// The decoded key.
        key: Vec<u8>,
    },
    /// An Entra ID access token read from this environment variable.
    TokenEnv(String),
    /// Nothing (a public or pre-authorised endpoint).
    Anonymous,
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        match self {
            Self::Sas(_) => f.write_str("Sas(..)"),
            Self::AccountKey { account, .. } => write!(f, "AccountKey({account})"),
            Self::TokenEnv(var) => write!(f, "TokenEnv({var})"),
            Self::Anonymous => f.write_str("Anonymous"),
        }
    }
}

impl AzureAuth {
    /// How it authenticates, in words fit for `check` (no secret).
    pub fn describe(&self) -> String {
        match self {
            Self::Sas(_) => "shared access signature".into(),
            Self::AccountKey { account, .. } => format!("account key of {account}"),
            Self::TokenEnv(var) => format!("Entra ID token from ${var}"),
            Self::Anonymous => "no credentials".into(),
        }
    }
}

/// The resolved queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureTarget {
    /// The queue URL without a query string.
    pub queue_url: Url,
    /// The queue name (last path segment).
    pub queue: String,
    /// How to authorise.
    pub auth: AzureAuth,
}

/// Resolves a source's settings: `Err((key, message))` names the offending key.
pub fn target(cfg: &AzureQueueConfig) -> Result<AzureTarget, (&'static str, String)> {
    let conn = match &cfg.connection_string {
        Some(s) => Some(ConnectionString::parse(s).map_err(|m| ("connection_string", m))?),
        None => None,
    };
    let account = cfg
        .account
        .clone()
        .or_else(|| conn.as_ref().and_then(|c| c.get("AccountName")));
    let (mut queue_url, from_url_sas) = match &cfg.queue_url {
        Some(u) => {
            let mut url = Url::parse(u)
                .map_err(|e| ("queue_url", format!("expected a queue URL, got {u:?}: {e}")))?;
            let sas = url.query().filter(|q| !q.is_empty()).map(str::to_string);
            url.set_query(None);
            (url, sas)
        }
        None => {
            let queue = cfg.queue.as_deref().ok_or((
                "queue",
                "expected the queue name (or queue_url)".to_string(),
            ))?;
            let endpoint = match (
                &cfg.endpoint,
                conn.as_ref().and_then(|c| c.queue_endpoint()),
            ) {
                (Some(e), _) => e.clone(),
                (None, Some(e)) => e,
                (None, None) => match &account {
                    Some(a) => format!("https://{a}.queue.core.windows.net"),
                    None => {
                        return Err((
                            "account",
                            "expected the storage account (or queue_url, endpoint or connection_string)"
                                .into(),
                        ));
                    }
                },
            };
            let joined = format!("{}/{queue}", endpoint.trim_end_matches('/'));
            let url = Url::parse(&joined).map_err(|e| {
                (
                    "endpoint",
                    format!("expected an http(s) endpoint, got {endpoint:?}: {e}"),
                )
            })?;
            (url, None)
        }
    };
    if !matches!(queue_url.scheme(), "http" | "https") || queue_url.cannot_be_a_base() {
        return Err((
            "queue_url",
            format!("expected an http:// or https:// URL, got {queue_url}"),
        ));
    }
    queue_url.set_fragment(None);
    let queue = queue_url
        .path_segments()
        .and_then(|mut s| s.rfind(|p| !p.is_empty()).map(str::to_string))
        .ok_or(("queue_url", format!("expected a queue name in {queue_url}")))?;
    let sas = cfg
        .sas
        .clone()
        .or(from_url_sas)
        .or_else(|| conn.as_ref().and_then(|c| c.get("SharedAccessSignature")));
    let key = cfg
        .account_key
        .clone()
        .or_else(|| conn.as_ref().and_then(|c| c.get("AccountKey")));
    let auth = if let Some(sas) = sas {
        AzureAuth::Sas(sas.trim_start_matches('?').to_string())
    } else if let Some(key) = key {
        let account = account.ok_or((
            "account",
            "an account key needs the account name (account or AccountName)".to_string(),
        ))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|e| ("account_key", format!("expected a base64 account key: {e}")))?;
        AzureAuth::AccountKey { account, key }
    } else if let Some(var) = &cfg.token_env {
        if queue_url.scheme() != "https" {
            return Err((
                "token_env",
                "an Entra ID token is only sent over https; use a SAS or an account key for http endpoints"
                    .into(),
            ));
        }
        AzureAuth::TokenEnv(var.clone())
    } else {
        AzureAuth::Anonymous
    };
    Ok(AzureTarget {
        queue_url,
        queue,
        auth,
    })
}

/// `Key=Value;Key=Value` as Azure writes it.
struct ConnectionString(Vec<(String, String)>);

impl ConnectionString {
    fn parse(s: &str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            // The text itself may hold a secret: it is not echoed.
            let (k, v) = part
                .split_once('=')
                .ok_or("expected Key=Value pairs separated by ';', got a part without '='")?;
            pairs.push((k.trim().to_string(), v.trim().to_string()));
        }
        if pairs.is_empty() {
            return Err("expected Key=Value pairs, got an empty string".into());
        }
        Ok(Self(pairs))
    }

    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    }

    fn queue_endpoint(&self) -> Option<String> {
        if let Some(e) = self.get("QueueEndpoint") {
            return Some(e);
        }
        let account = self.get("AccountName")?;
        let protocol = self
            .get("DefaultEndpointsProtocol")
            .unwrap_or("https".into());
        let suffix = self
            .get("EndpointSuffix")
            .unwrap_or("core.windows.net".into());
        Some(format!("{protocol}://{account}.queue.{suffix}"))
    }
}
