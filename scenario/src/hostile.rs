//! Hostile input: whatever a scenario file holds, compiling returns a scenario or located
//! problems, never a panic (the fuzz target `fuzz/fuzz_targets/scenario.rs` goes further).

use proptest::prelude::*;

use crate::Bundle;

fn compile(source: String) {
    let bundle = Bundle {
        path: "hostile.yaml".into(),
        source,
        files: Default::default(),
    };
    if let Err(error) = bundle.compile() {
        // Every problem renders and names the file.
        for problem in error.problems() {
            assert!(problem.to_string().starts_with("hostile.yaml"));
        }
    }
}

const FRAGMENTS: &[&str] = &[
    "name: x\n",
    "load: { vus: 3, iterations: 2 }\n",
    "load: { stages: [{ duration: 1s, target: 5 }] }\n",
    "steps:\n",
    "  - connect: { url: 'ws://h/${vu}' }\n",
    "  - send: { text: '${nope' }\n",
    "  - send: { binary: '\\x4' }\n",
    "  - receive: { timeout: 1x, latency_of: zz }\n",
    "  - repeat: { count: 2, steps: [ { think: 1s } ] }\n",
    "  - close: { code: 99999 }\n",
    "  - ping:\n",
    "  - - - -\n",
    "&a [*a]\n",
    "{{{{\n",
    "\t\u{0}\n",
    "target: ${testserver.url}\n",
    "variables: { a: '${b}' }\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(source in "\\PC{0,300}") {
        compile(source);
    }

    #[test]
    fn spliced_scenario_fragments_never_panic(picks in proptest::collection::vec(0..FRAGMENTS.len(), 0..12)) {
        compile(picks.into_iter().map(|index| FRAGMENTS[index]).collect());
    }
}
