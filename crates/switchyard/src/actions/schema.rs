//! Parameters against a deployment's parameter schema: per event before the call (so a bad
//! parameter is a dead letter with the schema's words, not a 409), and statically at `check`
//! and start-up for what a config fixes without the event.

use serde_json::{Map, Value};

/// Problems with `params` under `schema`, at most five, each `"/path: message"`. A schema
/// that does not compile is not held against the event (Prefect will judge).
pub fn violations(schema: &Value, params: &Value) -> Vec<String> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = %e, "deployment parameter schema does not compile; not checked");
            return Vec::new();
        }
    };
    validator
        .iter_errors(params)
        .take(5)
        .map(|e| {
            let path = e.instance_path().to_string();
            format!("{}: {e}", if path.is_empty() { "/" } else { &path })
        })
        .collect()
}

/// What can be told about a route's parameters before any event: required parameters that are
/// not set, names the deployment does not declare, literal values the schema rejects.
/// `params` is the configured map (templates unrendered).
pub fn static_problems(schema: &Value, params: &Value) -> Vec<String> {
    let Some(params) = params.as_object() else {
        return Vec::new(); // one template renders the whole map: nothing to see statically
    };
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let has_default = props.get(r).is_some_and(|p| p.get("default").is_some());
        if !params.contains_key(r) && !has_default {
            out.push(format!(
                "parameter {r:?} is required by the deployment and not set"
            ));
        }
    }
    for k in params.keys() {
        if !props.is_empty() && !props.contains_key(k) {
            out.push(format!(
                "parameter {k:?} is not one of the deployment's ({})",
                props.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    // Literal values (no template anywhere inside) must satisfy their property's schema.
    let literals: Map<String, Value> = params
        .iter()
        .filter(|(k, v)| props.contains_key(*k) && !has_template(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !literals.is_empty() {
        let mut partial = schema.clone();
        if let Some(o) = partial.as_object_mut() {
            o.remove("required");
        }
        out.extend(violations(&partial, &Value::Object(literals)));
    }
    out
}

fn has_template(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("{{") || s.contains("{%"),
        Value::Array(a) => a.iter().any(has_template),
        Value::Object(o) => o.values().any(has_template),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        // As Prefect generates them: definitions, $ref, defaults, positions.
        json!({
            "type": "object", "title": "Parameters",
            "properties": {
                "n": {"type": "integer", "position": 0},
                "mode": {"$ref": "#/definitions/Mode", "default": "fast", "position": 1},
                "tags": {"type": "array", "items": {"type": "string"}, "position": 2}
            },
            "required": ["n"],
            "definitions": {"Mode": {"enum": ["fast", "slow"], "type": "string"}}
        })
    }

    #[test]
    fn rendered_parameters_are_checked_with_refs_and_paths() {
        assert!(violations(&schema(), &json!({"n": 3, "mode": "slow"})).is_empty());
        let v = violations(
            &schema(),
            &json!({"n": "three", "mode": "medium", "tags": [1]}),
        );
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(
            v.iter()
                .any(|e| e.starts_with("/n: ") && e.contains("integer")),
            "{v:?}"
        );
        assert!(v.iter().any(|e| e.starts_with("/mode: ")), "{v:?}");
        assert!(v.iter().any(|e| e.starts_with("/tags/0: ")), "{v:?}");
        assert!(
            violations(&schema(), &json!({}))
                .iter()
                .any(|e| e.contains("\"n\" is a required property"))
        );
    }

    #[test]
    fn static_check_sees_missing_unknown_and_bad_literals_not_templates() {
        let p = static_problems(
            &schema(),
            &json!({"mode": "medium", "extra": 1, "tags": "{{ event.payload.tags }}"}),
        );
        assert!(p.iter().any(|e| e.contains("\"n\" is required")), "{p:?}");
        assert!(
            p.iter().any(|e| e.contains("\"extra\" is not one of")),
            "{p:?}"
        );
        assert!(p.iter().any(|e| e.starts_with("/mode: ")), "{p:?}");
        assert!(!p.iter().any(|e| e.starts_with("/tags")), "{p:?}");
        assert!(static_problems(&schema(), &json!({"n": "{{ event.payload.n }}"})).is_empty());
    }
}
