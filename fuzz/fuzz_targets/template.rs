//! Templates and `when` expressions against hostile payloads: the first line of the input is
//! the template, the rest the payload (JSON, or text). Every evaluation ends within the
//! budget (fuel, output cap) with a value or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::template::{self, Predicate, TextTemplate, ValueTemplate};

mod common;

fuzz_target!(|data: &[u8]| {
    common::tolerate_caught_panics();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, payload) = text.split_once('\n').unwrap_or((text, "{}"));
    template::set_budget(template::Budget {
        fuel: 20_000,
        max_output_bytes: 64 * 1024,
    });
    let payload = switchyard::sources::parse_json(payload.as_bytes())
        .unwrap_or_else(|_| serde_json::Value::String(payload.to_string()));
    let event = switchyard_core::Event::builder("fuzz", "fuzz.event", payload)
        .label("k", "v")
        .build();
    let ctx = template::context(&event);
    if let Ok(p) = Predicate::compile(source) {
        let _ = p.eval(&ctx);
        let _ = p.exact_names();
    }
    if let Ok(t) = TextTemplate::compile(source) {
        let _ = t.render(&ctx);
    }
    if let Ok(v) = ValueTemplate::compile(&serde_json::Value::String(source.to_string())) {
        let _ = v.render(&ctx);
    }
});
