//! The config loader (YAML or JSON, with `${VAR}` interpolation, the legacy form, routes
//! compiled): any text gives a config or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    common::tolerate_caught_panics();
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
