//! Durations as a config writes them, for the config's JSON Schema: `30s`, `5m`, `1h 30m`
//! (read by `humantime_serde`), and trigger windows that also take Prefect's seconds. A leaf
//! module: the config and the sources' settings both use it.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// A duration as the config writes one: `30s`, `5m`, `1h 30m`, `7d`, `250ms`.
pub struct HumanDuration;

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number and a unit, repeated (`30s`, `5m`, `1h 30m`, `7d`, `250ms`).",
            "type": "string",
            "pattern": "^\\s*([0-9]+\\s*[a-zA-Zµ]+\\s*)+$",
            "examples": ["30s", "5m", "1h 30m"]
        })
    }
}

/// A window as Prefect writes one (seconds) or a duration.
pub struct Seconds;

impl JsonSchema for Seconds {
    fn schema_name() -> Cow<'static, str> {
        "Seconds".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let duration = generator.subschema_for::<HumanDuration>();
        json_schema!({
            "description": "Seconds, as Prefect writes them (`600`), or a duration (`10m`).",
            "anyOf": [{"type": "number", "minimum": 0}, duration]
        })
    }
}
