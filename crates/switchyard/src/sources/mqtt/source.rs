//! MQTT: QoS 1 subscriptions on a persistent session (fixed client id, `clean_session`
//! off) with manual acknowledgement — a PUBACK is sent only once the event is settled in the
//! journal, so the broker redelivers what a crashed router had not finished, and queues what
//! arrives while it is away.
//!
//! The broker keeps messages only for subscriptions that exist: start Switchyard (once) before
//! publishers, so its persistent session is there to queue for it.
//!
//! MQTT messages carry no id that survives a redelivery, so set `id_field` (a JSON pointer
//! into the payload, e.g. `/id`) when the payload has one: a redelivered message is then the
//! same event and finds the run it already started. Without it every delivery is a new event.

use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use switchyard_core::Event;
use tokio_util::sync::CancellationToken;

use super::MqttConfig;
use crate::pipeline::Accepts;
use crate::sources::{Dispatcher, Disposition, reconnecting, undecodable};

/// Consumes until `stop`.
pub async fn run(cfg: MqttConfig, dispatch: Dispatcher, stop: CancellationToken) {
    let accepts = Accepts::new(&dispatch, &cfg.name);
    reconnecting(&cfg.name, &stop, || {
        session(&cfg, &dispatch, &stop, &accepts)
    })
    .await;
    accepts.close().await;
}

/// `mqtt://host[:port]` → (host, port).
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "mqtt" | "tcp") {
        return None;
    }
    let host = u.host_str().filter(|h| !h.is_empty())?;
    // IPv6 hosts come bracketed from the URL; the client wants the address alone.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), u.port().unwrap_or(1883)))
}

async fn session(
    cfg: &MqttConfig,
    dispatch: &Dispatcher,
    stop: &CancellationToken,
    accepts: &Accepts,
) -> Result<(), String> {
    let (host, port) = host_port(&cfg.url)
        .ok_or_else(|| format!("invalid MQTT URL {:?}", crate::secrets::url(&cfg.url)))?;
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("switchyard-{}", cfg.name));
    let mut opts = MqttOptions::new(client_id.clone(), host, port);
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_keep_alive(Duration::from_secs(30));
    if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
        opts.set_credentials(user, pass);
    }
    let (client, mut events) = AsyncClient::new(opts, 64);
    let name = cfg.event.clone();
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => {
                let _ = client.disconnect().await;
                return Ok(());
            }
            e = events.poll() => e,
        };
        match next.map_err(|e| format!("MQTT connection failed: {e}"))? {
            MqttEvent::Incoming(Packet::ConnAck(ack)) => {
                tracing::info!(source = %cfg.name, %client_id, session_present = ack.session_present, "connected to MQTT broker");
                for topic in &cfg.topics {
                    client
                        .subscribe(topic.clone(), QoS::AtLeastOnce)
                        .await
                        .map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
                }
            }
            MqttEvent::Incoming(Packet::SubAck(_)) => {
                tracing::info!(source = %cfg.name, topics = ?cfg.topics, "subscribed");
            }
            MqttEvent::Incoming(Packet::Publish(publish)) => {
                let topic = publish.topic.clone();
                let event_name = name.clone().unwrap_or_else(|| topic.clone());
                let make = |payload: serde_json::Value| {
                    let mut b = Event::builder(&cfg.name, &event_name, payload.clone())
                        .label("mqtt.topic", &topic);
                    if let Some(id) = cfg.id_field.as_deref().and_then(|p| payload.pointer(p)) {
                        let id = id
                            .as_str()
                            .map(String::from)
                            .unwrap_or_else(|| id.to_string());
                        b = b.id(format!("{}:{id}", cfg.name));
                    }
                    b.build()
                };
                match cfg.format.decode(&publish.payload) {
                    Err(reason) => {
                        dispatch
                            .reject(make(undecodable(&publish.payload)), &reason)
                            .await
                            .map_err(|e| e.to_string())?;
                        client
                            .ack(&publish)
                            .await
                            .map_err(|e| format!("ack failed: {e}"))?;
                    }
                    Ok(payload) => {
                        let client = client.clone();
                        accepts
                            .submit(make(payload), move |receipt| async move {
                                let id = receipt.id.clone();
                                match receipt.outcome().await {
                                    Disposition::Settled { .. } | Disposition::AlreadySettled => {
                                        if let Err(e) = client.ack(&publish).await {
                                            tracing::warn!(event_id = %id, error = %e, "MQTT ack failed; the broker will redeliver");
                                        }
                                    }
                                    // No PUBACK: the broker redelivers it on the next session.
                                    Disposition::Unfinished => {}
                                }
                            })
                            .await?;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn broker_urls() {
        let hp = |u: &str| host_port(u);
        assert_eq!(
            hp("mqtt://127.0.0.1:1883"),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            hp("tcp://broker.local"),
            Some(("broker.local".into(), 1883))
        );
        assert_eq!(hp("mqtt://broker:8883/"), Some(("broker".into(), 8883)));
        assert_eq!(hp("mqtt://[::1]:1884"), Some(("::1".into(), 1884)));
        assert_eq!(
            hp("mqtt://user:pw@broker:1885"),
            Some(("broker".into(), 1885))
        );
        assert_eq!(hp("http://broker"), None);
        assert_eq!(hp("mqtt://"), None);
        assert_eq!(hp("mqtt://broker:99999"), None);
    }
}
