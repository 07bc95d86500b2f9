//! Jinja templating (minijinja) over the event.
//!
//! Templates see `event` with `id`, `source`, `name`, `occurred`, `received` (RFC 3339
//! strings), `payload` and `labels`.
//!
//! * A string that is exactly one `{{ expression }}` keeps the expression's JSON type:
//!   `"{{ event.payload.n }}"` with `n: 3` renders the integer `3`, an object stays an
//!   object.
//! * Any other string renders as text: `"order-{{ event.payload.id }}"`.
//! * Parameters render strictly: a missing field is an error naming the expression, never an
//!   empty string passed to a flow.
//! * Python string and dict methods work as in Prefect's Jinja (`.startswith()`, `.lower()`,
//!   `.get()`, ...).
//! * `when` predicates are lenient: a missing field is simply undefined (falsy), so
//!   `event.payload.amount > 100` is false, not an error, for events without `amount`.
//!
//! **Budgets.** Every evaluation runs on a [`Budget`]: at most `fuel` (minijinja 3's fuel: one
//! per instruction and about one per 64 bytes of data a template builds or walks, so neither
//! a loop bounded by the payload nor one huge value can run for ever or fill memory) and at
//! most `max_output_bytes` of output. A template that exceeds either fails with a reason that says
//! so; the caller dead-letters the event. Evaluations that the router runs per event go
//! through [`sandbox`], a small pool of threads of its own, so even the most expensive single
//! instruction never holds up the async runtime.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};

use minijinja::{Environment, Expression, UndefinedBehavior, Value as JinjaValue};
use serde_json::{Map, Value};
use switchyard_core::Event;

/// Limits on one template evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Fuel per evaluation (a `when`, a key, one parameter set): instructions and data.
    pub fuel: u64,
    /// Largest rendered text or value, in bytes (as JSON for values).
    pub max_output_bytes: usize,
}

/// Default fuel per evaluation: about a millisecond of work or 6 MB of data, far above what a
/// parameter template needs (a loop over a thousand items takes ~10k).
pub const DEFAULT_FUEL: u64 = 100_000;
/// Default largest rendered output: 1 MiB.
pub const DEFAULT_MAX_OUTPUT: usize = 1 << 20;

impl Default for Budget {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            max_output_bytes: DEFAULT_MAX_OUTPUT,
        }
    }
}

static BUDGET: RwLock<Budget> = RwLock::new(Budget {
    fuel: DEFAULT_FUEL,
    max_output_bytes: DEFAULT_MAX_OUTPUT,
});

/// Sets the budget that templates compiled from now on evaluate under (the config's
/// `templates` section sets it before its routes are compiled).
pub fn set_budget(b: Budget) {
    *BUDGET.write().unwrap_or_else(PoisonError::into_inner) = b;
}

fn budget() -> Budget {
    *BUDGET.read().unwrap_or_else(PoisonError::into_inner)
}

struct Envs {
    strict: Environment<'static>,
    lenient: Environment<'static>,
}

fn environment(undefined: UndefinedBehavior, fuel: u64) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(undefined);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_fuel(Some(fuel));
    env.add_filter("from_cloud_event", from_cloud_event);
    env
}

/// Prefect Cloud's `from_cloud_event` filter: `{{ body|from_cloud_event(headers) }}` renders
/// the Prefect event (as JSON) of a CloudEvent sent in structured mode (the body) or binary
/// mode (`ce-*` headers, the body as its data).
fn from_cloud_event(
    body: JinjaValue,
    headers: Option<JinjaValue>,
) -> Result<String, minijinja::Error> {
    let invalid = |m: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, m);
    let body = serde_json::to_value(&body).map_err(|e| invalid(e.to_string()))?;
    let mut map = std::collections::BTreeMap::new();
    if let Some(h) = headers
        && let Ok(keys) = h.try_iter()
    {
        for k in keys {
            if let (Some(name), Ok(v)) = (k.as_str(), h.get_item(&k))
                && let Some(v) = v.as_str()
            {
                map.insert(name.to_ascii_lowercase(), v.to_string());
            }
        }
    }
    let ce = if body.get("specversion").is_some() {
        crate::cloudevents::CloudEvent::from_structured(body)
    } else {
        let ct = map.get("content-type").cloned();
        crate::cloudevents::CloudEvent::from_binary(&map, ct.as_deref(), body)
            .unwrap_or_else(|| Err("not a CloudEvent: no specversion".into()))
    }
    .map_err(invalid)?;
    serde_json::to_string(&ce.to_prefect_event()).map_err(|e| invalid(e.to_string()))
}

/// HTTP headers for templates: looked up in any case (`headers['Content-Length']`).
#[derive(Debug)]
struct Headers(std::collections::BTreeMap<String, String>);

impl minijinja::value::Object for Headers {
    fn get_value(self: &std::sync::Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        let k = key.as_str()?.to_ascii_lowercase();
        self.0.get(&k).map(|v| JinjaValue::from(v.as_str()))
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(
            self.0
                .keys()
                .map(|k| JinjaValue::from(k.as_str()))
                .collect(),
        )
    }
}

/// The context of a webhook `template`: `method`, `headers` (any case), `body`, `query`,
/// `raw_body`.
pub fn webhook_context(
    method: &str,
    headers: std::collections::BTreeMap<String, String>,
    body: serde_json::Value,
    query: serde_json::Value,
    raw_body: String,
) -> JinjaValue {
    minijinja::context! {
        method => method.to_ascii_uppercase(),
        headers => JinjaValue::from_object(Headers(headers)),
        body => crate::template::value(&body),
        query => crate::template::value(&query),
        raw_body => raw_body,
    }
}

/// The environments for a fuel level. Compiled expressions borrow their environment for
/// their whole life, so each level's pair is made once and kept (a process sees one or two).
fn envs(fuel: u64) -> &'static Envs {
    static ALL: LazyLock<Mutex<HashMap<u64, &'static Envs>>> = LazyLock::new(Default::default);
    let mut all = ALL.lock().unwrap_or_else(PoisonError::into_inner);
    all.entry(fuel).or_insert_with(|| {
        Box::leak(Box::new(Envs {
            strict: environment(UndefinedBehavior::Strict, fuel),
            lenient: environment(UndefinedBehavior::Chainable, fuel),
        }))
    })
}

/// An `io::Write` into memory that refuses to grow past a limit, so an oversized render stops
/// where it crosses the limit instead of after.
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            return Err(std::io::Error::other("output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_large(max: usize) -> String {
    format!("output is over templates.max_output_bytes ({max} bytes)")
}

/// Checks that a value's JSON form fits in `max` bytes without building it.
fn check_size(v: &JinjaValue, max: usize) -> Result<(), String> {
    let mut sink = Capped {
        buf: Vec::new(),
        max,
    };
    match serde_json::to_writer(&mut sink, v) {
        Err(e) if e.is_io() => Err(too_large(max)),
        _ => Ok(()),
    }
}

/// Runs `f` on the evaluation pool and waits for it; see the module docs. The pool has
/// [`set_sandbox_threads`] threads (default 2); a job that panics is reported as an error,
/// and the thread survives it.
pub async fn sandbox<R, F>(f: F) -> Result<R, String>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let pool = pool();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r.map_err(|_| "template evaluation panicked".to_string()));
    });
    if pool.send(job).await.is_err() {
        return Err("the template evaluation pool is gone".into());
    }
    rx.await
        .map_err(|_| "the template evaluation pool is gone".to_string())?
}

type Job = Box<dyn FnOnce() + Send>;

static THREADS: RwLock<usize> = RwLock::new(2);

/// Threads of the evaluation pool; takes effect if called before the first evaluation.
pub fn set_sandbox_threads(n: usize) {
    *THREADS.write().unwrap_or_else(PoisonError::into_inner) = n.max(1);
}

fn pool() -> &'static tokio::sync::mpsc::Sender<Job> {
    static POOL: LazyLock<tokio::sync::mpsc::Sender<Job>> = LazyLock::new(|| {
        let n = *THREADS.read().unwrap_or_else(PoisonError::into_inner);
        // Bounded: callers wait (the engine's consumers are few) rather than queue work.
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(64);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("template-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .blocking_recv();
                        match job {
                            Some(job) => job(),
                            None => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a template evaluation thread");
            }
        }
        tx
    });
    &POOL
}

/// A serialisable value as templates see it.
pub fn value<T: serde::Serialize>(v: T) -> JinjaValue {
    JinjaValue::from(minijinja::value::Serde(v))
}

/// The template context for one event.
pub fn context(event: &Event) -> JinjaValue {
    minijinja::context! { event => crate::template::value(event) }
}

fn describe(e: &minijinja::Error) -> String {
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        return "ran out of fuel: more work (instructions and data) than templates.fuel allows"
            .into();
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Runs the template engine's compiler, turning a panic inside it into an error: minijinja
/// 2.24 panics on some malformed input ("empty lexer stack" for `payloa }}]o`, found by the
/// fuzz target), and a config must get an error, not a crash.
fn guarded<T>(source: &str, f: impl FnOnce() -> Result<T, minijinja::Error>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| describe(&e)),
        Err(_) => Err(format!("the template engine cannot parse {source:?}")),
    }
}

/// What a template names that the engine does not have: `unknown filter "nosuchfilter"`,
/// `unknown test ...`, `unknown function ...`. Found in the compiled instructions, so every
/// branch counts, not only those an event would reach; a function the template defines
/// itself (a macro, a `set`) is not one. (minijinja looks filters up only when it applies
/// them, so without this a typo passed `check` and failed on every event.)
fn unknown_names(env: &'static Environment<'static>, template: &str) -> Result<(), String> {
    use minijinja::machinery::{Instruction, get_compiled_template};
    let Ok(t) = env.template_from_str(template) else {
        return Ok(()); // the caller reports a syntax error on its own
    };
    let compiled = get_compiled_template(&t);
    let mut used: Vec<(&str, &str)> = Vec::new();
    let mut local: Vec<&str> = Vec::new();
    let all = std::iter::once(&compiled.instructions).chain(compiled.blocks.values());
    for instructions in all {
        for i in 0.. {
            let Some(instr) = instructions.get(i) else {
                break;
            };
            match instr {
                Instruction::ApplyFilter(name, ..) => used.push(("filter", name)),
                Instruction::PerformTest(name, ..) => used.push(("test", name)),
                Instruction::CallFunction(name, _) => used.push(("function", name)),
                Instruction::StoreLocal(name) => local.push(name),
                _ => {}
            }
        }
    }
    used.sort_unstable();
    used.dedup();
    for (kind, name) in used {
        if kind == "function" && local.contains(&name) {
            continue;
        }
        // Only a plain name can be probed (and only a plain name can be one).
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let (probe, missing) = match kind {
            "filter" => (
                format!("{{{{ none|{name} }}}}"),
                minijinja::ErrorKind::UnknownFilter,
            ),
            "test" => (
                format!("{{{{ none is {name} }}}}"),
                minijinja::ErrorKind::UnknownTest,
            ),
            _ => (
                format!("{{{{ {name}() }}}}"),
                minijinja::ErrorKind::UnknownFunction,
            ),
        };
        let probed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            env.render_str(&probe, minijinja::context! {})
        }));
        if matches!(probed, Ok(Err(e)) if e.kind() == missing) {
            return Err(format!("unknown {kind} {name:?}"));
        }
    }
    Ok(())
}

/// A compiled `when` expression.
pub struct Predicate {
    source: String,
    expr: Expression<'static, 'static>,
    /// `Some` for a literal `true` or `false` (a route switched off with `when: "false"`):
    /// known without a context, so none is built.
    constant: Option<bool>,
}

// Compiled expressions hold only shared, immutable data.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Predicate>();
    assert_send_sync::<ValueTemplate>();
};

impl std::fmt::Debug for Predicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Predicate({:?})", self.source)
    }
}

impl Predicate {
    /// Compiles an expression such as `event.payload.amount > 100`.
    pub fn compile(source: &str) -> Result<Self, String> {
        let env = &envs(budget().fuel).lenient;
        let expr = guarded(source, || env.compile_expression_owned(source.to_string()))
            .map_err(|e| format!("invalid expression {source:?}: {e}"))?;
        unknown_names(env, &format!("{{{{ {source} }}}}"))
            .map_err(|e| format!("invalid expression {source:?}: {e}"))?;
        let constant = match source.trim() {
            "true" | "True" => Some(true),
            "false" | "False" => Some(false),
            _ => None,
        };
        Ok(Self {
            source: source.to_string(),
            expr,
            constant,
        })
    }

    /// The value of a literal `true` or `false`, which needs no context.
    pub fn constant(&self) -> Option<bool> {
        self.constant
    }

    /// The expression text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The event names this predicate can be true for, when the event's name is all it tests:
    /// `event.name == 'x'` (either way round) or `event.name in ['x', 'y']`. `None` for
    /// anything else. Routes use it to be delivered only those names (see
    /// [`crate::routes::Route::topics`]); the predicate is still evaluated.
    pub fn exact_names(&self) -> Option<Vec<String>> {
        names_tested(&self.source)
    }

    /// Whether the expression is truthy for this context.
    pub fn eval(&self, ctx: &JinjaValue) -> Result<bool, String> {
        self.expr
            .eval(ctx)
            .map(|v| v.is_true())
            .map_err(|e| format!("`when` {:?} failed: {}", self.source, describe(&e)))
    }
}

const EVENT_NAME: &str = "event.name";

/// See [`Predicate::exact_names`]. Anything this does not recognise for certain is `None`
/// (the route then sees every event of its sources), so it errs on the side of delivery.
fn names_tested(source: &str) -> Option<Vec<String>> {
    let s = source.trim();
    if let Some(rest) = s.strip_prefix(EVENT_NAME).map(str::trim_start) {
        if let Some(lit) = rest.strip_prefix("==") {
            return string_literal(lit.trim()).map(|n| vec![n]);
        }
        // Only a list: `in ('x')` is a substring test in Jinja, not a one-element tuple.
        let list = rest.strip_prefix("in")?.trim_start();
        let inner = list.strip_prefix('[')?.strip_suffix(']')?;
        let names = inner
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(string_literal)
            .collect::<Option<Vec<_>>>()?;
        return (!names.is_empty()).then_some(names);
    }
    let (lit, rest) = s.split_once("==")?;
    if rest.trim() != EVENT_NAME {
        return None;
    }
    string_literal(lit.trim()).map(|n| vec![n])
}

/// A whole quoted string with no escapes or quotes inside, unquoted.
fn string_literal(s: &str) -> Option<String> {
    let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = s.strip_prefix(quote)?.strip_suffix(quote)?;
    (!inner.contains(['\\', '\'', '"'])).then(|| inner.to_string())
}

/// A text template (always renders a string).
#[derive(Clone)]
pub struct TextTemplate {
    source: String,
    env: &'static Environment<'static>,
    max_output: usize,
}

impl std::fmt::Debug for TextTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTemplate({:?})", self.source)
    }
}

impl TextTemplate {
    /// Checks the syntax.
    pub fn compile(source: &str) -> Result<Self, String> {
        Self::compile_in(source, |e| &e.strict)
    }

    fn compile_in(
        source: &str,
        pick: fn(&'static Envs) -> &'static Environment<'static>,
    ) -> Result<Self, String> {
        let b = budget();
        let env = pick(envs(b.fuel));
        guarded(source, || env.template_from_str(source).map(|_| ()))
            .and_then(|()| unknown_names(env, source))
            .map_err(|e| format!("invalid template {source:?}: {e}"))?;
        Ok(Self {
            source: source.to_string(),
            env,
            max_output: b.max_output_bytes,
        })
    }

    /// Checks the syntax of a template that renders a missing value as nothing, as Jinja2
    /// does (webhook templates, whose senders' bodies vary: `{{ body.x|default('-') }}`).
    pub fn compile_lenient(source: &str) -> Result<Self, String> {
        Self::compile_in(source, |e| &e.lenient)
    }

    /// Renders to a string, within the budget.
    pub fn render(&self, ctx: &JinjaValue) -> Result<String, String> {
        let failed =
            |e: minijinja::Error| format!("template {:?} failed: {}", self.source, describe(&e));
        let template = self.env.template_from_str(&self.source).map_err(failed)?;
        let mut out = Capped {
            buf: Vec::new(),
            max: self.max_output,
        };
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => {}
            Err(e) if e.kind() == minijinja::ErrorKind::WriteFailure => {
                return Err(format!(
                    "template {:?} failed: {}",
                    self.source,
                    too_large(self.max_output)
                ));
            }
            Err(e) => return Err(failed(e)),
        }
        String::from_utf8(out.buf)
            .map_err(|e| format!("template {:?} rendered invalid UTF-8: {e}", self.source))
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// A JSON value whose strings are templates.
#[derive(Debug)]
pub enum ValueTemplate {
    /// Used as is.
    Literal(Value),
    /// One `{{ expression }}`: keeps the JSON type of the result.
    Expr {
        /// The expression text.
        source: String,
        /// Compiled.
        expr: Box<Expression<'static, 'static>>,
        /// Largest result, as JSON.
        max_output: usize,
    },
    /// Text with placeholders.
    Text(TextTemplate),
    /// A list of templates.
    Array(Vec<ValueTemplate>),
    /// An object of templates.
    Object(Vec<(String, ValueTemplate)>),
}

/// The inside of a string that is exactly one `{{ ... }}`.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    let nested = ["{{", "}}", "{%", "%}", "{#"]
        .iter()
        .any(|m| inner.contains(m));
    (!nested && !inner.trim().is_empty()).then_some(inner.trim())
}

impl ValueTemplate {
    /// Compiles every string in `value`; the error names the path inside the value.
    pub fn compile(value: &Value) -> Result<Self, (String, String)> {
        Ok(match value {
            Value::String(s) => match single_expression(s) {
                Some(expr) => {
                    let b = budget();
                    let env = &envs(b.fuel).strict;
                    let compiled = guarded(expr, || env.compile_expression_owned(expr.to_string()))
                        .and_then(|c| unknown_names(env, &format!("{{{{ {expr} }}}}")).map(|()| c))
                        .map_err(|e| {
                            (String::new(), format!("invalid expression {expr:?}: {e}"))
                        })?;
                    Self::Expr {
                        source: expr.to_string(),
                        expr: Box::new(compiled),
                        max_output: b.max_output_bytes,
                    }
                }
                None if s.contains("{{") || s.contains("{%") => {
                    Self::Text(TextTemplate::compile(s).map_err(|e| (String::new(), e))?)
                }
                None => Self::Literal(value.clone()),
            },
            Value::Array(items) => Self::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::compile(v).map_err(|(p, e)| (format!("[{i}]{p}"), e)))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Self::Object(
                map.iter()
                    .map(|(k, v)| {
                        Self::compile(v)
                            .map(|t| (k.clone(), t))
                            .map_err(|(p, e)| (format!(".{k}{p}"), e))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => Self::Literal(other.clone()),
        })
    }

    /// Renders to JSON.
    pub fn render(&self, ctx: &JinjaValue) -> Result<Value, String> {
        match self {
            Self::Literal(v) => Ok(v.clone()),
            Self::Text(t) => t.render(ctx).map(Value::String),
            Self::Expr {
                source,
                expr,
                max_output,
            } => {
                let v = expr
                    .eval(ctx)
                    .map_err(|e| format!("`{{{{ {source} }}}}` failed: {}", describe(&e)))?;
                if v.is_undefined() {
                    return Err(format!("`{{{{ {source} }}}}` is undefined for this event"));
                }
                check_size(&v, *max_output)
                    .map_err(|e| format!("`{{{{ {source} }}}}` failed: {e}"))?;
                serde_json::to_value(&v)
                    .map_err(|e| format!("`{{{{ {source} }}}}` gave a value that is not JSON: {e}"))
            }
            Self::Array(items) => items
                .iter()
                .map(|t| t.render(ctx))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Self::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    out.insert(k.clone(), t.render(ctx)?);
                }
                Ok(Value::Object(out))
            }
        }
    }
}

#[cfg(test)]
mod tests;
