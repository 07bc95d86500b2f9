//! The config loader (YAML or JSON, with `${VAR}` interpolation, the legacy form, routes
//! compiled): any text gives a config or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// libfuzzer-sys aborts on every panic, caught or not; Switchyard catches the panics the
/// template engine is known to raise on malformed input and turns them into errors, so only
/// a panic that escapes (the fuzz harness still aborts on those) is a crash here.
fn tolerate_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("caught: {info}"))));
}

fuzz_target!(|data: &[u8]| {
    tolerate_caught_panics();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "HOST" => Some("127.0.0.1".to_string()),
        "EMPTY" => Some(String::new()),
        "NUM" => Some("1e300".to_string()),
        _ => None,
    };
    let _ = switchyard::routes::load_str(std::path::Path::new("fuzz.yaml"), text, env);
});
