//! Parse and validation errors: each names the file, line, column and field.

use super::*;

fn compile(source: &str) -> Result<Scenario, ScenarioError> {
    Bundle {
        path: "s.yaml".into(),
        source: source.into(),
        files: BTreeMap::new(),
    }
    .compile()
}

fn only_problem(source: &str) -> Problem {
    let error = compile(source).expect_err("scenario should be refused");
    let problems = error.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    problems[0].clone()
}

const ECHO: &str = "\
name: echo
target: ws://127.0.0.1:9/echo
load: { vus: 2, iterations: 1 }
steps:
  - connect: { url: '${target}' }
  - repeat:
      count: 3
      steps:
        - send: { name: msg, text: 'hello ${vu} ${iteration}' }
        - receive: { timeout: 2s, latency_of: msg }
  - close: { code: 1000 }
";

#[test]
fn compiles_the_echo_scenario() {
    let scenario = compile(ECHO).unwrap();
    assert_eq!(scenario.name, "echo");
    assert_eq!(
        scenario.step_names,
        vec!["connect", "repeat", "msg", "receive", "close"]
    );
    assert_eq!(scenario.plan.max_vus(), 2);
    let Action::Repeat(repeat) = &scenario.steps[1].action else {
        panic!("not a repeat")
    };
    assert_eq!(repeat.count, Some(3));
    let Action::Receive(receive) = &repeat.steps[1].action else {
        panic!("not a receive")
    };
    assert_eq!(receive.latency_of, Some(2));
}

#[test]
fn unknown_field_names_line_column_and_suggests() {
    let problem = only_problem(&ECHO.replace("{ url: '${target}' }", "{ urll: '${target}' }"));
    assert_eq!(problem.location, Some(Location { line: 5, column: 16 }));
    assert_eq!(problem.field, "steps[0].connect.urll");
    assert!(problem.message.contains("unknown field `urll`"), "{}", problem.message);
    assert_eq!(problem.hint.as_deref(), Some("did you mean `url`?"));
    let text = problem.to_string();
    assert!(text.starts_with("s.yaml:5:16: field `steps[0].connect.urll`"), "{text}");
}

#[test]
fn unknown_step_kind_suggests_the_close_one() {
    let problem = only_problem(&ECHO.replace("- close:", "- clsoe:"));
    assert!(
        problem.message.contains("unknown variant `clsoe`"),
        "{}",
        problem.message
    );
    assert_eq!(problem.hint.as_deref(), Some("did you mean `close`?"));
    assert_eq!(problem.location.map(|l| l.line), Some(11));
}

#[test]
fn wrong_type_is_located() {
    let problem = only_problem(&ECHO.replace("count: 3", "count: three"));
    assert_eq!(problem.location.map(|l| l.line), Some(7));
    assert!(problem.field.contains("count"), "{problem:?}");
}

#[test]
fn bad_duration_is_located() {
    let problem = only_problem(&ECHO.replace("timeout: 2s", "timeout: 2"));
    assert_eq!(problem.field, "steps[1].repeat.steps[1].receive.timeout");
    assert_eq!(problem.location, Some(Location { line: 10, column: 31 }));
    assert!(problem.message.contains("no unit"));
}

#[test]
fn unknown_variable_is_refused_with_a_suggestion() {
    let problem = only_problem(&ECHO.replace("${iteration}", "${iteraton}"));
    assert_eq!(problem.field, "steps[1].repeat.steps[0].send.text");
    assert!(problem.message.contains("unknown variable `${iteraton}`"));
    assert_eq!(problem.hint.as_deref(), Some("did you mean `${iteration}`?"));
    assert_eq!(problem.location.map(|l| l.line), Some(9));
}

#[test]
fn unreachable_latency_of_is_refused() {
    let problem = only_problem(&ECHO.replace("latency_of: msg", "latency_of: mgs"));
    assert_eq!(problem.field, "steps[1].repeat.steps[1].receive.latency_of");
    assert_eq!(problem.hint.as_deref(), Some("did you mean `msg`?"));
}

#[test]
fn send_without_connection_is_refused() {
    let source = "load: { vus: 1, iterations: 1 }\nsteps:\n  - send: { text: hi }\n";
    let problem = only_problem(source);
    assert_eq!(problem.field, "steps[0].send");
    assert_eq!(problem.location.map(|l| l.line), Some(3));
    assert_eq!(problem.hint.as_deref(), Some("add a `connect` step before it"));
}

#[test]
fn missing_load_length_is_explained() {
    let problem = only_problem(&ECHO.replace("{ vus: 2, iterations: 1 }", "{ vus: 2 }"));
    assert_eq!(problem.field, "load");
    assert!(problem.hint.unwrap().contains("iterations"));
}

#[test]
fn yaml_syntax_error_is_located() {
    let error = compile("name: [unclosed\nload: {}\n").expect_err("bad yaml");
    let problem = &error.problems()[0];
    assert!(problem.location.is_some(), "{problem:?}");
}

#[test]
fn several_problems_are_reported_together() {
    let source = ECHO
        .replace("timeout: 2s", "timeout: 2")
        .replace("${iteration}", "${nope}");
    let error = compile(&source).expect_err("two problems");
    assert_eq!(error.problems().len(), 2);
}

#[test]
fn hash_covers_source_and_files() {
    let mut bundle = Bundle {
        path: "a".into(),
        source: ECHO.into(),
        files: BTreeMap::new(),
    };
    let before = bundle.hash();
    bundle.files.insert("blob.bin".into(), vec![1, 2, 3]);
    assert_ne!(before, bundle.hash());
    assert_eq!(bundle.hash().len(), 40);
}

#[test]
fn lost_agent_policy_defaults_to_continue_and_reads_each_choice() {
    assert_eq!(
        compile(ECHO).unwrap().plan.on_agent_lost,
        plan::LostAgentPolicy::Continue
    );
    for (name, policy) in [
        ("continue", plan::LostAgentPolicy::Continue),
        ("redistribute", plan::LostAgentPolicy::Redistribute),
        ("abort", plan::LostAgentPolicy::Abort),
    ] {
        let source = ECHO.replace(
            "load: { vus: 2, iterations: 1 }",
            &format!("load: {{ vus: 2, iterations: 1, on_agent_lost: {name} }}"),
        );
        assert_eq!(compile(&source).unwrap().plan.on_agent_lost, policy, "{name}");
    }
    let open = "load: { model: open, rate: 5, duration: 2s, max_vus: 5, on_agent_lost: abort }";
    let source = ECHO.replace("load: { vus: 2, iterations: 1 }", open);
    assert_eq!(
        compile(&source).unwrap().plan.on_agent_lost,
        plan::LostAgentPolicy::Abort
    );
}

#[test]
fn unknown_lost_agent_policy_is_located_with_the_choices() {
    let problem = only_problem(&ECHO.replace(
        "load: { vus: 2, iterations: 1 }",
        "load:\n  vus: 2\n  iterations: 1\n  on_agent_lost: redistribut",
    ));
    assert_eq!(problem.field, "load.on_agent_lost");
    assert_eq!(problem.location, Some(Location { line: 6, column: 18 }));
    assert!(
        problem.message.contains("unknown lost-agent policy `redistribut`"),
        "{}",
        problem.message
    );
    let hint = problem.hint.unwrap_or_default();
    assert!(hint.contains("did you mean `redistribute`?"), "{hint}");
    assert!(hint.contains("`continue`, `redistribute` and `abort`"), "{hint}");

    let problem = only_problem(&ECHO.replace(
        "load: { vus: 2, iterations: 1 }",
        "load: { vus: 2, iterations: 1, on_agent_lost: shrug }",
    ));
    let text = problem.to_string();
    assert!(text.starts_with("s.yaml:3:"), "{text}");
    assert!(
        text.contains("`continue` (go on with the others), `redistribute`"),
        "{text}"
    );
}
