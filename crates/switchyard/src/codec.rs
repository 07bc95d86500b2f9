//! How message bodies become payloads: the formats a source decodes (JSON, text), the
//! strict JSON reader every source uses, and what is kept of a body that does not decode.

use serde::Deserialize;
use serde_json::{Map, Value};

/// How a broker message's body becomes the event payload.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// JSON (the default); a body that is not JSON is dead-lettered.
    #[default]
    Json,
    /// UTF-8 text, as a JSON string.
    Text,
}

/// Which messages of a source whose broker is itself a durable log (Kafka, NATS JetStream,
/// Redis Streams) the journal records.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JournalMode {
    /// Every message is journaled before it is acknowledged (the default): each one is in
    /// `events list`, the API and the UI, with every route's decision.
    #[default]
    All,
    /// Only messages some route wants (a stateful route receives it, or a plain route's
    /// `when` holds): the others are acknowledged at once, with no journal write, counted in
    /// `switchyard_events_unrouted_total`, and not shown anywhere. The broker's own log is
    /// their record; after a crash a redelivered one is decided again, the same way. The
    /// guarantees for wanted messages are unchanged (journaled before acknowledged, one run).
    Routed,
}

impl PayloadFormat {
    /// Decodes a body.
    pub fn decode(self, body: &[u8]) -> Result<serde_json::Value, String> {
        match self {
            Self::Json => parse_json(body),
            Self::Text => std::str::from_utf8(body)
                .map(|s| serde_json::Value::String(s.to_string()))
                .map_err(|e| format!("not valid UTF-8: {e}")),
        }
    }
}

/// Parses a JSON message. An integer beyond 64 bits is refused with the reason rather than
/// silently rounded to a float (`12345678901234567890123` would become
/// `1.2345678901234568e+22`).
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, String> {
    check_integers(body)?;
    serde_json::from_slice(body).map_err(|e| format!("not valid JSON: {e}"))
}

/// Finds an integer literal outside strings that fits neither `i64` nor `u64`.
fn check_integers(b: &[u8]) -> Result<(), String> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let token = &b[start..i];
                if token.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                    continue;
                }
                let text = std::str::from_utf8(token).unwrap_or_default();
                if text.len() > 1
                    && text.parse::<i64>().is_err()
                    && text.parse::<u64>().is_err()
                    && text
                        .trim_start_matches('-')
                        .bytes()
                        .all(|c| c.is_ascii_digit())
                {
                    let shown: String = text.chars().take(40).collect();
                    return Err(format!(
                        "integer {shown}{} is beyond 64 bits and would lose digits; send it as a string",
                        if text.len() > 40 { "…" } else { "" }
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The payload kept for a message that did not decode: the body as text (lossy) and its size.
pub fn undecodable(body: &[u8]) -> serde_json::Value {
    serde_json::json!({"undecodable": String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]), "bytes": body.len()})
}

/// One original message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LegacyMessage {
    /// Exact flow name.
    pub flow_name: String,
    /// Exact deployment name.
    pub deployment_name: String,
    /// Flow run parameters.
    #[serde(default)]
    pub payload: Map<String, Value>,
}
