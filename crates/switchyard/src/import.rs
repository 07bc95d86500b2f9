//! `switchyard import`: Prefect automations (the JSON of `GET /api/automations/{id}` or
//! `POST /api/automations/filter`, or `prefect automation inspect --json`) and a
//! `prefect.yaml`'s deployment `triggers:` into Switchyard routes.
//!
//! The trigger moves over as it is (Switchyard reads Prefect's trigger shape); what changes:
//! Prefect's `event.resource` is `event.labels` here (templates are rewritten), `id` fields are
//! dropped, and what cannot be carried over is reported, never silently dropped: actions other
//! than `run-deployment`, `source: inferred` deployments, `match_related`, and template
//! variables Switchyard does not have (`flow_run`, `event.related`, ...).
//!
//! The output is a config that runs: automations listen to a `prefect-events` webhook that
//! takes Prefect events as `POST /api/events` does (or to the Prefect Cloud webhooks imported
//! with them), keys are in a reading order (`name`, `from`, `trigger`, `action`), and an
//! automation's description is kept as a comment above its route.

use serde_json::{Map, Value, json};

/// The routes and sources (as a YAML document) and warnings.
#[derive(Debug)]
pub struct Imported {
    /// The routes, as JSON values ([`Imported::to_yaml`] prints them).
    pub routes: Vec<Value>,
    /// Each route's description (the automation's), printed as a comment above it.
    pub descriptions: Vec<Option<String>>,
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
        descriptions: Vec::new(),
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
    listen_to_sources(&mut out);
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
        "event" => &EVENT_TRIGGER_KEYS,
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
            let p = parameters(p, &format!("{at}: actions[{i}].parameters"), out);
            act.insert("parameters".into(), p);
        }
        out.routes.push(json!({
            "name": route_name,
            "trigger": t,
            "action": Value::Object(act),
        }));
        out.descriptions.push(description(a));
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
                let p = parameters(p, &format!("{at}.parameters"), out);
                act.insert("parameters".into(), p);
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
            out.descriptions.push(description(t));
        }
    }
    Ok(())
}

/// An automation's (or a prefect.yaml trigger's) description, when it has one.
fn description(v: &Value) -> Option<String> {
    v.get("description")
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
        .map(str::to_string)
}

/// An action's parameters in Switchyard's words, with a warning for each variable that
/// cannot be mapped.
fn parameters(p: &Value, at: &str, out: &mut Imported) -> Value {
    let p = rewrite_templates(p);
    unavailable_variables(&p, at, out);
    p
}

/// The source imported automations listen to when no Prefect Cloud webhook came with them.
pub const PREFECT_EVENTS: &str = "prefect-events";

/// Routes listen to the imported Prefect Cloud webhooks, or, without any, to a webhook that
/// takes Prefect events as Prefect's own `POST /api/events` does, so the output runs as it is.
fn listen_to_sources(out: &mut Imported) {
    if out.routes.is_empty() {
        return;
    }
    if out.sources.is_empty() {
        out.sources.push(json!({
            "type": "webhook",
            "name": PREFECT_EVENTS,
            "description": "Prefect events (`event`, `resource`, `payload`), as Prefect's POST /api/events takes them; point your emitters here, or change the routes' `from`",
            "format": "prefect_event",
        }));
    }
    let names: Vec<Value> = out
        .sources
        .iter()
        .filter_map(|s| s.get("name").cloned())
        .collect();
    for r in &mut out.routes {
        if let Some(m) = r.as_object_mut() {
            m.insert("from".into(), Value::Array(names.clone()));
        }
    }
}

/// Warns about each template variable Switchyard has no value for (Prefect resolves
/// `flow_run`, `deployment`, `flow`, `work_pool`... from an event's related resources, which
/// Switchyard events do not carry): such a template fails to render, and the event is a dead
/// letter, so the user has to know before running it.
fn unavailable_variables(v: &Value, at: &str, out: &mut Imported) {
    let mut texts = Vec::new();
    strings(v, &mut texts);
    // The fields templates see on `event`: the event as it is serialized into their context.
    let fields: Vec<String> =
        serde_json::to_value(switchyard_core::Event::builder("", "", Value::Null).build())
            .ok()
            .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()))
            .unwrap_or_default();
    let env = minijinja::Environment::new();
    let mut missing = std::collections::BTreeSet::new();
    for text in texts {
        let Ok(t) = env.template_from_str(text) else {
            continue; // reported when the config loads, with the reason
        };
        for name in t.undeclared_variables(true) {
            let mut parts = name.split('.');
            let root = parts.next().unwrap_or_default();
            let field = parts.next();
            let ok = match root {
                "event" => field.is_none_or(|f| fields.iter().any(|k| k == f)),
                "events" | "trigger" => true,
                _ => false,
            };
            if !ok {
                missing.insert(match (root, field) {
                    ("event", Some(f)) => format!("event.{f}"),
                    _ => root.to_string(),
                });
            }
        }
    }
    for name in missing {
        let why = match name.as_str() {
            "event.related" => "Switchyard events carry no related resources",
            "event.follows" => "Switchyard events carry no `follows`",
            "flow_run" | "flow" | "deployment" | "work_pool" | "work_queue" => {
                "Prefect looks it up from the event's related resources, which Switchyard events do not carry"
            }
            "automation" => {
                "routes have no automation object (the route's name is `trigger.route` in a trigger's firing)"
            }
            "metric" => "metric triggers are not supported",
            _ => {
                "not a variable Switchyard templates have (they have `event`, `events` and `trigger`)"
            }
        };
        out.warnings.push(format!(
            "{at} uses `{name}`, which cannot be mapped: {why}; the template fails to render (the event is dead-lettered) until you change it"
        ));
    }
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// What an event trigger keeps from Prefect's, in the order it is printed.
const EVENT_TRIGGER_KEYS: [&str; 7] = [
    "match",
    "expect",
    "after",
    "for_each",
    "posture",
    "threshold",
    "within",
];

/// Keys in the order a reader expects (what a thing is, where from, when, what it does),
/// with an event trigger's keys between `batch` and `require`; any other key after them,
/// alphabetically.
const KEYS_BEFORE: [&str; 9] = [
    "type",
    "name",
    "description",
    "from",
    "format",
    "verify",
    "when",
    "trigger",
    "batch",
];
const KEYS_AFTER: [&str; 7] = [
    "require",
    "key",
    "triggers",
    "action",
    "deployment",
    "flow_run_name",
    "parameters",
];

/// Where `key` goes among [`KEYS_BEFORE`], [`EVENT_TRIGGER_KEYS`], [`KEYS_AFTER`].
fn key_rank(key: &str) -> usize {
    KEYS_BEFORE
        .iter()
        .chain(&EVENT_TRIGGER_KEYS)
        .chain(&KEYS_AFTER)
        .position(|k| *k == key)
        .unwrap_or(usize::MAX)
}

/// `v` as YAML, its keys in [`key_rank`] order (a route's parameters and labels are the user's:
/// alphabetical).
fn ordered(v: &Value) -> serde_norway::Value {
    ordered_as(v, true)
}

fn ordered_as(v: &Value, config_keys: bool) -> serde_norway::Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| {
                let rank = if config_keys { key_rank(k) } else { usize::MAX };
                (rank, k.as_str())
            });
            let mut out = serde_norway::Mapping::new();
            for k in keys {
                let inner = config_keys && !matches!(k.as_str(), "parameters" | "match");
                out.insert(
                    serde_norway::Value::String(k.clone()),
                    ordered_as(&m[k], inner),
                );
            }
            serde_norway::Value::Mapping(out)
        }
        Value::Array(a) => {
            serde_norway::Value::Sequence(a.iter().map(|x| ordered_as(x, config_keys)).collect())
        }
        other => serde_norway::to_value(other).unwrap_or(serde_norway::Value::Null),
    }
}

/// `- ` before the first line of an item's YAML, its indent before the others.
fn list_item(out: &mut String, yaml: &str) {
    for (i, line) in yaml.lines().enumerate() {
        out.push_str(if i == 0 { "  - " } else { "    " });
        out.push_str(line);
        out.push('\n');
    }
}

impl Imported {
    /// The config as YAML: a header naming `origin`, the sources, then the routes, each under
    /// its description as a comment.
    pub fn to_yaml(&self, origin: &str) -> Result<String, String> {
        let yaml = |v: &Value| serde_norway::to_string(&ordered(v)).map_err(|e| e.to_string());
        let mut out = format!(
            "# Imported from {origin} by `switchyard import`.\n# Check each route's `from:` and run `switchyard check --online` on this file.\n"
        );
        if !self.sources.is_empty() {
            out.push_str("sources:\n");
            for s in &self.sources {
                list_item(&mut out, &yaml(s)?);
            }
        }
        if !self.routes.is_empty() {
            out.push_str("routes:\n");
            for (i, r) in self.routes.iter().enumerate() {
                if let Some(Some(d)) = self.descriptions.get(i) {
                    for line in d.lines() {
                        out.push_str(
                            &format!("  # {}\n", line.trim_end()).replace("  # \n", "  #\n"),
                        );
                    }
                }
                list_item(&mut out, &yaml(r)?);
            }
        }
        Ok(out)
    }
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
        let config = json!({"sources": got.sources, "routes": got.routes});
        let loaded = crate::routes::load_str(
            std::path::Path::new("imported.yaml"),
            &config.to_string(),
            |_| None,
        );
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }

    /// Automations shaped as Prefect's documentation shows them (reactive with a resource
    /// match, proactive heartbeat, compound, sequence), as Prefect's API returns them: each
    /// imports into a config that loads as it is, with its trigger unchanged, in reading
    /// order, and its description as a comment.
    #[test]
    fn documented_automations_round_trip() {
        let dep = "9f0c8a1e-0000-4000-8000-000000000001";
        let action = |params: Value| {
            json!([{"type": "run-deployment", "source": "selected", "deployment_id": dep,
                    "parameters": params, "job_variables": {}}])
        };
        let automations = json!([
            {"id": "a1", "name": "Process new files", "description": "When a file lands in the bucket",
             "enabled": true,
             "trigger": {"type": "event", "id": "t1", "match": {"prefect.resource.id": "s3.bucket.*"},
                         "match_related": {}, "after": [], "expect": ["external.file.landed"],
                         "for_each": [], "posture": "Reactive", "threshold": 1, "within": 0},
             "actions": action(json!({"path": "{{ event.resource.name }}",
                                      "bucket": "{{ event.resource['bucket'] }}",
                                      "at": "{{ event.occurred }}", "what": "{{ event.event }}"}))},
            {"id": "a2", "name": "Silent worker", "description": "",
             "trigger": {"type": "event", "match": {"prefect.resource.id": "worker.*"},
                         "after": ["worker.heartbeat"], "expect": ["worker.heartbeat"],
                         "for_each": ["prefect.resource.id"], "posture": "Proactive",
                         "threshold": 1, "within": 600},
             "actions": action(json!({"worker": "{{ event.resource.id }}"}))},
            {"id": "a3", "name": "Both halves", "trigger": {"type": "compound", "require": "all",
                "within": 3600, "triggers": [
                    {"type": "event", "expect": ["file.landed"], "posture": "Reactive", "threshold": 1, "within": 0},
                    {"type": "event", "expect": ["schema.ready"], "posture": "Reactive", "threshold": 1, "within": 0}]},
             "actions": action(json!({"n": {"__prefect_kind": "json", "value": 3}}))},
            {"id": "a4", "name": "In order", "trigger": {"type": "sequence", "within": 300, "triggers": [
                    {"type": "event", "expect": ["build.started"], "threshold": 1, "within": 0},
                    {"type": "event", "expect": ["build.finished"], "threshold": 1, "within": 0}]},
             "actions": action(json!({}))}
        ]);
        let got = import(&automations.to_string()).unwrap();
        assert_eq!(got.routes.len(), 4);
        assert!(got.warnings.is_empty(), "{:?}", got.warnings);
        let yaml = got.to_yaml("automations.json").unwrap();
        // Reading order, and the description above its route.
        let at = |needle: &str| {
            yaml.find(needle)
                .unwrap_or_else(|| panic!("{needle} in\n{yaml}"))
        };
        assert!(
            at("# When a file lands in the bucket\n  - name: process-new-files") < at("    from:")
        );
        assert!(at("    from:") < at("    trigger:") && at("    trigger:") < at("    action:"));
        assert!(at("      type: event\n") < at("      match:"));
        // It loads as a config, as printed.
        let loaded =
            crate::routes::load_str(std::path::Path::new("imported.yaml"), &yaml, |_| None)
                .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(loaded.routes.len(), 4);
        let doc: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(doc["sources"][0]["name"], PREFECT_EVENTS);
        assert_eq!(doc["sources"][0]["format"], "prefect_event");
        assert_eq!(doc["routes"][1]["from"], json!([PREFECT_EVENTS]));
        // The trigger is Prefect's, less ids and empty values.
        for (i, a) in automations.as_array().unwrap().iter().enumerate() {
            let mut want = a["trigger"].clone();
            strip(&mut want);
            assert_eq!(doc["routes"][i]["trigger"], want, "{}", a["name"]);
        }
        let p = &doc["routes"][0]["action"]["parameters"];
        assert_eq!(p["path"], "{{ event.labels['prefect.resource.name'] }}");
        assert_eq!(p["bucket"], "{{ event.labels['bucket'] }}");
        assert_eq!(p["at"], "{{ event.occurred }}");
        assert_eq!(p["what"], "{{ event.name }}");
        assert_eq!(doc["routes"][2]["action"]["parameters"]["n"], 3);
        assert_eq!(doc["routes"][1]["trigger"]["posture"], "Proactive");
    }

    /// Prefect's ids and empty values, which the import leaves out.
    fn strip(v: &mut Value) {
        if let Some(m) = v.as_object_mut() {
            m.remove("id");
            m.retain(|_, x| {
                !(x.as_object().is_some_and(Map::is_empty)
                    || x.as_array().is_some_and(Vec::is_empty))
            });
            m.values_mut().for_each(strip);
        } else if let Some(a) = v.as_array_mut() {
            a.iter_mut().for_each(strip);
        }
    }

    #[test]
    fn variables_without_a_switchyard_value_are_named() {
        let a = json!({"name": "x", "trigger": {"type": "event", "expect": ["a"]},
            "actions": [{"type": "run-deployment", "source": "selected", "deployment_id": "d",
                "parameters": {"run": "{{ flow_run.name }}", "rel": "{{ event.related[0].id }}",
                               "ok": "{{ event.payload.n }} {{ event.resource.id }} {{ event.id }}"}}]});
        let got = import(&a.to_string()).unwrap();
        let all = got.warnings.join("\n");
        assert!(all.contains("`flow_run`, which cannot be mapped"), "{all}");
        assert!(
            all.contains("`event.related`, which cannot be mapped"),
            "{all}"
        );
        assert_eq!(got.warnings.len(), 2, "{all}");
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
