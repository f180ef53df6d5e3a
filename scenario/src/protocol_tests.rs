//! Socket.IO scenarios: what compiles (options, emits, event conditions, event metric sets)
//! and what is refused, each problem located with its field.

use super::*;
use crate::protocol::{JsonTemplate, Protocol};

fn compile(source: &str) -> Result<Scenario, ScenarioError> {
    Bundle {
        path: "s.yaml".into(),
        source: source.into(),
        files: BTreeMap::new(),
    }
    .compile()
}

fn problems(source: &str) -> Vec<Problem> {
    compile(source)
        .expect_err("scenario should be refused")
        .problems()
        .to_vec()
}

const CHAT: &str = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect:
      url: 'http://127.0.0.1:9'
      protocol: socketio
      socketio: { path: /sio, query: { v: '${vu}' }, namespaces: [ /, { name: /admin, auth: { token: 'k${vu}', n: 1 } } ] }
  - emit: { name: say, event: chat, args: [ { text: 'hi ${vu}' }, 2, { $binary: '\\x01' } ], ack: { timeout: 2s, extract: { id: { json: /0/id } } } }
  - receive: { match: { event: chat, namespace: /, json: /0/text, equals: '${id}' } }
  - emit: { event: ping, namespace: /admin }
on_message:
  - { when: { event: typing }, extract: { who: { json: /0 } } }
";

#[test]
fn socketio_options_emits_and_event_sets_compile() {
    let scenario = compile(CHAT).unwrap();
    let part = &scenario.parts[0];
    let Action::Connect(connect) = &part.steps[0].action else {
        panic!("not a connect")
    };
    let Some(Protocol::SocketIo(options)) = &connect.protocol else {
        panic!("no protocol")
    };
    assert_eq!(options.path, "/sio/");
    assert_eq!(options.namespaces.len(), 2);
    assert_eq!(options.namespaces[1].name, "/admin");
    assert!(matches!(options.namespaces[1].auth, Some(JsonTemplate::Object(_))));
    let Action::Emit(emit) = &part.steps[1].action else {
        panic!("not an emit")
    };
    assert_eq!(emit.attachments, vec![vec![1u8]]);
    assert_eq!(emit.ack.as_ref().map(|ack| ack.timeout.as_secs()), Some(2));
    assert_eq!(scenario.step_names[usize::from(emit.event_set)], "event:chat");
    let events = part.events.as_ref().expect("event sets");
    for name in ["chat", "ping", "typing"] {
        assert_eq!(
            scenario.step_names[usize::from(events.of("event:", name, u16::MAX))],
            format!("event:{name}")
        );
    }
    assert_eq!(
        scenario.step_names[usize::from(events.of("event:", "unheard", u16::MAX))],
        "event:*"
    );
}

#[test]
fn plain_scenarios_have_no_event_sets() {
    let scenario =
        compile("load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://h:1/' }\n  - send: { text: x }\n")
            .unwrap();
    assert!(scenario.parts[0].events.is_none());
    assert_eq!(scenario.step_names, vec!["connect", "send"]);
}

#[test]
fn emit_needs_a_socketio_connection() {
    let found = problems(
        "load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://h:1/' }\n  - emit: { event: x }\n",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "steps[1].emit");
    assert!(
        found[0].message.contains("needs a connection that speaks `socketio`"),
        "{}",
        found[0].message
    );
    assert_eq!(found[0].location.map(|at| at.line), Some(4));
    assert!(found[0].hint.as_deref().unwrap_or("").contains("protocol: socketio"));
}

#[test]
fn event_conditions_on_plain_connections_are_refused() {
    let found = problems(
        "load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://h:1/' }\n  - receive: { match: { event: x } }\n",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "steps[1].receive.match");
}

#[test]
fn unknown_fields_and_bad_values_are_located() {
    let found = problems(&CHAT.replace("{ name: say, event: chat,", "{ name: say, evnt: chat,"));
    assert!(
        found.iter().any(|problem| problem.field.ends_with("emit.evnt")),
        "{found:#?}"
    );
    let found = problems(&CHAT.replace("protocol: socketio", "protocol: sockteio"));
    assert!(
        found.iter().any(|problem| problem.field == "steps[0].connect.protocol"
            && problem.hint.as_deref() == Some("did you mean `socketio`?")),
        "{found:#?}"
    );
    let found = problems(&CHAT.replace("namespace: /admin }", "namespace: /nope }"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "steps[3].emit.namespace");
    let found = problems(&CHAT.replace("'\\x01'", "'\\x0z'"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "steps[1].emit.args[2].$binary");
    let found = problems(&CHAT.replace("'hi ${vu}'", "'hi ${vuu}'"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "steps[1].emit.args[0].text");
    let found = problems(&CHAT.replace("'http://127.0.0.1:9'", "'ws://127.0.0.1:9/chat'"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "steps[0].connect.url");
    let found = problems(&CHAT.replace("event: ping", "event: connect"));
    assert_eq!(found[0].field, "steps[3].emit.event");
    let found = problems(&CHAT.replace("      protocol: socketio\n", ""));
    assert!(
        found.iter().any(|problem| problem.field == "steps[0].connect.socketio"),
        "{found:#?}"
    );
}

#[test]
fn connect_error_and_ack_timeout_are_error_kinds_rules_name() {
    let scenario = compile(&format!(
        "{CHAT}on_error:\n  - {{ kinds: [connect_error, ack_timeout], then: continue }}\n"
    ));
    assert!(scenario.is_ok(), "{:?}", scenario.err());
}

#[test]
fn rule_acknowledgements_are_for_socketio_and_exclude_a_send() {
    let scenario = compile(&format!(
        "{CHAT}  - {{ when: {{ event: question }}, ack: [ {{ from: '${{vu}}' }} ] }}\n"
    ))
    .unwrap();
    assert_eq!(scenario.parts[0].on_message[1].ack.as_ref().map(Vec::len), Some(1));
    let found = problems(
        "load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://h:1/' }\non_message:\n  - { ack: [1] }\n",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "on_message[0].ack");
    let found = problems(&format!("{CHAT}  - {{ ack: [1], send: {{ text: x }} }}\n"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "on_message[1]");
    let found = problems(&format!("{CHAT}  - {{ ack: [ {{ $binary: '\\x01' }} ] }}\n"));
    assert_eq!(found.len(), 1, "{found:#?}");
}
