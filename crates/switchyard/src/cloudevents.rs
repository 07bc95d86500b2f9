//! CloudEvents 1.0 (the CNCF event envelope) as the HTTP binding carries it: *binary* mode
//! (attributes in `ce-*` headers, the body is the data), *structured* mode
//! (`application/cloudevents+json`: one JSON object) and *batch* mode
//! (`application/cloudevents-batch+json`: an array of them).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The media type of a structured CloudEvent.
pub const STRUCTURED: &str = "application/cloudevents+json";
/// The media type of a batch of them.
pub const BATCH: &str = "application/cloudevents-batch+json";

/// One CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// `id`: unique per `source`.
    pub id: String,
    /// `source`: a URI reference naming the producer.
    pub source: String,
    /// `type`: what happened, e.g. `com.github.push`.
    pub kind: String,
    /// `subject`: what it happened to, within the source.
    pub subject: Option<String>,
    /// `time`, RFC 3339.
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    /// `datacontenttype`.
    pub datacontenttype: Option<String>,
    /// `data` (decoded from `data_base64` when that is how it came: JSON if it parses, else
    /// text if UTF-8, else the base64 text).
    pub data: Value,
    /// Extension attributes, e.g. `traceparent`.
    pub extensions: BTreeMap<String, String>,
}

const REQUIRED: [&str; 4] = ["specversion", "id", "source", "type"];

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("`time` {s:?} is not RFC 3339: {e}"))
}

fn check_version(v: &str) -> Result<(), String> {
    if v == "1.0" {
        Ok(())
    } else {
        Err(format!(
            "specversion {v:?} is not supported (expected \"1.0\")"
        ))
    }
}

fn non_empty(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("`{key}` must be a non-empty string")),
        None => Err(format!("`{key}` is required")),
    }
}

/// Bytes as a payload: JSON if they parse, else text if UTF-8, else base64 text.
fn bytes_value(b: &[u8]) -> Value {
    crate::codec::parse_json(b).unwrap_or_else(|_| match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    })
}

impl CloudEvent {
    /// A structured-mode event (one JSON object).
    pub fn from_structured(v: Value) -> Result<Self, String> {
        let Value::Object(mut obj) = v else {
            return Err("a structured CloudEvent must be a JSON object".into());
        };
        check_version(&non_empty(&obj, "specversion")?)?;
        let (id, source, kind) = (
            non_empty(&obj, "id")?,
            non_empty(&obj, "source")?,
            non_empty(&obj, "type")?,
        );
        let data = match (obj.remove("data"), obj.remove("data_base64")) {
            (Some(_), Some(_)) => return Err("`data` and `data_base64` are exclusive".into()),
            (Some(d), None) => d,
            (None, Some(Value::String(b64))) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| format!("`data_base64` is not base64: {e}"))?;
                bytes_value(&raw)
            }
            (None, Some(_)) => return Err("`data_base64` must be a string".into()),
            (None, None) => Value::Null,
        };
        let subject = obj.get("subject").map(text);
        let time = obj
            .get("time")
            .and_then(Value::as_str)
            .map(time)
            .transpose()?;
        let datacontenttype = obj.get("datacontenttype").map(text);
        let known = [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "dataschema",
        ];
        let extensions = obj
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), text(v)))
            .chain(
                obj.get("dataschema")
                    .map(|v| ("dataschema".into(), text(v))),
            )
            .collect();
        Ok(Self {
            id,
            source,
            kind,
            subject,
            time,
            datacontenttype,
            data,
            extensions,
        })
    }

    /// A batch: every entry a structured event (the first bad one is the error, with its
    /// index).
    pub fn batch(v: Value) -> Result<Vec<Self>, String> {
        let Value::Array(items) = v else {
            return Err("a CloudEvents batch must be a JSON array".into());
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| Self::from_structured(item).map_err(|e| format!("entry {i}: {e}")))
            .collect()
    }

    /// A binary-mode event from its `ce-*` headers (lower-case names) and its body as
    /// a payload; `None` without `ce-specversion`.
    pub fn from_binary(
        headers: &BTreeMap<String, String>,
        content_type: Option<&str>,
        data: Value,
    ) -> Option<Result<Self, String>> {
        let version = headers.get("ce-specversion")?;
        let get = |k: &str| headers.get(&format!("ce-{k}")).filter(|v| !v.is_empty());
        Some((|| {
            check_version(version)?;
            let need = |k: &str| {
                get(k)
                    .cloned()
                    .ok_or_else(|| format!("header ce-{k} is required"))
            };
            Ok(Self {
                id: need("id")?,
                source: need("source")?,
                kind: need("type")?,
                subject: get("subject").cloned(),
                time: get("time").map(|t| time(t)).transpose()?,
                datacontenttype: content_type.map(String::from),
                data,
                extensions: headers
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix("ce-")?, v)))
                    .filter(|(k, _)| !REQUIRED.contains(k) && !["subject", "time"].contains(k))
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            })
        })())
    }

    /// Its attributes as labels, `ce.<attribute>`.
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut l = vec![
            ("ce.id".to_string(), self.id.clone()),
            ("ce.source".into(), self.source.clone()),
            ("ce.type".into(), self.kind.clone()),
        ];
        if let Some(s) = &self.subject {
            l.push(("ce.subject".into(), s.clone()));
        }
        if let Some(t) = &self.datacontenttype {
            l.push(("ce.datacontenttype".into(), t.clone()));
        }
        for (k, v) in &self.extensions {
            l.push((format!("ce.{k}"), v.clone()));
        }
        l
    }

    /// The Prefect event Prefect Cloud's `from_cloud_event` filter makes of it: the `type` is
    /// the event name, the `subject` (or else the `source`) the resource, `data` goes to
    /// `payload.data` and the other attributes to `payload.cloudevents`.
    pub fn to_prefect_event(&self) -> Value {
        let mut meta = Map::new();
        meta.insert("specversion".into(), json!("1.0"));
        meta.insert("id".into(), json!(self.id));
        meta.insert("source".into(), json!(self.source));
        meta.insert("type".into(), json!(self.kind));
        if let Some(s) = &self.subject {
            meta.insert("subject".into(), json!(s));
        }
        if let Some(t) = &self.time {
            meta.insert("time".into(), json!(t.to_rfc3339()));
        }
        if let Some(c) = &self.datacontenttype {
            meta.insert("datacontenttype".into(), json!(c));
        }
        for (k, v) in &self.extensions {
            meta.insert(k.clone(), json!(v));
        }
        let mut event = json!({
            "id": self.id,
            "event": self.kind,
            "resource": {"prefect.resource.id": self.subject.as_deref().unwrap_or(&self.source)},
            "payload": {"data": self.data, "cloudevents": meta},
        });
        if let (Some(t), Value::Object(e)) = (&self.time, &mut event) {
            e.insert("occurred".into(), json!(t.to_rfc3339()));
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn structured() -> Value {
        json!({"specversion": "1.0", "id": "A234-1234-1234", "source": "https://github.com/cloudevents/spec/pull",
               "subject": "123", "type": "com.github.pull_request.opened", "time": "2018-04-05T17:31:00Z",
               "comexampleextension1": "value", "datacontenttype": "text/xml", "data": "<much wow=\"xml\"/>"})
    }

    #[test]
    fn structured_mode_maps_every_attribute() {
        // The CloudEvents JSON format spec's example.
        let ce = CloudEvent::from_structured(structured()).unwrap();
        assert_eq!(ce.id, "A234-1234-1234");
        assert_eq!(ce.kind, "com.github.pull_request.opened");
        assert_eq!(ce.subject.as_deref(), Some("123"));
        assert_eq!(ce.data, json!("<much wow=\"xml\"/>"));
        assert_eq!(ce.extensions["comexampleextension1"], "value");
        let p = ce.to_prefect_event();
        assert_eq!(p["event"], "com.github.pull_request.opened");
        assert_eq!(p["resource"]["prefect.resource.id"], "123");
        assert_eq!(
            p["payload"]["cloudevents"]["source"],
            "https://github.com/cloudevents/spec/pull"
        );
        assert_eq!(p["occurred"], "2018-04-05T17:31:00+00:00");
    }

    #[test]
    fn required_attributes_and_base64_data() {
        let mut v = structured();
        v.as_object_mut().unwrap().remove("source");
        assert_eq!(
            CloudEvent::from_structured(v).unwrap_err(),
            "`source` is required"
        );
        let mut v = structured();
        v["specversion"] = json!("0.3");
        assert!(CloudEvent::from_structured(v).is_err());
        let mut v = structured();
        let o = v.as_object_mut().unwrap();
        o.remove("data");
        o.insert("data_base64".into(), json!("eyJhIjogMX0="));
        assert_eq!(
            CloudEvent::from_structured(v).unwrap().data,
            json!({"a": 1})
        );
        let err = CloudEvent::batch(json!([structured(), {"specversion": "1.0"}])).unwrap_err();
        assert!(err.starts_with("entry 1: "), "{err}");
    }

    #[test]
    fn binary_mode_reads_the_headers() {
        let h: BTreeMap<String, String> = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/orders"),
            ("ce-type", "order.created"),
            ("ce-traceparent", "00-abc"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let ce = CloudEvent::from_binary(&h, Some("application/json"), json!({"n": 1}))
            .unwrap()
            .unwrap();
        assert_eq!((ce.id.as_str(), ce.kind.as_str()), ("1", "order.created"));
        assert_eq!(ce.extensions["traceparent"], "00-abc");
        assert!(!ce.extensions.contains_key("id"));
        assert!(CloudEvent::from_binary(&BTreeMap::new(), None, Value::Null).is_none());
    }
}
