//! The configuration's JSON Schema (`switchyard config schema`, `docs/config.schema.json`)
//! and its reference page (`switchyard config reference`, `docs/reference.md`), both
//! generated from the config types and their doc comments, so neither can drift from what
//! `run` reads (a test compares both with the files in `docs/`).

use std::fmt::Write as _;

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value};

use super::Config;
use super::legacy::LegacyConfig;

/// What a config file may be: Switchyard's own form, or the original prefect-event-router's.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // only its schema is used
enum ConfigFile {
    /// Switchyard's form: `sources` and `routes`.
    Switchyard(Box<Config>),
    /// The original prefect-event-router's form: `threads`.
    PrefectEventRouter(LegacyConfig),
}

/// The config's JSON Schema (2020-12).
pub fn json_schema() -> Value {
    let mut root = SchemaGenerator::default().into_root_schema_for::<ConfigFile>();
    root.insert("title".into(), "Switchyard configuration".into());
    root.insert(
        "description".into(),
        "A Switchyard config file (YAML or JSON), after `${VAR}` interpolation. Generated from the config types by `switchyard config schema`.".into(),
    );
    let mut value = root.to_value();
    durations_as_text(&mut value);
    value
}

/// A default of a `deserialize_with` duration field is serialized as `Duration` serializes
/// (`{"secs": 60, "nanos": 0}`); the config writes it `1m`.
fn durations_as_text(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let is_duration = map
                .get("$ref")
                .and_then(Value::as_str)
                .is_some_and(|r| matches!(r, "#/$defs/Duration" | "#/$defs/Seconds"));
            if is_duration
                && let Some(Value::Object(d)) = map.get("default")
                && let (Some(secs), Some(nanos)) = (
                    d.get("secs").and_then(Value::as_u64),
                    d.get("nanos").and_then(Value::as_u64),
                )
            {
                let nanos = u32::try_from(nanos).unwrap_or(0);
                let text = humantime_serde::re::humantime::format_duration(
                    std::time::Duration::new(secs, nanos),
                )
                .to_string();
                map.insert("default".into(), Value::String(text));
            }
            map.values_mut().for_each(durations_as_text);
        }
        Value::Array(items) => items.iter_mut().for_each(durations_as_text),
        _ => {}
    }
}

/// The schema as the text `docs/config.schema.json` holds.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// The reference page (Markdown): each type with its fields' keys, types, defaults and doc
/// comments, from the same schema.
pub fn reference() -> String {
    let schema = json_schema();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the config types by `switchyard config reference` (the JSON Schema, \
         for editors, is `switchyard config schema`, published as \
         [`config.schema.json`](config.schema.json)); a test fails when this page is stale.\n\n\
         A config file is YAML or JSON. `${VAR}` and `${VAR:-default}` are replaced from the \
         environment before it is read, so every value below may come from the environment. \
         Unknown keys are errors. Durations are written `30s`, `5m`, `1h 30m`, `7d`; \
         trigger windows also take seconds, as Prefect writes them.\n\n\
         The file is either [Switchyard's form](#config) or \
         [the original prefect-event-router's](#legacyconfig).\n",
    );
    // Every type reachable from the root, in the order a reader meets them.
    let mut order: Vec<String> = Vec::new();
    let mut queue: std::collections::VecDeque<String> =
        ["Config".into(), "LegacyConfig".into()].into();
    while let Some(name) = queue.pop_front() {
        if order.contains(&name) {
            continue;
        }
        let Some(def) = defs.get(&name) else {
            continue;
        };
        order.push(name);
        let mut found = Vec::new();
        refs_in(def, &mut found);
        for r in found {
            if !order.contains(&r) && !queue.contains(&r) {
                queue.push_back(r);
            }
        }
    }
    for name in &order {
        if let Some(def) = defs.get(name) {
            section(&mut out, &defs, name, def);
        }
    }
    out
}

/// The `$defs` names `schema` refers to, in order.
fn refs_in(schema: &Value, found: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(def_name) {
                found.push(name.to_string());
            }
            for (k, v) in map {
                if k != "$ref" {
                    refs_in(v, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs_in(v, found)),
        _ => {}
    }
}

fn def_name(r: &str) -> Option<&str> {
    r.strip_prefix("#/$defs/")
}

fn anchor(name: &str) -> String {
    name.to_lowercase()
}

fn section(out: &mut String, defs: &Map<String, Value>, name: &str, def: &Value) {
    let _ = write!(out, "\n## {name}\n\n");
    if let Some(d) = description(def) {
        let _ = write!(out, "{}\n\n", d);
    }
    if let Some(props) = def.get("properties").and_then(Value::as_object) {
        fields(out, defs, def, props);
        return;
    }
    let variants = def
        .get("oneOf")
        .or_else(|| def.get("anyOf"))
        .and_then(Value::as_array);
    if let Some(variants) = variants {
        let tagged = variants.iter().all(|v| tag_of(v).is_some());
        if tagged {
            out.push_str("One of, by `type`:\n\n| `type` | settings | |\n|---|---|---|\n");
            for v in variants {
                let tag = tag_of(v).unwrap_or_default();
                let target = v
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(def_name)
                    .map(|n| format!("[{n}](#{})", anchor(n)))
                    .unwrap_or_else(|| format!("[below](#type-{})", anchor(&tag)));
                let _ = writeln!(
                    out,
                    "| `{tag}` | {target} | {} |",
                    cell(&description(v).unwrap_or_default())
                );
            }
            // Settings written inline (not a type of their own) are listed here.
            for v in variants {
                if v.get("$ref").is_none()
                    && let Some(props) = v.get("properties").and_then(Value::as_object)
                    && props.len() > 1
                {
                    let _ = write!(out, "\n### `type: {}`\n\n", tag_of(v).unwrap_or_default());
                    fields(out, defs, v, props);
                }
            }
        } else {
            out.push_str("One of:\n\n");
            let mut nested = Vec::new();
            for v in variants {
                let what = match single_key(v) {
                    Some((key, inner)) => {
                        if inner.get("properties").is_some() {
                            nested.push((key, inner));
                            format!("`{key}:` [its settings](#{}-{key})", anchor(name))
                        } else {
                            format!("`{key}:` {}", type_of(inner))
                        }
                    }
                    None => type_of(v),
                };
                let _ = writeln!(
                    out,
                    "- {what}{}",
                    description(v)
                        .map(|d| format!(": {}", one_line(&d)))
                        .unwrap_or_default()
                );
            }
            for (key, inner) in nested {
                if let Some(props) = inner.get("properties").and_then(Value::as_object) {
                    let _ = write!(out, "\n### {name} {key}\n\n");
                    fields(out, defs, inner, props);
                }
            }
        }
        return;
    }
    let _ = writeln!(out, "Type: {}", type_of(def));
}

fn fields(out: &mut String, defs: &Map<String, Value>, def: &Value, props: &Map<String, Value>) {
    let required: Vec<&str> = def
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| key | type | default | |\n|---|---|---|---|\n");
    for (key, p) in props {
        let default = match p.get("default") {
            Some(v) => format!("`{}`", v),
            None if required.contains(&key.as_str()) => "required".into(),
            // A section of its own: its fields say their defaults.
            None if p
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(def_name)
                .and_then(|n| defs.get(n))
                .is_some_and(|d| d.get("properties").is_some()) =>
            {
                "(its fields)".into()
            }
            None => "—".into(),
        };
        let _ = writeln!(
            out,
            "| `{key}` | {} | {default} | {} |",
            type_of(p),
            cell(&description(p).unwrap_or_default())
        );
    }
}

/// An externally tagged variant: a mapping with one key, and what the key holds.
fn single_key(v: &Value) -> Option<(&str, &Value)> {
    let props = v.get("properties")?.as_object()?;
    let required = v.get("required")?.as_array()?;
    match (props.iter().next(), props.len(), required.len()) {
        (Some((key, inner)), 1, 1) => Some((key.as_str(), inner)),
        _ => None,
    }
}

/// A variant's `type` tag, when it has one.
fn tag_of(v: &Value) -> Option<String> {
    let t = v.get("properties")?.get("type")?;
    t.get("const")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            t.get("enum")?
                .as_array()?
                .first()?
                .as_str()
                .map(str::to_string)
        })
}

fn description(v: &Value) -> Option<String> {
    v.get("description")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text fit for a table cell.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

/// A schema's type, in words, with links to the types it names.
fn type_of(v: &Value) -> String {
    if let Some(name) = v.get("$ref").and_then(Value::as_str).and_then(def_name) {
        return match name {
            "Duration" => "duration".into(),
            "Seconds" => "seconds or duration".into(),
            _ => format!("[{name}](#{})", anchor(name)),
        };
    }
    if let Some(c) = v.get("const") {
        return format!("`{c}`");
    }
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        return e
            .iter()
            .map(|x| {
                format!(
                    "`{}`",
                    x.as_str().map(str::to_string).unwrap_or(x.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = v.get(key).and_then(Value::as_array) {
            let alts: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .map(type_of)
                .collect();
            return alts.join(" or ");
        }
    }
    let kinds: Vec<&str> = match v.get("type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let kinds: Vec<String> = kinds
        .into_iter()
        .filter(|k| *k != "null")
        .map(|k| match k {
            "array" => {
                let item = v.get("items").map(type_of).unwrap_or_else(|| "any".into());
                format!("list of {item}")
            }
            "object" => match v.get("additionalProperties") {
                Some(Value::Object(_)) => {
                    let value = v
                        .get("additionalProperties")
                        .map(type_of)
                        .unwrap_or_default();
                    format!("map of {value}")
                }
                _ => "mapping".into(),
            },
            "integer" => match v.get("minimum").and_then(Value::as_u64) {
                Some(m) if m > 0 => format!("integer ≥ {m}"),
                _ => "integer".into(),
            },
            other => other.to_string(),
        })
        .collect();
    if kinds.is_empty() {
        "any".into()
    } else {
        kinds.join(" or ")
    }
}
