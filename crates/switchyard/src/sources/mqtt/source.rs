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

use rumqttc::{AsyncClient, Event as MqttEvent, EventLoop, MqttOptions, Packet, Publish, QoS};

use super::MqttConfig;
use crate::codec::PayloadFormat;
use crate::sources::runtime::{Ack, Acker, Body, Connector, Delivery, Draft, Session};

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

impl Connector for MqttConfig {
    type Session = MqttSession;

    fn format(&self) -> PayloadFormat {
        self.format
    }

    async fn connect(&self) -> Result<MqttSession, String> {
        let (host, port) = host_port(&self.url)
            .ok_or_else(|| format!("invalid MQTT URL {:?}", crate::secrets::url(&self.url)))?;
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("switchyard-{}", self.name));
        let mut opts = MqttOptions::new(client_id.clone(), host, port);
        opts.set_clean_session(false);
        opts.set_manual_acks(true);
        opts.set_keep_alive(Duration::from_secs(30));
        if let (Some(user), Some(pass)) = (&self.username, &self.password) {
            opts.set_credentials(user, pass);
        }
        let (client, events) = AsyncClient::new(opts, 64);
        Ok(MqttSession {
            cfg: self.clone(),
            client_id,
            client,
            events,
        })
    }
}

/// One MQTT connection. The client connects while it is polled, so [`Session::next`] also
/// subscribes on each `CONNACK`, and sends the acknowledgements queued by [`MqttAck`].
pub struct MqttSession {
    cfg: MqttConfig,
    client_id: String,
    client: AsyncClient,
    events: EventLoop,
}

impl Session for MqttSession {
    type Acker = MqttAck;

    async fn next(&mut self) -> Result<Delivery<MqttAck>, String> {
        let cfg = &self.cfg;
        loop {
            let event = self
                .events
                .poll()
                .await
                .map_err(|e| format!("MQTT connection failed: {e}"))?;
            match event {
                MqttEvent::Incoming(Packet::ConnAck(ack)) => {
                    tracing::info!(source = %cfg.name, client_id = %self.client_id, session_present = ack.session_present, "connected to MQTT broker");
                    for topic in &cfg.topics {
                        self.client
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
                    let mut draft =
                        Draft::named(cfg.event.clone().unwrap_or_else(|| topic.clone()))
                            .label("mqtt.topic", topic);
                    draft.id_field.clone_from(&cfg.id_field);
                    return Ok(Delivery {
                        body: Body::Encoded(publish.payload.to_vec()),
                        draft,
                        poison: None,
                        ack: MqttAck {
                            client: self.client.clone(),
                            publish,
                        },
                    });
                }
                _ => {}
            }
        }
    }

    async fn drain<F>(&mut self, acks: F)
    where
        F: std::future::Future<Output = ()> + Send,
    {
        // PUBACKs go out only while the event loop is polled.
        tokio::pin!(acks);
        loop {
            tokio::select! {
                _ = &mut acks => return,
                e = self.events.poll() => if e.is_err() { return },
            }
        }
    }

    async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}

/// A PUBACK, sent once the event is settled (or dead-lettered); none otherwise, so the broker
/// redelivers the message on the next session.
pub struct MqttAck {
    client: AsyncClient,
    publish: Publish,
}

impl Acker for MqttAck {
    async fn settle(self, ack: Ack) -> Result<(), String> {
        match ack {
            Ack::Done | Ack::Dead => self
                .client
                .ack(&self.publish)
                .await
                .map_err(|e| format!("MQTT ack failed: {e}")),
            Ack::Retry => Ok(()),
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
