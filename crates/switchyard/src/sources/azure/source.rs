//! Azure Storage Queue: receive with a visibility timeout, delete only after the outcome.
//!
//! Each received message is dispatched (journal first); while its event is in flight the
//! message's visibility timeout is renewed at half its length, and once every route has settled
//! it is deleted with the latest pop receipt. A message that is not settled (shutdown, journal
//! failure) is left alone and reappears after the timeout. A message dequeued more than
//! `max_dequeue_count` times is dead-lettered (pseudo-route `poison`) and deleted. An empty
//! queue is polled with a growing wait (100 ms doubling to `max_poll_interval`), never busily.
//! The event id is `<source>:<queue>:<message id>`, so a redelivered message is the same event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::StatusCode;
use azure_core::http::headers::HeaderName;
use azure_storage_queue::models::{QueueClientReceiveMessagesOptions, ReceivedMessage};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::target::{AzureAuth, AzureTarget, target};
use super::{AzureQueueConfig, MessageEncoding};
use crate::codec::PayloadFormat;
use crate::sources::runtime::{Ack, Acker, Body, Connector, Delivery, Draft, Session};

/// The service version account SAS tokens are signed for.
const SAS_VERSION: &str = "2026-04-06";
/// How long a self-signed SAS is valid; a new one is signed after half of it.
const SAS_LIFETIME: Duration = Duration::from_secs(6 * 3600);
const POP_RECEIPT: HeaderName = HeaderName::from_static("x-ms-popreceipt");
/// The shortest wait between polls of an empty queue.
const MIN_WAIT: Duration = Duration::from_millis(100);

/// A client for the queue, and when its self-signed SAS (if any) should be renewed.
struct Connection {
    client: Arc<QueueClient>,
    renew_at: Option<tokio::time::Instant>,
}

fn connect(target: &AzureTarget) -> Result<Connection, String> {
    let mut url = target.queue_url.clone();
    let mut renew_at = None;
    let mut credential: Option<Arc<dyn TokenCredential>> = None;
    match &target.auth {
        AzureAuth::Sas(sas) => url.set_query(Some(sas)),
        AzureAuth::AccountKey { account, key } => {
            let expiry = chrono::Utc::now() + SAS_LIFETIME;
            url.set_query(Some(&account_sas(account, key, expiry, SAS_VERSION)));
            renew_at = Some(tokio::time::Instant::now() + SAS_LIFETIME / 2);
        }
        AzureAuth::TokenEnv(var) => credential = Some(Arc::new(EnvToken(var.clone()))),
        AzureAuth::Anonymous => {}
    }
    let client = QueueClient::new(url, credential, Some(QueueClientOptions::default()))
        .map_err(|e| format!("invalid queue settings: {e}"))?;
    Ok(Connection {
        client: Arc::new(client),
        renew_at,
    })
}

impl Connector for AzureQueueConfig {
    type Session = AzureSession;

    fn format(&self) -> PayloadFormat {
        self.format
    }

    async fn connect(&self) -> Result<AzureSession, String> {
        let target = target(self).map_err(|(key, m)| format!("{key}: {m}"))?;
        let conn = connect(&target)?;
        if self.create_queue {
            conn.client
                .create(None)
                .await
                .map_err(|e| format!("cannot create queue {}: {}", target.queue, brief(&e)))?;
        } else if !conn
            .client
            .exists()
            .await
            .map_err(|e| format!("cannot reach queue {}: {}", target.queue, brief(&e)))?
        {
            return Err(format!(
                "queue {} does not exist at {} (set create_queue: true to create it)",
                target.queue, target.queue_url
            ));
        }
        tracing::info!(source = %self.name, queue = %target.queue, url = %target.queue_url, auth = %target.auth.describe(), "reading Azure Storage queue");
        Ok(AzureSession {
            cfg: self.clone(),
            target,
            conn,
            wait: MIN_WAIT,
            messages: VecDeque::new(),
        })
    }
}

/// One client of the queue and the messages of the last receive not handed over yet. An
/// empty queue is polled with a growing wait (100 ms doubling to `max_poll_interval`).
pub struct AzureSession {
    cfg: AzureQueueConfig,
    target: AzureTarget,
    conn: Connection,
    wait: Duration,
    messages: VecDeque<ReceivedMessage>,
}

fn visibility_secs(cfg: &AzureQueueConfig) -> i32 {
    i32::try_from(cfg.visibility_timeout.as_secs().max(1)).unwrap_or(i32::MAX)
}

impl AzureSession {
    async fn receive(&mut self) -> Result<(), String> {
        if self
            .conn
            .renew_at
            .is_some_and(|at| tokio::time::Instant::now() >= at)
        {
            self.conn = connect(&self.target)?;
        }
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(i32::try_from(self.cfg.batch.get()).unwrap_or(32)),
            visibility_timeout: Some(visibility_secs(&self.cfg)),
            ..Default::default()
        };
        let messages = self
            .conn
            .client
            .receive_messages(Some(options))
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| format!("receive failed: {}", brief(&e)))?
            .items
            .unwrap_or_default();
        if messages.is_empty() {
            tokio::time::sleep(self.wait).await;
            self.wait = (self.wait * 2).min(self.cfg.max_poll_interval.max(MIN_WAIT));
        } else {
            self.wait = MIN_WAIT;
        }
        self.messages.extend(messages);
        Ok(())
    }
}

impl Session for AzureSession {
    type Acker = AzureAck;

    async fn next(&mut self) -> Result<Delivery<AzureAck>, String> {
        loop {
            let Some(message) = self.messages.pop_front() else {
                self.receive().await?;
                continue;
            };
            let (Some(message_id), Some(pop)) =
                (message.message_id.clone(), message.pop_receipt.clone())
            else {
                tracing::warn!(source = %self.cfg.name, "received a message without id or pop receipt; skipped");
                continue;
            };
            let cfg = &self.cfg;
            let dequeued = message.dequeue_count.unwrap_or(1);
            let poison = (dequeued > i64::from(cfg.max_dequeue_count)).then(|| {
                format!(
                    "received {dequeued} times (max_dequeue_count {}) without being settled",
                    cfg.max_dequeue_count
                )
            });
            let (body, draft) = delivery(cfg, &self.target, &message_id, dequeued, &message);
            return Ok(Delivery {
                body,
                draft,
                poison,
                ack: AzureAck {
                    client: Arc::clone(&self.conn.client),
                    message_id,
                    pop,
                    visibility: visibility_secs(cfg),
                    renew_every: cfg.visibility_timeout / 2,
                },
            });
        }
    }
}

/// While the event is in flight the message's visibility timeout is renewed at half its
/// length; once it is settled (or dead-lettered) the message is deleted with the latest pop
/// receipt. An unfinished one is left alone and reappears after the timeout (the journal
/// resumes it meanwhile).
pub struct AzureAck {
    client: Arc<QueueClient>,
    message_id: String,
    pop: String,
    visibility: i32,
    renew_every: Duration,
}

impl Acker for AzureAck {
    async fn settle(self, ack: Ack) -> Result<(), String> {
        match ack {
            Ack::Done | Ack::Dead => delete(&self.client, &self.message_id, &self.pop).await,
            Ack::Retry => Ok(()),
        }
    }

    fn keep_alive_every(&self) -> Option<Duration> {
        Some(self.renew_every)
    }

    async fn keep_alive(&mut self) {
        match extend(&self.client, &self.message_id, &self.pop, self.visibility).await {
            Ok(next) => self.pop = next,
            Err(e) => {
                tracing::warn!(message_id = %self.message_id, error = %e, "cannot extend the message's visibility; it may be received again (the journal keeps that from starting a second run)")
            }
        }
    }
}

async fn delete(client: &QueueClient, id: &str, pop: &str) -> Result<(), String> {
    match client.delete_message(id, pop, None).await {
        Ok(_) => Ok(()),
        // Already gone (deleted by an earlier attempt, or expired): nothing to acknowledge.
        Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
        Err(e) => Err(format!("delete failed: {}", brief(&e))),
    }
}

/// Renews a message's visibility timeout; returns the new pop receipt.
async fn extend(client: &QueueClient, id: &str, pop: &str, secs: i32) -> Result<String, String> {
    let rsp = client
        .update_message(id, pop, secs, None)
        .await
        .map_err(|e| format!("update failed: {}", brief(&e)))?;
    rsp.headers()
        .get_optional_string(&POP_RECEIPT)
        .ok_or_else(|| "the update answer has no pop receipt".to_string())
}

/// The message's body (its text, base64-decoded when `message_encoding` says so) and draft.
fn delivery(
    cfg: &AzureQueueConfig,
    target: &AzureTarget,
    message_id: &str,
    dequeued: i64,
    message: &ReceivedMessage,
) -> (Body, Draft) {
    let name = cfg
        .event
        .clone()
        .unwrap_or_else(|| format!("{}.message", cfg.name));
    let mut draft = Draft::named(name)
        .id(format!("{}:{}:{message_id}", cfg.name, target.queue))
        .label("azure.queue", &target.queue)
        .label("azure.message_id", message_id)
        .label("azure.dequeue_count", dequeued.to_string());
    draft.occurred = message
        .insertion_time
        .and_then(|t| chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()));
    let text = message.message_text.as_deref().unwrap_or_default();
    let body = match cfg.message_encoding {
        MessageEncoding::Plain => Body::Encoded(text.as_bytes().to_vec()),
        MessageEncoding::Base64 => {
            match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                Ok(b) => Body::Encoded(b),
                Err(e) => Body::Undecodable {
                    raw: text.as_bytes().to_vec(),
                    reason: format!("message_encoding base64: not valid base64: {e}"),
                },
            }
        }
    };
    (body, draft)
}

/// An account SAS for the queue service (service `q`, resource types service/container/object,
/// permissions read/add/update/process/list/create/delete/write) valid until `expiry`.
pub fn account_sas(
    account: &str,
    key: &[u8],
    expiry: chrono::DateTime<chrono::Utc>,
    version: &str,
) -> String {
    let (permissions, services, resource_types) = ("rwdlacup", "q", "sco");
    let se = expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    // Account SAS string-to-sign (service version 2020-12-06 and later): account, permissions,
    // services, resource types, start, expiry, IP, protocol, version, encryption scope, "".
    let to_sign = format!(
        "{account}\n{permissions}\n{services}\n{resource_types}\n\n{se}\n\n\n{version}\n\n"
    );
    let sig = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(to_sign.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        // HMAC accepts keys of any length; this branch is unreachable in practice.
        Err(_) => String::new(),
    };
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", version)
        .append_pair("ss", services)
        .append_pair("srt", resource_types)
        .append_pair("sp", permissions)
        .append_pair("se", &se)
        .append_pair("sig", &sig)
        .finish()
}

/// An Entra ID token read from an environment variable on each request, so an external agent
/// can rotate it.
#[derive(Debug)]
struct EnvToken(String);

#[async_trait::async_trait]
impl TokenCredential for EnvToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let token = std::env::var(&self.0).map_err(|_| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("environment variable {} holds no access token", self.0),
            )
        })?;
        // Unknown expiry: report a short one so the token is re-read often.
        let expires = azure_core::time::OffsetDateTime::now_utc() + Duration::from_secs(300);
        Ok(AccessToken::new(Secret::new(token), expires))
    }
}

/// An Azure error in one line, without the request details.
fn brief(e: &azure_core::Error) -> String {
    match e.http_status() {
        Some(status) => format!("HTTP {status}: {e}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public Azurite development account key.
    const DEV_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[test]
    fn account_sas_matches_the_azure_sdk() {
        // Python's generate_account_sas(devstoreaccount1, DEV_KEY, ResourceTypes(sco),
        // AccountSasPermissions(rwdlacup), expiry 2099-01-01, services q) with version
        // 2026-10-06 gave sig m+xUv0Helrey439xh92VXMws0xQjU1TPrTzn0PVWX18=.
        let key = base64::engine::general_purpose::STANDARD
            .decode(DEV_KEY)
            .unwrap_or_default();
        let expiry = chrono::DateTime::parse_from_rfc3339("2099-01-01T00:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        let sas = account_sas("devstoreaccount1", &key, expiry, "2026-10-06");
        assert!(
            sas.contains("sig=m%2BxUv0Helrey439xh92VXMws0xQjU1TPrTzn0PVWX18%3D"),
            "{sas}"
        );
        assert!(sas.contains("se=2099-01-01T00%3A00%3A00Z"), "{sas}");
    }
}
