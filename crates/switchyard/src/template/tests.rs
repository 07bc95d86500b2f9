use super::*;
use serde_json::json;

fn ctx() -> JinjaValue {
    let event = Event::builder("orders", "order.created", json!({
        "id": 42, "amount": 120.5, "customer": {"name": "Ada", "tier": "gold"}, "items": ["a", "b"], "flag": true
    }))
    .id("evt-1")
    .label("topic", "orders")
    .build();
    context(&event)
}

fn render(v: Value) -> Result<Value, String> {
    ValueTemplate::compile(&v).map_err(|e| e.1)?.render(&ctx())
}

#[test]
fn single_expressions_keep_their_type() {
    assert_eq!(render(json!("{{ event.payload.id }}")).unwrap(), json!(42));
    assert_eq!(
        render(json!("{{event.payload.amount}}")).unwrap(),
        json!(120.5)
    );
    assert_eq!(
        render(json!(" {{- event.payload.flag -}} ")).unwrap(),
        json!(true)
    );
    assert_eq!(
        render(json!("{{ event.payload.customer }}")).unwrap(),
        json!({"name": "Ada", "tier": "gold"})
    );
    assert_eq!(
        render(json!("{{ event.payload.items }}")).unwrap(),
        json!(["a", "b"])
    );
    assert_eq!(
        render(json!("{{ event.payload.id * 2 }}")).unwrap(),
        json!(84)
    );
    assert_eq!(
        render(json!("{{ event.labels.topic }}")).unwrap(),
        json!("orders")
    );
    assert_eq!(render(json!("{{ event.id }}")).unwrap(), json!("evt-1"));
}

#[test]
fn text_nested_and_literals() {
    let out = render(json!({
        "name": "order-{{ event.payload.id }}",
        "who": "{{ event.payload.customer.name }} ({{ event.payload.customer.tier }})",
        "n": 5, "plain": "no templates", "list": ["{{ event.payload.id }}", 1]
    }))
    .unwrap();
    assert_eq!(
        out,
        json!({"name": "order-42", "who": "Ada (gold)", "n": 5, "plain": "no templates", "list": [42, 1]})
    );
}

#[test]
fn strict_rendering_names_the_missing_field() {
    let err = render(json!("{{ event.payload.missing }}")).unwrap_err();
    assert!(
        err.contains("event.payload.missing") && err.contains("undefined"),
        "{err}"
    );
    let err = render(json!("x-{{ event.payload.missing.deeper }}")).unwrap_err();
    assert!(err.contains("undefined"), "{err}");
    let err = ValueTemplate::compile(&json!({"a": {"b": "{{ oops("}})).unwrap_err();
    assert_eq!(err.0, ".a.b");
}

#[test]
fn predicates_are_lenient_about_missing_fields() {
    let p = |s: &str| Predicate::compile(s).unwrap().eval(&ctx());
    assert_eq!(p("event.payload.amount > 100"), Ok(true));
    assert_eq!(p("event.payload.customer.tier == 'silver'"), Ok(false));
    assert_eq!(p("event.payload.nothing.here"), Ok(false));
    assert_eq!(p("event.payload.nothing is defined"), Ok(false));
    assert_eq!(
        p("'b' in event.payload.items and event.name.startswith('order.')"),
        Ok(true)
    );
    assert!(Predicate::compile("event.payload.amount >").is_err());
    assert!(p("event.payload.customer.name + 1 > 0").is_err());
}

fn bomb_ctx(payload: Value) -> JinjaValue {
    context(&Event::builder("s", "e", payload).build())
}

#[test]
fn a_loop_bounded_by_the_payload_runs_out_of_fuel() {
    let t = ValueTemplate::compile(&json!(
        "{% for i in range(event.payload.n) %}{% for j in range(event.payload.n) %}x{% endfor %}{% endfor %}"
    ))
    .unwrap();
    let err = t.render(&bomb_ctx(json!({"n": 100_000}))).unwrap_err();
    assert!(err.contains("ran out of fuel"), "{err}");
    assert_eq!(
        t.render(&bomb_ctx(json!({"n": 3}))).unwrap(),
        json!("xxxxxxxxx")
    );
}

/// Found by `fuzz/fuzz_targets/template.rs`: minijinja panicked compiling this.
#[test]
fn input_that_panics_the_engine_is_an_error() {
    let err = Predicate::compile("payloa }}]o").unwrap_err();
    assert!(err.contains("invalid expression"), "{err}");
}

#[test]
fn outputs_over_the_cap_fail_with_the_reason() {
    // 2 MB: within the fuel (about 64 bytes a unit), over the 1 MiB output cap.
    let v = ValueTemplate::compile(&json!("{{ event.payload.s * event.payload.k }}")).unwrap();
    let err = v
        .render(&bomb_ctx(json!({"s": "xxxxxxxxxx", "k": 200_000})))
        .unwrap_err();
    assert!(err.contains("templates.max_output_bytes"), "{err}");
    let t = ValueTemplate::compile(&json!("pre-{{ event.payload.s * event.payload.k }}")).unwrap();
    let err = t
        .render(&bomb_ctx(json!({"s": "xxxxxxxxxx", "k": 200_000})))
        .unwrap_err();
    assert!(err.contains("templates.max_output_bytes"), "{err}");
    assert_eq!(
        v.render(&bomb_ctx(json!({"s": "ab", "k": 2}))).unwrap(),
        json!("abab")
    );
}

/// Data a template makes costs fuel too (minijinja 3 charges about one unit per 64 bytes), so
/// a single instruction cannot allocate without bound: a 100 MB string is refused before it
/// is built.
#[test]
fn one_instruction_cannot_build_more_than_the_fuel_pays_for() {
    let v = ValueTemplate::compile(&json!("{{ event.payload.s * event.payload.k }}")).unwrap();
    let err = v
        .render(&bomb_ctx(json!({"s": "xxxxxxxxxx", "k": 10_000_000})))
        .unwrap_err();
    assert!(err.contains("ran out of fuel"), "{err}");
}

/// Found by `fuzz/fuzz_targets/template.rs` (fuzz/corpus/template/repeat-empty-sequence):
/// with minijinja 2, `() * n` was a lazy sequence that `~` walked n times in one
/// instruction, so fuel never ran out and the evaluation thread spun for hours. A repeated
/// sequence, empty or not, is now paid for or refused.
#[test]
fn repeating_a_sequence_is_bounded() {
    let started = std::time::Instant::now();
    let p = Predicate::compile("36~() *2622222222226~6").unwrap();
    let _ = p.eval(&bomb_ctx(json!({})));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    for src in [
        "{{ () * event.payload.n ~ 'x' }}",
        "{{ [1] * event.payload.n ~ 'x' }}",
        "{{ ([1, 2] * event.payload.n) | join(',') }}",
        "{{ ([1] * event.payload.n) | list | length }}",
        "{{ 'x' in [0] * event.payload.n }}",
    ] {
        let started = std::time::Instant::now();
        let out = TextTemplate::compile(src)
            .map(|t| t.render(&bomb_ctx(json!({"n": 2_622_222_222_226_u64}))));
        // Refused or finished, and in well under a second either way.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{src}: {out:?}"
        );
        if let Ok(Ok(text)) = out {
            assert!(text.len() <= crate::template::DEFAULT_MAX_OUTPUT, "{src}");
        }
    }
}

#[tokio::test]
async fn the_sandbox_runs_work_off_the_runtime_and_survives_a_panic() {
    let on = tokio::task::spawn_blocking(|| ()).await;
    assert!(on.is_ok());
    let name = sandbox(|| std::thread::current().name().map(str::to_string))
        .await
        .unwrap();
    assert!(name.unwrap_or_default().starts_with("template-"));
    let err = sandbox(|| -> u8 { panic!("boom") }).await.unwrap_err();
    assert!(err.contains("panicked"), "{err}");
    assert_eq!(
        sandbox(|| 7).await,
        Ok(7),
        "the pool still works after a panic"
    );
}

#[test]
fn name_only_predicates_give_their_names_and_nothing_else_does() {
    let names = |s: &str| Predicate::compile(s).unwrap().exact_names();
    let v = |n: &[&str]| Some(n.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        names("event.name == 'order.created'"),
        v(&["order.created"])
    );
    assert_eq!(
        names(" \"order.created\"==event.name "),
        v(&["order.created"])
    );
    assert_eq!(names("event.name in ['a', \"b\",]"), v(&["a", "b"]));
    for other in [
        "event.name in ('a')", // a substring test in Jinja
        "event.name in ('a', 'b')",
        "event.name == 'a' or true",
        "event.name == 'a' or 'b'",
        "event.name == 'a' ~ 'b'",
        "event.name == 'a'|lower",
        "event.name != 'a'",
        "event.names == 'a'",
        "event.name.lower() == 'a'",
        "not event.name == 'a'",
        "'a' == event.name == 'b'",
        "event.name in ['a'] + ['b']",
        "event.name in ['a', x]",
        "event.name in []",
        "event.name == 'it\\'s'",
        "event.payload.name == 'a'",
    ] {
        assert_eq!(names(other), None, "{other}");
    }
    // What is recognised agrees with evaluation.
    for (src, name) in [
        ("event.name == 'order.created'", "order.created"),
        ("event.name in ['x', 'order.created']", "order.created"),
    ] {
        let p = Predicate::compile(src).unwrap();
        assert!(p.exact_names().unwrap().contains(&name.to_string()));
        assert_eq!(p.eval(&ctx()), Ok(true), "{src}");
    }
}

/// A typo in a filter, test or function is a config error at load, naming it, even in a
/// branch no event has reached yet; filters, tests and functions that exist, and macros the
/// template defines, are fine.
#[test]
fn unknown_filters_tests_and_functions_are_refused_at_compile_time() {
    let err =
        ValueTemplate::compile(&json!({"x": "{{ event.payload.x | nosuchfilter }}"})).unwrap_err();
    assert_eq!(err.0, ".x");
    assert!(err.1.contains("unknown filter \"nosuchfilter\""), "{err:?}");
    let err =
        TextTemplate::compile("{% if event.payload.rare %}{{ 1 | nope }}{% endif %}").unwrap_err();
    assert!(err.contains("unknown filter \"nope\""), "{err}");
    let err = Predicate::compile("event.payload.n is nosuchtest").unwrap_err();
    assert!(err.contains("unknown test \"nosuchtest\""), "{err}");
    let err = TextTemplate::compile("{{ nosuchfn(1) }}").unwrap_err();
    assert!(err.contains("unknown function \"nosuchfn\""), "{err}");
    for ok in [
        "{{ event.payload.items | join(',') | upper }}",
        "{{ event.payload.n is even }}",
        "{{ range(3) | list }}",
        "{% macro m(x) %}{{ x }}{% endmacro %}{{ m(1) }}",
        "{% set f = namespace(a=1) %}{{ f.a }}",
        "{{ event.payload.name.startswith('a') }}",
        "{{ event.payload.x | default('-') | tojson }}",
    ] {
        assert!(TextTemplate::compile(ok).is_ok(), "{ok}");
    }
    assert!(TextTemplate::compile_lenient("{{ body | from_cloud_event(headers) }}").is_ok());
}

#[test]
fn only_a_literal_true_or_false_is_known_without_a_context() {
    for (src, want) in [
        ("false", Some(false)),
        (" False ", Some(false)),
        ("true", Some(true)),
        ("event.payload.ok", None),
        ("false and event.x", None),
        ("1 == 2", None),
    ] {
        assert_eq!(Predicate::compile(src).unwrap().constant(), want, "{src}");
    }
}
