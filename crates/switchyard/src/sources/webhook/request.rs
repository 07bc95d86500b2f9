//! From a verified request to events: a plain body, a Prefect event, CloudEvents (binary,
//! structured, batch), or a Prefect-Cloud-style `template`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use switchyard_core::{Event, EventBuilder};

use super::{EventFrom, Verified, Verify, WebhookConfig, WebhookFormat};
use crate::cloudevents::{self, CloudEvent};
use crate::http::header_str;
use crate::template::TextTemplate;

/// What a request is.
pub struct Incoming<'a> {
    /// The hook's name.
    pub name: &'a str,
    /// Its settings.
    pub hook: &'a WebhookConfig,
    /// Its compiled `template`, if any.
    pub template: Option<&'a Arc<TextTemplate>>,
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
    /// What verification established.
    pub verified: Verified,
}

/// The events a request makes: one, or a CloudEvents batch's.
pub enum Made {
    /// One event.
    One(Event),
    /// A batch, in order.
    Batch(Vec<Event>),
}

/// The media type, lower-case, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    header_str(headers, "content-type").map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}

fn form(body: &[u8]) -> Value {
    Value::Object(
        url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    )
}

/// The body as a payload: JSON (strictly: malformed JSON is an error), a form's fields, or
/// for `text/*` JSON if it parses and else the text.
fn payload(media: Option<&str>, body: &[u8]) -> Result<Value, String> {
    match media {
        Some("application/x-www-form-urlencoded") => Ok(form(body)),
        Some(t) if t.starts_with("text/") => Ok(crate::codec::parse_json(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))),
        _ => crate::codec::parse_json(body)
            .map_err(|e| e.replacen("not valid JSON", "malformed JSON", 1)),
    }
}

/// The body as templates see it (Prefect Cloud's rules): JSON, a form's fields, and for any
/// other type JSON if it parses, else the text.
fn template_body(media: Option<&str>, body: &[u8]) -> Value {
    match media {
        Some("application/x-www-form-urlencoded") => form(body),
        _ => crate::codec::parse_json(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    }
}

/// Lower-case header names and their values; `Authorization` left out (Prefect Cloud does the
/// same, so a template cannot leak a credential).
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| *k != axum::http::header::AUTHORIZATION)
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

impl Incoming<'_> {
    fn event_name(&self, sent: Option<&str>) -> String {
        let from = self.hook.event_from.unwrap_or(match self.hook.verify {
            Some(Verify::Github { .. } | Verify::Stripe { .. }) => EventFrom::Sender,
            _ => EventFrom::Config,
        });
        match (&self.hook.event, from, sent) {
            (Some(configured), _, _) => configured.clone(),
            (None, EventFrom::Sender, Some(sent)) => sent.to_string(),
            _ => format!("{}.received", self.name),
        }
    }

    /// The events of this request; `Err` is the reason for a 400.
    pub async fn events(self) -> Result<Made, String> {
        let media = media_type(self.headers);
        if let Some(t) = self.template {
            return self.templated(t, media.as_deref()).await.map(Made::One);
        }
        if self.hook.format == WebhookFormat::PrefectEvent {
            let v = payload(Some("application/json"), self.body)?;
            let b = prefect_event(self.name, v)?;
            return Ok(Made::One(self.finish(b, true)));
        }
        match media.as_deref() {
            Some(cloudevents::BATCH) => {
                let v = payload(Some("application/json"), self.body)?;
                let events = CloudEvent::batch(v)?
                    .into_iter()
                    .map(|ce| self.finish(self.cloud_event(ce), false))
                    .collect();
                Ok(Made::Batch(events))
            }
            Some(cloudevents::STRUCTURED) => {
                let v = payload(Some("application/json"), self.body)?;
                let ce = CloudEvent::from_structured(v)?;
                Ok(Made::One(self.finish(self.cloud_event(ce), true)))
            }
            _ => {
                let data = payload(media.as_deref(), self.body)?;
                let headers = header_map(self.headers);
                if let Some(ce) = CloudEvent::from_binary(&headers, media.as_deref(), data.clone())
                {
                    return Ok(Made::One(self.finish(self.cloud_event(ce?), true)));
                }
                Ok(Made::One(self.plain(data)))
            }
        }
    }

    fn cloud_event(&self, ce: CloudEvent) -> EventBuilder {
        let mut b = Event::builder(self.name, self.event_name(Some(&ce.kind)), ce.data.clone())
            .id(format!("{}:{}", self.name, ce.id));
        if let Some(t) = ce.time {
            b = b.occurred(t);
        }
        for (k, v) in ce.labels() {
            b = b.label(k, v);
        }
        b
    }

    fn plain(&self, data: Value) -> Event {
        let sent = self
            .verified
            .name
            .clone()
            .or_else(|| header_str(self.headers, "ce-type").map(String::from));
        let mut b = Event::builder(self.name, self.event_name(sent.as_deref()), data);
        if let Some(ce_type) = header_str(self.headers, "ce-type") {
            b = b.label("ce.type", ce_type);
        }
        if let Some(id) = header_str(self.headers, "idempotency-key")
            .or_else(|| header_str(self.headers, "ce-id"))
        {
            b = b.id(format!("{}:{id}", self.name));
        }
        if let Some(time) = header_str(self.headers, "ce-time")
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            b = b.occurred(time.with_timezone(&chrono::Utc));
        }
        self.finish(b, true)
    }

    /// Verification's labels and id (not for a batch's entries: they have their own), and the
    /// content type.
    fn finish(&self, mut b: EventBuilder, single: bool) -> Event {
        for (k, v) in &self.verified.labels {
            b = b.label(k, v);
        }
        if single && let Some(id) = &self.verified.id {
            b = b.id(format!("{}:{id}", self.name));
        }
        if let Some(ct) = header_str(self.headers, "content-type") {
            b = b.label("http.content_type", ct);
        }
        b.build()
    }

    /// Prefect Cloud's webhook templates: the template renders a Prefect event as JSON from
    /// `method`, `headers`, `body`, `query` and `raw_body`.
    async fn templated(&self, t: &Arc<TextTemplate>, media: Option<&str>) -> Result<Event, String> {
        let headers = header_map(self.headers);
        let body = template_body(media, self.body);
        let query: Map<String, Value> = self
            .query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let raw_body = String::from_utf8_lossy(self.body).into_owned();
        let debug = json!({"method": self.method, "headers": headers, "body": body});
        let ctx = crate::template::webhook_context(
            self.method,
            headers,
            body,
            Value::Object(query),
            raw_body,
        );
        let t = Arc::clone(t);
        let rendered = crate::template::sandbox(move || t.render(&ctx)).await??;
        let v = crate::codec::parse_json(rendered.as_bytes())
            .map_err(|e| format!("the template did not render JSON ({e}): {rendered:.200}"))?;
        let Value::Object(mut obj) = v else {
            return Err("the template did not render a JSON object".into());
        };
        obj.entry("payload").or_insert(debug);
        let related = obj.entry("related").or_insert_with(|| json!([]));
        if let Value::Array(r) = related {
            r.push(json!({
                "prefect.resource.id": format!("switchyard.webhook.{}", self.name),
                "prefect.resource.name": self.name,
                "prefect.resource.role": "webhook",
            }));
        }
        let b = prefect_event(self.name, Value::Object(obj))?;
        Ok(self.finish(b, true))
    }
}

/// A Prefect event body: `event` names it, `resource` (and `related`, as
/// `related.<role>.<label>`) become labels, `payload` the payload, `id` and `occurred` are kept.
pub fn prefect_event(hook: &str, body: Value) -> Result<EventBuilder, String> {
    let Value::Object(mut obj) = body else {
        return Err("expected a Prefect event object".into());
    };
    let name = match obj.remove("event") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err("expected `event`: the event name".into()),
    };
    let resource = match obj.remove("resource") {
        Some(Value::Object(r)) if r.contains_key("prefect.resource.id") => r,
        _ => {
            return Err(
                "expected `resource` with a `prefect.resource.id` label (as Prefect requires)"
                    .into(),
            );
        }
    };
    let payload = obj.remove("payload").unwrap_or_else(|| json!({}));
    let mut b = Event::builder(hook, name, payload);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (k, v) in &resource {
        b = b.label(k.clone(), text(v));
    }
    if let Some(Value::Array(related)) = obj.remove("related") {
        for r in related.iter().filter_map(Value::as_object) {
            let role = r
                .get("prefect.resource.role")
                .map(text)
                .unwrap_or_else(|| "related".into());
            for (k, v) in r {
                b = b.label(format!("related.{role}.{k}"), text(v));
            }
        }
    }
    if let Some(Value::String(id)) = obj.get("id") {
        b = b.id(format!("{hook}:{id}"));
    }
    if let Some(t) = obj
        .get("occurred")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        b = b.occurred(t.with_timezone(&chrono::Utc));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(template: Option<&str>) -> (WebhookConfig, Option<Arc<TextTemplate>>) {
        let cfg = WebhookConfig {
            name: "h".into(),
            template: template.map(String::from),
            ..Default::default()
        };
        let t = template.map(|t| Arc::new(TextTemplate::compile_lenient(t).unwrap()));
        (cfg, t)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        super::super::test_headers(pairs)
    }

    async fn one(
        cfg: &WebhookConfig,
        t: Option<&Arc<TextTemplate>>,
        method: &str,
        h: &HeaderMap,
        body: &[u8],
    ) -> Result<Event, String> {
        let incoming = Incoming {
            name: "h",
            hook: cfg,
            template: t,
            method,
            query: Some("team=ds&x=1"),
            headers: h,
            body,
            verified: Verified::default(),
        };
        match incoming.events().await? {
            Made::One(e) => Ok(e),
            Made::Batch(_) => Err("a batch".into()),
        }
    }

    /// The dynamic template of Prefect's webhook documentation, with its form-encoded `curl`.
    #[tokio::test]
    async fn prefect_docs_dynamic_template() {
        let (cfg, t) = hook(Some(
            r#"{
    "event": "model.refreshed",
    "resource": {
        "prefect.resource.id": "product.models.{{ body.model }}",
        "prefect.resource.name": "{{ body.friendly_name }}",
        "producing-team": "Data Science"
    }
}"#,
        ));
        let h = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let e = one(
            &cfg,
            t.as_ref(),
            "POST",
            &h,
            b"model=recommendations&friendly_name=Recommendations%20[Products]",
        )
        .await
        .unwrap();
        assert_eq!(e.name, "model.refreshed");
        assert_eq!(
            e.labels["prefect.resource.id"],
            "product.models.recommendations"
        );
        assert_eq!(
            e.labels["prefect.resource.name"],
            "Recommendations [Products]"
        );
        assert_eq!(e.labels["producing-team"], "Data Science");
        assert_eq!(
            e.labels["related.webhook.prefect.resource.id"],
            "switchyard.webhook.h"
        );
        // No `payload` in the template: the request, for debugging.
        assert_eq!(e.payload["method"], "POST");
        assert_eq!(e.payload["body"]["model"], "recommendations");
    }

    #[tokio::test]
    async fn static_templates_take_a_get_and_headers_are_case_insensitive() {
        let (cfg, t) = hook(Some(
            r#"{"event": "cron.done", "resource": {"prefect.resource.id": "x", "ua": "{{ headers['User-AGENT'] }}", "auth": "{{ headers.authorization|default('none') }}", "team": "{{ query.team }}", "m": "{{ method }}"}}"#,
        ));
        let h = headers(&[("user-agent", "curl/8"), ("authorization", "Bearer s3cret")]);
        let e = one(&cfg, t.as_ref(), "GET", &h, b"").await.unwrap();
        assert_eq!(e.name, "cron.done");
        assert_eq!(e.labels["ua"], "curl/8");
        assert_eq!(
            e.labels["auth"], "none",
            "Authorization is never shown to templates"
        );
        assert_eq!(
            (e.labels["team"].as_str(), e.labels["m"].as_str()),
            ("ds", "GET")
        );
    }

    #[tokio::test]
    async fn pass_through_and_cloud_event_filters() {
        let (cfg, t) = hook(Some("{{ body|tojson }}"));
        let h = headers(&[("content-type", "application/json")]);
        let body = br#"{"event": "model.refreshed", "resource": {"prefect.resource.id": "m.1"}, "payload": {"n": 1}}"#;
        let e = one(&cfg, t.as_ref(), "POST", &h, body).await.unwrap();
        assert_eq!(
            (e.name.as_str(), &e.payload),
            ("model.refreshed", &json!({"n": 1}))
        );

        let (cfg, t) = hook(Some("{{ body|from_cloud_event(headers) }}"));
        let h = headers(&[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", "c-1"),
            ("ce-source", "/orders"),
            ("ce-type", "order.created"),
            ("ce-subject", "order-7"),
        ]);
        let e = one(&cfg, t.as_ref(), "POST", &h, br#"{"total": 3}"#)
            .await
            .unwrap();
        assert_eq!(e.name, "order.created");
        assert_eq!(e.id, "h:c-1");
        assert_eq!(e.labels["prefect.resource.id"], "order-7");
        assert_eq!(e.payload["data"], json!({"total": 3}));
        assert_eq!(e.payload["cloudevents"]["source"], "/orders");
    }

    #[tokio::test]
    async fn a_template_that_does_not_render_an_event_is_an_error() {
        let (cfg, t) = hook(Some("{{ body.x }}"));
        let h = headers(&[("content-type", "application/json")]);
        let err = one(&cfg, t.as_ref(), "POST", &h, br#"{"x": "nope"}"#)
            .await
            .unwrap_err();
        assert!(err.contains("did not render JSON"), "{err}");
        let (cfg, t) = hook(Some(r#"{"event": "e"}"#));
        let err = one(&cfg, t.as_ref(), "POST", &h, b"{}").await.unwrap_err();
        assert!(err.contains("prefect.resource.id"), "{err}");
    }

    #[tokio::test]
    async fn cloudevents_structured_binary_and_batch() {
        let (cfg, _) = hook(None);
        let ce = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t.created", "data": {"a": 1}});
        let h = headers(&[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )]);
        let e = one(&cfg, None, "POST", &h, ce.to_string().as_bytes())
            .await
            .unwrap();
        assert_eq!((e.id.as_str(), e.name.as_str()), ("h:1", "h.received"));
        assert_eq!(
            e.labels["ce.type"], "t.created",
            "the sender's type is a label"
        );
        assert_eq!(e.payload, json!({"a": 1}));

        let sender = WebhookConfig {
            name: "h".into(),
            event_from: Some(EventFrom::Sender),
            ..Default::default()
        };
        let h = headers(&[
            ("content-type", "text/plain"),
            ("ce-specversion", "1.0"),
            ("ce-id", "2"),
            ("ce-source", "/s"),
            ("ce-type", "t.updated"),
        ]);
        let e = one(&sender, None, "POST", &h, b"hello").await.unwrap();
        assert_eq!(
            (e.name.as_str(), &e.payload),
            ("t.updated", &json!("hello"))
        );

        let batch = json!([ce, {"specversion": "1.0", "id": "3", "source": "/s", "type": "t"}]);
        let h = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let batch = batch.to_string();
        let incoming = Incoming {
            name: "h",
            hook: &cfg,
            template: None,
            method: "POST",
            query: None,
            headers: &h,
            body: batch.as_bytes(),
            verified: Verified::default(),
        };
        let Ok(Made::Batch(events)) = incoming.events().await else {
            panic!("not a batch")
        };
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["h:1", "h:3"]);

        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let err = one(
            &cfg,
            None,
            "POST",
            &h,
            br#"{"specversion": "1.0", "id": "1"}"#,
        )
        .await
        .unwrap_err();
        assert_eq!(err, "`source` is required");
    }
}
