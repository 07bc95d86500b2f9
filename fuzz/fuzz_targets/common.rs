//! What the fuzz targets share.

/// libfuzzer-sys aborts on every panic, caught or not; Switchyard catches the panics the
/// template engine is known to raise on malformed input and turns them into errors, so only
/// a panic that escapes (the fuzz harness still aborts on those) is a crash here.
pub fn tolerate_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("caught: {info}"))));
}
