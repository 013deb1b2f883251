//! `gamefleet-operator render` on any text: a rendered stream or a specific error, never a
//! panic, whatever the YAML (anchors, aliases, deep nesting, several documents).
#![no_main]

use gamefleet_operator::render::render;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = render(text) {
        assert!(!e.to_string().is_empty());
    }
});
