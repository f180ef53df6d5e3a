//! Any bytes as a scenario file: compiling must return a scenario or located problems, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(source) = std::str::from_utf8(data) {
        let bundle = wsfleet_scenario::Bundle { path: "fuzz.yaml".into(), source: source.into(), files: Default::default() };
        let _ = bundle.compile();
    }
});
