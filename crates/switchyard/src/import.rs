//! `switchyard import`: Prefect automations (the JSON of `GET /api/automations/{id}` or
//! `POST /api/automations/filter`, or `prefect automation inspect --json`) and a
//! `prefect.yaml`'s deployment `triggers:` into Switchyard routes.
//!
//! The trigger moves over as it is (Switchyard reads Prefect's trigger shape); what changes:
//! Prefect's `event.resource` is `event.labels` here (templates are rewritten), `id` fields are
//! dropped, and what cannot be carried over is reported, never silently dropped: actions other
//! than `run-deployment`, `source: inferred` deployments, `match_related`.

use serde_json::{Map, Value, json};

/// The routes and sources (as a YAML document) and warnings.
#[derive(Debug)]
pub struct Imported {
    /// The routes, as JSON values (the caller prints them as YAML).
    pub routes: Vec<Value>,
    /// The sources (from Prefect Cloud webhooks).
    pub sources: Vec<Value>,
    /// What could not be carried over, one line each.
    pub warnings: Vec<String>,
}

/// Converts Prefect automation JSON (one object or a list) or a `prefect.yaml`.
pub fn import(text: &str) -> Result<Imported, String> {
    let doc: Value = serde_norway::from_str(text).map_err(|e| format!("not JSON or YAML: {e}"))?;
    let mut out = Imported {
        routes: Vec::new(),
        sources: Vec::new(),
        warnings: Vec::new(),
    };
    match &doc {
        Value::Array(items) => {
            for (i, a) in items.iter().enumerate() {
                if is_webhook(a) {
                    webhook(a, &format!("[{i}]"), &mut out)?;
                } else {
                    automation(a, &format!("[{i}]"), &mut out)?;
                }
            }
        }
        Value::Object(m) if m.contains_key("trigger") => automation(&doc, "", &mut out)?,
        v if is_webhook(v) => webhook(v, "", &mut out)?,
        Value::Object(m) if m.contains_key("deployments") => prefect_yaml(&doc, &mut out)?,
        _ => {
            return Err(
                "expected a Prefect automation (an object with `trigger` and `actions`), a Prefect Cloud webhook (an object with `template`), a list of them, or a prefect.yaml with `deployments`".into(),
            );
        }
    }
    if out.routes.is_empty() && out.sources.is_empty() {
        return Err(format!(
            "nothing to import: no run-deployment action found{}",
            if out.warnings.is_empty() {
                String::new()
            } else {
                format!(" ({})", out.warnings.join("; "))
            }
        ));
    }
    Ok(out)
}

/// A Prefect Cloud webhook definition (`GET /api/accounts/{a}/workspaces/{w}/webhooks/{id}`):
/// it has a `template` and no `trigger`.
fn is_webhook(v: &Value) -> bool {
    v.get("template").is_some_and(Value::is_string) && v.get("trigger").is_none()
}

/// A Prefect Cloud webhook becomes a webhook source with the same template; Switchyard
/// renders it with Prefect Cloud's variables and semantics.
fn webhook(v: &Value, at: &str, out: &mut Imported) -> Result<(), String> {
    let template = v
        .get("template")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}: a webhook without a `template`"))?;
    crate::template::TextTemplate::compile_lenient(template).map_err(|e| format!("{at}: {e}"))?;
    let title = v.get("name").and_then(Value::as_str).unwrap_or("webhook");
    let name = slug(title);
    let mut hook = Map::new();
    hook.insert("type".into(), json!("webhook"));
    hook.insert("name".into(), json!(name));
    if let Some(d) = v
        .get("description")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
    {
        hook.insert("description".into(), json!(d));
    }
    if v.get("service_account_id").is_some_and(|s| !s.is_null()) {
        let var = format!(
            "SWITCHYARD_HOOK_{}_TOKEN",
            name.to_ascii_uppercase().replace(['-', '.'], "_")
        );
        hook.insert("verify".into(), json!({"bearer": {"token": {"env": var}}}));
        out.warnings.push(format!(
            "{at}: webhook {title:?} was authenticated with a service account's API key in Prefect Cloud; it now takes `Authorization: Bearer` with the token in ${var} (set it, or choose another `verify`)"
        ));
    } else {
        out.warnings.push(format!(
            "{at}: webhook {title:?} accepts anyone who knows its URL; consider `verify` (see the README, \"Putting a webhook on the internet\")"
        ));
    }
    if v.get("enabled") == Some(&Value::Bool(false)) {
        out.warnings.push(format!(
            "{at}: webhook {title:?} is disabled in Prefect Cloud; imported as enabled"
        ));
    }
    hook.insert("template".into(), json!(template));
    out.sources.push(Value::Object(hook));
    Ok(())
}

fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "imported".into() } else { s }
}

/// Prefect's template variables in Switchyard's words: the resource's `id` and `name` are its
/// `prefect.resource.id` / `prefect.resource.name` labels, any other `event.resource[...]` is a
/// label, and `event.event` (the event's name) is `event.name`. (Rewriting `event.resource`
/// to `event.labels` alone made `event.resource.id` read a label called `id`, which no event
/// has: every imported run dead-lettered with "undefined".)
fn prefect_variables(s: &str) -> String {
    fn ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("event.") {
        // Only `event` as a whole word (not `my_event.`).
        let word_start = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !ident(c) && c != '.');
        out.push_str(&rest[..i]);
        let after = &rest[i + "event.".len()..];
        let field: String = after.chars().take_while(|c| ident(*c)).collect();
        let tail = &after[field.len()..];
        if !word_start {
            out.push_str("event.");
            rest = after;
            continue;
        }
        match field.as_str() {
            "resource" => {
                let sub: Option<String> = tail
                    .strip_prefix('.')
                    .map(|t| t.chars().take_while(|c| ident(*c)).collect());
                match sub.as_deref() {
                    Some(k @ ("id" | "name")) => {
                        out.push_str(&format!("event.labels['prefect.resource.{k}']"));
                        rest = &tail[1 + k.len()..];
                    }
                    _ => {
                        out.push_str("event.labels");
                        rest = tail;
                    }
                }
            }
            "event" => {
                out.push_str("event.name");
                rest = tail;
            }
            _ => {
                out.push_str("event.");
                out.push_str(&field);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Prefect's `event.resource` is Switchyard's `event.labels`; Prefect's structured
/// `{"__prefect_kind": "jinja", "template": ...}` values become plain templates (Switchyard
/// renders every string) and `{"__prefect_kind": "json", "value": ...}` their value.
fn rewrite_templates(v: &Value) -> Value {
    if let Some(kind) = v.get("__prefect_kind").and_then(Value::as_str) {
        match (kind, v.get("template"), v.get("value")) {
            ("jinja", Some(t), _) => return rewrite_templates(t),
            ("json", _, Some(value)) => return value.clone(),
            _ => {}
        }
    }
    match v {
        Value::String(s) => Value::String(prefect_variables(s)),
        Value::Array(a) => Value::Array(a.iter().map(rewrite_templates).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), rewrite_templates(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The trigger in Switchyard's accepted subset of Prefect's shape.
fn trigger(t: &Value, at: &str, warnings: &mut Vec<String>) -> Result<Value, String> {
    let obj = t
        .as_object()
        .ok_or_else(|| format!("{at}: expected a trigger object"))?;
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("event");
    let mut out = Map::new();
    out.insert("type".into(), json!(kind));
    let keep: &[&str] = match kind {
        "event" => &[
            "match",
            "expect",
            "after",
            "for_each",
            "posture",
            "threshold",
            "within",
        ],
        "compound" => &["require", "within"],
        "sequence" => &["within"],
        other => {
            return Err(format!(
                "{at}: trigger type {other:?} is not supported (event, compound, sequence)"
            ));
        }
    };
    for k in keep {
        if let Some(v) = obj.get(*k) {
            let empty =
                v.as_object().is_some_and(Map::is_empty) || v.as_array().is_some_and(Vec::is_empty);
            if !empty {
                out.insert((*k).into(), v.clone());
            }
        }
    }
    if let Some(related) = obj.get("match_related")
        && !(related.is_null()
            || related.as_object().is_some_and(Map::is_empty)
            || related.as_array().is_some_and(Vec::is_empty))
    {
        warnings.push(format!(
            "{at}: match_related {related} dropped (Switchyard events carry no related resources; use `match` on labels or `when`)"
        ));
    }
    if let Some(children) = obj.get("triggers").and_then(Value::as_array) {
        let converted = children
            .iter()
            .enumerate()
            .map(|(i, c)| trigger(c, &format!("{at}.triggers[{i}]"), warnings))
            .collect::<Result<Vec<_>, _>>()?;
        out.insert("triggers".into(), Value::Array(converted));
    }
    Ok(Value::Object(out))
}

fn automation(a: &Value, at: &str, out: &mut Imported) -> Result<(), String> {
    let name = a.get("name").and_then(Value::as_str).unwrap_or("imported");
    let at = format!("automation{at} {name:?}");
    if a.get("enabled").and_then(Value::as_bool) == Some(false) {
        out.warnings
            .push(format!("{at}: disabled in Prefect; imported anyway"));
    }
    let t = trigger(
        a.get("trigger").unwrap_or(&Value::Null),
        &format!("{at} trigger"),
        &mut out.warnings,
    )?;
    let actions = a
        .get("actions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut n = 0;
    for (i, action) in actions.iter().enumerate() {
        let kind = action.get("type").and_then(Value::as_str).unwrap_or("?");
        if kind != "run-deployment" {
            out.warnings.push(format!(
                "{at}: actions[{i}] of type {kind:?} not imported (Switchyard runs deployments)"
            ));
            continue;
        }
        let Some(dep) = action.get("deployment_id").and_then(Value::as_str) else {
            out.warnings.push(format!(
                "{at}: actions[{i}] runs an inferred deployment (source: inferred), which needs Prefect's related resources; not imported"
            ));
            continue;
        };
        n += 1;
        let route_name = if n == 1 {
            slug(name)
        } else {
            format!("{}-{n}", slug(name))
        };
        let mut act = Map::new();
        act.insert("type".into(), json!("run_deployment"));
        act.insert("deployment".into(), json!(dep));
        if let Some(p) = action.get("parameters").filter(|p| !p.is_null()) {
            act.insert("parameters".into(), rewrite_templates(p));
        }
        out.routes.push(json!({
            "name": route_name,
            "trigger": t,
            "action": Value::Object(act),
        }));
    }
    Ok(())
}

fn prefect_yaml(doc: &Value, out: &mut Imported) -> Result<(), String> {
    let deployments = doc
        .get("deployments")
        .and_then(Value::as_array)
        .ok_or("`deployments` is not a list")?;
    for (i, d) in deployments.iter().enumerate() {
        let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
        let Some(triggers) = d.get("triggers").and_then(Value::as_array) else {
            continue;
        };
        // Prefect's default flow name is the function's name with '_' as '-'.
        let flow = d
            .get("entrypoint")
            .and_then(Value::as_str)
            .and_then(|e| e.rsplit(':').next())
            .map(|f| f.replace('_', "-"))
            .unwrap_or_default();
        if flow.is_empty() || name.is_empty() {
            out.warnings.push(format!(
                "deployments[{i}]: needs `name` and `entrypoint` to name the deployment; skipped"
            ));
            continue;
        }
        out.warnings.push(format!(
            "deployments[{i}]: flow name {flow:?} assumed from the entrypoint; edit the route if the flow sets its own name"
        ));
        for (j, t) in triggers.iter().enumerate() {
            let at = format!("deployments[{i}].triggers[{j}]");
            if t.get("enabled").and_then(Value::as_bool) == Some(false) {
                out.warnings
                    .push(format!("{at}: disabled; imported anyway"));
            }
            let converted = trigger(t, &at, &mut out.warnings)?;
            let mut act = Map::new();
            act.insert("type".into(), json!("run_deployment"));
            act.insert("deployment".into(), json!(format!("{flow}/{name}")));
            if let Some(p) = t.get("parameters").filter(|p| !p.is_null()) {
                act.insert("parameters".into(), rewrite_templates(p));
            }
            let route = match t.get("name").and_then(Value::as_str) {
                Some(n) => slug(n),
                None => format!("{}-trigger-{j}", slug(name)),
            };
            out.routes.push(json!({
                "name": route,
                "trigger": converted,
                "action": Value::Object(act),
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod variable_tests {
    use super::prefect_variables as v;

    #[test]
    fn prefect_variables_map_to_labels_and_names() {
        assert_eq!(
            v("{{ event.resource.id }}"),
            "{{ event.labels['prefect.resource.id'] }}"
        );
        assert_eq!(
            v("{{ event.resource.name }}-{{ event.resource['region'] }}"),
            "{{ event.labels['prefect.resource.name'] }}-{{ event.labels['region'] }}"
        );
        assert_eq!(
            v("{{ event.resource.get('x') }}"),
            "{{ event.labels.get('x') }}"
        );
        assert_eq!(
            v("{{ event.resource.identifier }}"),
            "{{ event.labels.identifier }}"
        );
        assert_eq!(
            v("{{ event.event }} {{ event.payload.n }}"),
            "{{ event.name }} {{ event.payload.n }}"
        );
        assert_eq!(
            v("{{ my_event.resource.id }}"),
            "{{ my_event.resource.id }}"
        );
        assert_eq!(v("no templates"), "no templates");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_automation_becomes_a_route_that_loads() {
        let automation = json!({
            "id": "0d1a…", "name": "Three failures in 10 minutes", "enabled": true,
            "trigger": {"type": "event", "id": "x", "match": {"prefect.resource.id": "orders.*"},
                        "match_related": {}, "after": [], "expect": ["order.failed"],
                        "for_each": ["prefect.resource.id"], "posture": "Reactive",
                        "threshold": 3, "within": 600},
            "actions": [
                {"type": "run-deployment", "source": "selected", "deployment_id": "9f0c8a1e-0000-4000-8000-000000000001",
                 "parameters": {"order": "{{ event.resource['prefect.resource.id'] }}",
                                "n": {"__prefect_kind": "jinja", "template": "{{ event.payload.n }}"}},
                 "job_variables": {}},
                {"type": "send-notification", "block_document_id": "b"}
            ]
        });
        let got = import(&automation.to_string()).unwrap();
        assert_eq!(got.routes.len(), 1);
        let r = &got.routes[0];
        assert_eq!(r["name"], "three-failures-in-10-minutes");
        assert_eq!(r["trigger"]["threshold"], 3);
        assert!(r["trigger"].get("id").is_none() && r["trigger"].get("after").is_none());
        assert_eq!(
            r["action"]["parameters"]["order"],
            "{{ event.labels['prefect.resource.id'] }}"
        );
        assert!(
            got.warnings.iter().any(|w| w.contains("send-notification")),
            "{:?}",
            got.warnings
        );
        // The result is a valid Switchyard config.
        let config =
            json!({"sources": [{"type": "webhook", "name": "hook"}], "routes": got.routes});
        let loaded = crate::routes::load_str(
            std::path::Path::new("imported.yaml"),
            &config.to_string(),
            |_| None,
        );
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }

    #[test]
    fn prefect_yaml_triggers_become_routes() {
        let yaml = r#"
deployments:
  - name: nightly
    entrypoint: flows/etl.py:load_dataset
    triggers:
      - type: compound
        require: all
        within: 3600
        triggers:
          - {type: event, expect: [file.landed]}
          - {type: event, expect: [schema.ready]}
        parameters: {dataset: "{{ event.payload.dataset_id }}"}
"#;
        let got = import(yaml).unwrap();
        assert_eq!(
            got.routes[0]["action"]["deployment"],
            "load-dataset/nightly"
        );
        assert_eq!(
            got.routes[0]["trigger"]["triggers"][1]["expect"][0],
            "schema.ready"
        );
    }

    #[test]
    fn what_cannot_move_over_is_an_error_or_a_warning() {
        let inferred = json!({"name": "x", "trigger": {"type": "event"},
            "actions": [{"type": "run-deployment", "source": "inferred"}]});
        let e = import(&inferred.to_string()).unwrap_err();
        assert!(e.contains("inferred"), "{e}");
        assert!(import("[1, 2]").is_err());
        assert!(
            import("{}")
                .unwrap_err()
                .contains("expected a Prefect automation")
        );
    }
}
