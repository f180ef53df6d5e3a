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
    assert_eq!(scenario.plan().max_vus(), 2);
    let Action::Repeat(repeat) = &scenario.parts[0].steps[1].action else {
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

// --- the rest of the language: each kind of mistake is located and explained ---

fn compile_with_files(source: &str, files: &[(&str, &[u8])]) -> Result<Scenario, ScenarioError> {
    Bundle {
        path: "s.yaml".into(),
        source: source.into(),
        files: files
            .iter()
            .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
            .collect(),
    }
    .compile()
}

const TWO_CONNECTIONS: &str = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect: { connection: chat, url: 'ws://127.0.0.1:9/chat' }
  - connect: { connection: feed, url: 'ws://127.0.0.1:9/feed', keep_open: true }
  - send: { connection: chat, text: hi }
  - receive: { connection: feed, timeout: 1s }
";

#[test]
fn named_connections_resolve_and_keep_open() {
    let scenario = compile(TWO_CONNECTIONS).unwrap();
    assert_eq!(scenario.parts[0].connections, ["chat", "feed"]);
    let Action::Connect(feed) = &scenario.parts[0].steps[1].action else {
        panic!()
    };
    assert!(feed.keep_open);
    let Action::Receive(receive) = &scenario.parts[0].steps[3].action else {
        panic!()
    };
    assert_eq!(receive.conn, 1);
}

#[test]
fn a_step_must_name_its_connection_when_there_are_several() {
    let problem = only_problem(&TWO_CONNECTIONS.replace("{ connection: chat, text: hi }", "{ text: hi }"));
    assert_eq!(problem.field, "steps[2].send");
    assert!(
        problem.message.contains("several connections (chat, feed)"),
        "{}",
        problem.message
    );
}

#[test]
fn an_unknown_connection_name_is_suggested() {
    let problem = only_problem(&TWO_CONNECTIONS.replace("{ connection: feed, timeout", "{ connection: fed, timeout"));
    assert_eq!(problem.field, "steps[3].receive.connection");
    assert_eq!(problem.hint.as_deref(), Some("did you mean `feed`?"));
    assert_eq!(problem.location.map(|l| l.line), Some(6));
}

#[test]
fn matchers_extractions_and_checks_compile() {
    let source = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://127.0.0.1:9/', extract: { sid: { header: X-Session-Id, regex: '(\\d+)' } } }
  - send: { name: ask, text: '{\"id\":${iteration},\"sid\":\"${sid}\"}' }
  - receive:
      timeout: 1s
      latency_of: ask
      match: { json: /id, equals: '${iteration}' }
      extract: { token: { json: /token, default: none } }
  - receive: { name: peek, wait: false, state: got }
  - check: { value: '${got}/${token}', regex: '^(received|none)/', on_fail: continue }
";
    let scenario = compile(source).unwrap();
    let Action::Receive(receive) = &scenario.parts[0].steps[2].action else {
        panic!()
    };
    assert!(receive.matcher.as_ref().unwrap().json.is_some());
    assert_eq!(receive.extract[0].default.as_deref(), Some("none"));
    let Action::Receive(peek) = &scenario.parts[0].steps[3].action else {
        panic!()
    };
    assert!(!peek.wait);
    assert_eq!(peek.state.as_deref(), Some("got"));
}

#[test]
fn bad_regex_and_json_pointer_are_located() {
    let source = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://127.0.0.1:9/' }
  - receive: { timeout: 1s, match: { regex: '(unclosed' } }
  - receive: { timeout: 1s, match: { json: type, equals: x } }
";
    let error = compile(source).unwrap_err();
    let problems = error.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0].field, "steps[1].receive.match.regex");
    assert!(problems[0].message.contains("regular expression"));
    assert_eq!(problems[1].field, "steps[2].receive.match.json");
    assert_eq!(
        problems[1].hint.as_deref(),
        Some("pointers start with `/`, e.g. `/type`")
    );
    assert_eq!(problems[1].location.map(|l| l.line), Some(5));
}

#[test]
fn a_waiting_receive_takes_no_state_and_a_polling_one_no_timeout() {
    let source = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://127.0.0.1:9/' }
  - receive: { timeout: 1s, state: s }
  - receive: { wait: false, timeout: 1s }
";
    let error = compile(source).unwrap_err();
    let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["steps[1].receive.state", "steps[2].receive.timeout"]);
}

#[test]
fn unknown_policies_and_error_kinds_are_refused() {
    let source = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://127.0.0.1:9/' }
  - receive: { timeout: 1s, on_timeout: retry }
on_error:
  - { kinds: [refused, resett], then: continue }
  - { steps: [conect], then: explode }
";
    let error = compile(source).unwrap_err();
    let problems = error.problems();
    let find = |field: &str| {
        problems
            .iter()
            .find(|p| p.field == field)
            .unwrap_or_else(|| panic!("{field}: {problems:#?}"))
    };
    assert!(find("steps[1].receive.on_timeout")
        .hint
        .as_ref()
        .unwrap()
        .contains("skip"));
    assert_eq!(
        find("on_error[0].kinds[1]").hint.as_deref(),
        Some("did you mean `reset`?")
    );
    assert_eq!(
        find("on_error[1].steps[0]").hint.as_deref(),
        Some("did you mean `connect`?")
    );
    assert!(find("on_error[1].then").hint.as_ref().unwrap().contains("stop_vu"));
}

#[test]
fn files_feed_sends_tls_and_data() {
    let source = "\
load: { vus: 2, iterations: 1 }
data:
  users: { csv: users.csv, order: unique }
steps:
  - connect: { url: 'ws://127.0.0.1:9/?u=${users.name}', tls: { ca: ca.pem } }
  - send: { file: blob.bin, fragments: 2 }
";
    let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let scenario = compile_with_files(
        source,
        &[
            ("users.csv", b"name\nann\nbob\n"),
            ("blob.bin", &[1, 2, 3]),
            ("ca.pem", pem),
        ],
    )
    .unwrap();
    assert_eq!(scenario.feeds[0].rows.len(), 2);
    let Action::Send(send) = &scenario.parts[0].steps[1].action else {
        panic!()
    };
    assert!(matches!(&send.payload, Payload::Bytes(bytes) if bytes == &[1, 2, 3]));
    assert_eq!(send.frame, FrameKind::Binary);
    assert_eq!(send.fragments, 2);

    // Too few unique rows for the VUs, a column that is not there, a file that did not come.
    let error = compile_with_files(
        &source
            .replace("vus: 2", "vus: 3")
            .replace("${users.name}", "${users.nmae}"),
        &[("users.csv", b"name\nann\nbob\n"), ("ca.pem", pem)],
    )
    .unwrap_err();
    let problems = error.problems();
    let find = |field: &str| {
        problems
            .iter()
            .find(|p| p.field == field)
            .unwrap_or_else(|| panic!("{field}: {problems:#?}"))
    };
    assert!(find("data.users.order")
        .message
        .contains("2 rows but the load starts up to 3 VUs"));
    assert_eq!(
        find("steps[0].connect.url").hint.as_deref(),
        Some("did you mean `${users.name}`?")
    );
    assert!(find("steps[1].send.file")
        .message
        .contains("did not come with the scenario"));
}

#[test]
fn expectations_proxy_and_tls_options_are_checked() {
    let source = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect:
      url: 'wss://127.0.0.1:9/'
      subprotocols: [v1]
      expect: { subprotocol: v2 }
      proxy: 'socks://127.0.0.1:1080'
      tls: { ca: ca.pem, insecure_skip_verify: true }
";
    let error = compile_with_files(source, &[("ca.pem", b"not a certificate")]).unwrap_err();
    let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
    for wanted in [
        "steps[0].connect.tls",
        "steps[0].connect.tls.ca",
        "steps[0].connect.proxy",
        "steps[0].connect.expect.subprotocol",
    ] {
        assert!(fields.contains(&wanted), "{wanted} not in {fields:?}");
    }
}

#[test]
fn bundle_read_ships_named_files_and_locates_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("payloads")).unwrap();
    std::fs::write(dir.path().join("payloads/a.bin"), [7u8; 10]).unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(
        &path,
        "load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n  - send: { file: payloads/a.bin }\n",
    )
    .unwrap();
    let bundle = Bundle::read(&path).unwrap();
    assert_eq!(bundle.files["payloads/a.bin"], vec![7u8; 10]);
    bundle.compile().unwrap();

    std::fs::write(
        &path,
        "load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n  - send: { file: payloads/b.bin }\n",
    )
    .unwrap();
    let error = Bundle::read(&path).unwrap_err();
    let problem = &error.problems()[0];
    assert_eq!(problem.field, "steps[1].send.file");
    assert_eq!(problem.location.map(|l| l.line), Some(4));
    assert!(problem.message.contains("cannot read"), "{problem}");
}

#[test]
fn pacing_is_for_the_closed_model() {
    let problem = only_problem(
        "load: { model: open, rate: 5, duration: 2s, max_vus: 5, pacing: 1s }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n",
    );
    assert_eq!(problem.field, "load.pacing");
}

#[test]
fn control_frame_texts_and_subprotocols_are_templates() {
    let source = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://127.0.0.1:9/', subprotocols: ['chat.${agent}'] }
  - ping: { body: 'vu ${vu}' }
  - close: { reason: 'bye ${vu_iteration}' }
";
    compile(source).unwrap();
    let problem = only_problem(&source.replace("'vu ${vu}'", "'vu ${vux}'"));
    assert_eq!(problem.field, "steps[1].ping.body");
    assert_eq!(problem.hint.as_deref(), Some("did you mean `${vu}`?"));
}

#[test]
fn lost_agent_policy_defaults_to_continue_and_reads_each_choice() {
    assert_eq!(
        compile(ECHO).unwrap().plan().on_agent_lost,
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
        assert_eq!(compile(&source).unwrap().plan().on_agent_lost, policy, "{name}");
    }
    let open = "load: { model: open, rate: 5, duration: 2s, max_vus: 5, on_agent_lost: abort }";
    let source = ECHO.replace("load: { vus: 2, iterations: 1 }", open);
    assert_eq!(
        compile(&source).unwrap().plan().on_agent_lost,
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

const TWO_PARTS: &str = "\
name: mixed
thresholds:
  'messages_received{step=listeners.news}.count': '> 0'
scenarios:
  - name: listeners
    load: { vus: 9, duration: 10s }
    steps:
      - connect: { url: 'ws://127.0.0.1:9/' }
      - receive: { name: news, timeout: 1s }
  - name: writers
    load: { model: open, rate: 2, duration: 5s, max_vus: 4 }
    steps:
      - connect: { url: 'ws://127.0.0.1:9/' }
      - send: { name: post, text: 'from ${vu}' }
";

#[test]
fn several_scenarios_have_their_own_load_steps_and_prefixed_names() {
    let scenario = compile(TWO_PARTS).unwrap();
    assert_eq!(scenario.parts.len(), 2);
    assert_eq!(
        scenario.step_names,
        ["listeners.connect", "listeners.news", "writers.connect", "writers.post"]
    );
    assert_eq!(scenario.max_vus(), 9 + 4);
    assert_eq!(scenario.stages_end(), Some(std::time::Duration::from_secs(10)));
    // VU numbers: listeners 0-8, writers' 10 arrivals 9-18; numbers past a span stay unique.
    assert_eq!(scenario.vu_number(0, 8), 8);
    assert_eq!(scenario.vu_number(1, 0), 9);
    assert_eq!(scenario.vu_number(1, 9), 18);
    let mut seen = std::collections::HashSet::new();
    for part in 0..2 {
        for local in 0..40 {
            assert!(seen.insert(scenario.vu_number(part, local)), "{part}/{local}");
        }
    }
}

#[test]
fn a_part_s_problems_carry_its_path() {
    let error = compile(
        &TWO_PARTS
            .replace("rate: 2,", "rate: -2,")
            .replace("name: news, timeout: 1s", "name: news, timeout: 1x"),
    )
    .unwrap_err();
    let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"scenarios[1].load.rate"), "{fields:?} {error}");
    let problem = error
        .problems()
        .iter()
        .find(|p| p.field.starts_with("scenarios[0].steps[1]"))
        .unwrap_or_else(|| panic!("{fields:?}"));
    assert_eq!(problem.location.map(|l| l.line), Some(9));
}

#[test]
fn scenarios_exclude_a_top_level_load_and_need_distinct_names() {
    let error = compile(
        &TWO_PARTS
            .replace("scenarios:", "load: { vus: 1, iterations: 1 }\nscenarios:")
            .replace("name: writers", "name: listeners"),
    )
    .unwrap_err();
    let messages: Vec<String> = error
        .problems()
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("load: with `scenarios`")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("two scenarios are named `listeners`")),
        "{messages:?}"
    );
}

#[test]
fn rendezvous_counts_shares_and_points() {
    let source = "\
load: { vus: 40, iterations: 1 }
steps:
  - connect: { url: 'ws://127.0.0.1:9/' }
  - rendezvous: { name: half, share: 50% }
  - repeat:
      count: 2
      steps:
        - rendezvous: { name: all, count: 40, timeout: 2s }
";
    let scenario = compile(source).unwrap();
    let points = scenario.rendezvous_points();
    assert_eq!(points.len(), 2);
    assert_eq!((points[0].point, points[0].count), (0, 20));
    assert_eq!((points[1].point, points[1].count), (1, 40));
    assert_eq!(points[1].timeout, std::time::Duration::from_secs(2));
    for (bad, field) in [
        ("{ name: half, share: 50% }", "steps[1].rendezvous.share"),
        ("{ name: half, count: 0 }", "steps[1].rendezvous.count"),
        ("{ name: half, count: 3, share: 5% }", "steps[1].rendezvous"),
    ] {
        let replaced = source.replace("{ name: half, share: 50% }", bad).replace("50%", "150%");
        let problem = only_problem(&replaced);
        assert_eq!(problem.field, field, "{bad}");
    }
}

#[test]
fn flush_is_the_send_s_own_or_the_scenario_s_default() {
    let flush_of = |scenario: &Scenario, index: usize| match &scenario.parts[0].steps[index].action {
        Action::Send(send) => send.flush,
        _ => panic!("step {index} is not a send"),
    };
    let source = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://127.0.0.1:9/' }
  - send: { text: a }
  - send: { text: b, flush: each }
  - send: { text: c, flush: batch }
";
    let scenario = compile(source).unwrap();
    assert_eq!(
        [1, 2, 3].map(|index| flush_of(&scenario, index)),
        [Flush::Batch, Flush::Each, Flush::Batch]
    );
    let scenario = compile(&format!("flush: each\n{source}")).unwrap();
    assert_eq!(
        [1, 2, 3].map(|index| flush_of(&scenario, index)),
        [Flush::Each, Flush::Each, Flush::Batch]
    );

    let problem = only_problem(&source.replace("flush: each", "flush: every"));
    assert_eq!(problem.field, "steps[2].send.flush");
    assert_eq!(problem.location.map(|l| l.line), Some(5));
    assert!(problem.message.contains("unknown choice `every`"), "{problem:?}");
    assert!(problem.hint.as_deref().unwrap_or_default().contains("`each`"));
    let problem = only_problem(&format!("flush: sometimes\n{source}"));
    assert_eq!(problem.field, "flush");
    assert_eq!(problem.location.map(|l| l.line), Some(1));
}

#[test]
fn joined_agent_policy_defaults_to_wait_and_an_unknown_one_is_located() {
    assert_eq!(
        compile(ECHO).unwrap().plan().on_agent_joined,
        plan::JoinedAgentPolicy::Wait
    );
    let source = ECHO.replace(
        "load: { vus: 2, iterations: 1 }",
        "load: { vus: 2, duration: 5s, on_agent_joined: take_share }",
    );
    assert_eq!(
        compile(&source).unwrap().plan().on_agent_joined,
        plan::JoinedAgentPolicy::TakeShare
    );
    let problem = only_problem(&ECHO.replace(
        "load: { vus: 2, iterations: 1 }",
        "load:\n  vus: 2\n  iterations: 1\n  on_agent_joined: take_shar",
    ));
    assert_eq!(problem.field, "load.on_agent_joined");
    assert_eq!(problem.location, Some(Location { line: 6, column: 20 }));
    assert!(
        problem.message.contains("unknown joined-agent policy `take_shar`"),
        "{}",
        problem.message
    );
    assert!(problem.hint.unwrap_or_default().contains("did you mean `take_share`?"));
}
