//! Azure Storage Queue: receive with a visibility timeout, delete only after the outcome.
//!
//! Each received message is dispatched (journal first); while its event is in flight the
//! message's visibility timeout is renewed at half its length, and once every route has settled
//! it is deleted with the latest pop receipt. A message that is not settled (shutdown, journal
//! failure) is left alone and reappears after the timeout. A message dequeued more than
//! `max_dequeue_count` times is dead-lettered (pseudo-route `poison`) and deleted. An empty
//! queue is polled with a growing wait (100 ms doubling to `max_poll_interval`), never busily.
//! The event id is `<source>:<queue>:<message id>`, so a redelivered message is the same event.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::StatusCode;
use azure_core::http::headers::HeaderName;
use azure_storage_queue::models::{QueueClientReceiveMessagesOptions, ReceivedMessage};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use switchyard_core::Event;
use tokio_util::sync::CancellationToken;

use super::target::{AzureAuth, AzureTarget, target};
use super::{AzureQueueConfig, MessageEncoding};
use crate::pipeline::Accepts;
use crate::sources::{Dispatcher, Disposition, Undecoded, reconnecting, undecodable};

/// The service version account SAS tokens are signed for.
const SAS_VERSION: &str = "2026-04-06";
/// How long a self-signed SAS is valid; a new one is signed after half of it.
const SAS_LIFETIME: Duration = Duration::from_secs(6 * 3600);
const POP_RECEIPT: HeaderName = HeaderName::from_static("x-ms-popreceipt");

/// Consumes the queue until `stop`.
pub async fn run(cfg: AzureQueueConfig, dispatch: Dispatcher, stop: CancellationToken) {
    let accepts = Accepts::new(&dispatch, &cfg.name);
    reconnecting(&cfg.name, &stop, || {
        session(&cfg, &dispatch, &stop, &accepts)
    })
    .await;
    accepts.close().await;
}

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

async fn session(
    cfg: &AzureQueueConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
    accepts: &Accepts,
) -> Result<(), String> {
    let target = target(cfg).map_err(|(key, m)| format!("{key}: {m}"))?;
    let mut conn = connect(&target)?;
    if cfg.create_queue {
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
    tracing::info!(source = %cfg.name, queue = %target.queue, url = %target.queue_url, auth = ?target.auth, "reading Azure Storage queue");
    let visibility = cfg.visibility_timeout.as_secs().max(1) as i32;
    let min_wait = Duration::from_millis(100);
    let mut wait = min_wait;
    loop {
        if conn
            .renew_at
            .is_some_and(|at| tokio::time::Instant::now() >= at)
        {
            conn = connect(&target)?;
        }
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(cfg.batch.get() as i32),
            visibility_timeout: Some(visibility),
            ..Default::default()
        };
        let received = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = conn.client.receive_messages(Some(options)) => r,
        };
        let messages = received
            .and_then(|r| r.into_model())
            .map_err(|e| format!("receive failed: {}", brief(&e)))?
            .items
            .unwrap_or_default();
        if messages.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(cfg.max_poll_interval.max(min_wait));
            continue;
        }
        wait = min_wait;
        for message in messages {
            handle(cfg, &target, dispatch, &conn.client, accepts, message).await?;
        }
    }
}

async fn handle(
    cfg: &AzureQueueConfig,
    target: &AzureTarget,
    dispatch: &Dispatcher,
    client: &Arc<QueueClient>,
    accepts: &Accepts,
    message: ReceivedMessage,
) -> Result<(), String> {
    let (Some(message_id), Some(pop)) = (message.message_id.clone(), message.pop_receipt.clone())
    else {
        tracing::warn!(source = %cfg.name, "received a message without id or pop receipt; skipped");
        return Ok(());
    };
    let dequeued = message.dequeue_count.unwrap_or(1);
    let decoded = decode(cfg, target, &message_id, dequeued, &message);
    if dequeued > i64::from(cfg.max_dequeue_count) {
        let event = match decoded {
            Ok(event) => event,
            Err(Undecoded { event, .. }) => *event,
        };
        let reason = format!(
            "received {dequeued} times (max_dequeue_count {}) without being settled",
            cfg.max_dequeue_count
        );
        dispatch
            .give_up(&event, "poison", &reason)
            .await
            .map_err(|e| e.to_string())?;
        tracing::warn!(source = %cfg.name, event_id = %event.id, reason, "poison message dead-lettered");
        return delete(client, &message_id, &pop).await;
    }
    let event = match decoded {
        Ok(event) => event,
        Err(Undecoded { event, reason }) => {
            dispatch
                .reject(*event, &reason)
                .await
                .map_err(|e| e.to_string())?;
            return delete(client, &message_id, &pop).await;
        }
    };
    let client = Arc::clone(client);
    let renew_every = cfg.visibility_timeout / 2;
    let visibility = cfg.visibility_timeout.as_secs().max(1) as i32;
    let source = cfg.name.clone();
    accepts
        .submit(event, move |receipt| async move {
            let id = receipt.id.clone();
            let mut pop = pop;
            let outcome = receipt.outcome();
            tokio::pin!(outcome);
            let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
            let disposition = loop {
                tokio::select! {
                    d = &mut outcome => break d,
                    _ = renew.tick() => match extend(&client, &message_id, &pop, visibility).await {
                        Ok(next) => pop = next,
                        Err(e) => tracing::warn!(source, event_id = %id, error = %e, "cannot extend the message's visibility; it may be received again (the journal keeps that from starting a second run)"),
                    },
                }
            };
            match disposition {
                Disposition::Settled { .. } | Disposition::AlreadySettled => {
                    if let Err(e) = delete(&client, &message_id, &pop).await {
                        tracing::warn!(source, event_id = %id, error = %e, "cannot delete the message; it will be received again and acknowledged as already settled");
                    }
                }
                // Reappears after the visibility timeout; the journal resumes it meanwhile.
                Disposition::Unfinished => {}
            }
        })
        .await
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

/// The message as an event; `Err` carries the event to dead-letter and why.
fn decode(
    cfg: &AzureQueueConfig,
    target: &AzureTarget,
    message_id: &str,
    dequeued: i64,
    message: &ReceivedMessage,
) -> Result<Event, Undecoded> {
    let name = cfg
        .event
        .clone()
        .unwrap_or_else(|| format!("{}.message", cfg.name));
    let id = format!("{}:{}:{message_id}", cfg.name, target.queue);
    let make = |payload: Value| {
        let mut b = Event::builder(&cfg.name, &name, payload)
            .id(&id)
            .label("azure.queue", &target.queue)
            .label("azure.message_id", message_id)
            .label("azure.dequeue_count", dequeued.to_string());
        if let Some(at) = message
            .insertion_time
            .and_then(|t| chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()))
        {
            b = b.occurred(at);
        }
        b.build()
    };
    let text = message.message_text.as_deref().unwrap_or_default();
    let body = match cfg.message_encoding {
        MessageEncoding::Plain => text.as_bytes().to_vec(),
        MessageEncoding::Base64 => {
            match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                Ok(b) => b,
                Err(e) => {
                    return Err(Undecoded {
                        event: Box::new(make(undecodable(text.as_bytes()))),
                        reason: format!("message_encoding base64: not valid base64: {e}"),
                    });
                }
            }
        }
    };
    cfg.format
        .decode(&body)
        .map(make)
        .map_err(|reason| Undecoded {
            event: Box::new(make(undecodable(&body))),
            reason,
        })
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
