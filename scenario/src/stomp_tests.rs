//! STOMP scenarios: what compiles (options, steps, destination sets, header conditions, the
//! subprotocols offered) and what is refused, each problem located with its field.

use super::*;
use crate::protocol::stomp::{AckMode, StompAction, StompBody};
use crate::protocol::Protocol;

fn compile(source: &str) -> Result<Scenario, ScenarioError> {
    Bundle {
        path: "s.yaml".into(),
        source: source.into(),
        files: BTreeMap::from([("body.bin".to_owned(), vec![0, 1, 2])]),
    }
    .compile()
}

fn problems(source: &str) -> Vec<Problem> {
    compile(source)
        .expect_err("scenario should be refused")
        .problems()
        .to_vec()
}

const SESSION: &str = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect:
      url: 'ws://127.0.0.1:9/ws'
      protocol: stomp
      stomp: { host: vh, login: 'u${vu}', passcode: p, heartbeat: { send: 2s, receive: off }, headers: { client-id: 'c${vu}' } }
  - stomp_subscribe: { destination: /queue/a, ack: client, receipt: { timeout: 3s, wait: false } }
  - stomp_send: { name: put, destination: /queue/a, text: 'hi ${vu}', content_type: text/plain, headers: { kind: k }, receipt: true }
  - stomp_send: { destination: /topic/b, file: body.bin }
  - receive: { match: { destination: /queue/a, headers: { kind: k } }, extract: { mid: { header: message-id } } }
  - stomp_ack: { id: '${mid}' }
  - stomp_nack: {}
  - stomp_unsubscribe: { destination: /queue/a }
  - stomp_disconnect: { timeout: 2s }
";

#[test]
fn stomp_options_steps_and_destination_sets_compile() {
    let scenario = compile(SESSION).unwrap();
    let part = &scenario.parts[0];
    let Action::Connect(connect) = &part.steps[0].action else {
        panic!("not a connect")
    };
    let Some(Protocol::Stomp(options)) = &connect.protocol else {
        panic!("no STOMP")
    };
    assert_eq!(options.send_heartbeat, Some(std::time::Duration::from_secs(2)));
    assert_eq!(options.want_heartbeat, None);
    assert_eq!(options.headers.len(), 1);
    // The subprotocols STOMP over WebSocket names, offered when the step names none.
    let offered: Vec<String> = connect
        .subprotocols
        .iter()
        .map(|name| name.render(&empty_scope()).into_owned())
        .collect();
    assert_eq!(offered, ["v12.stomp", "v11.stomp"]);
    let Action::Stomp(subscribe) = &part.steps[1].action else {
        panic!("not a STOMP step")
    };
    assert!(matches!(
        subscribe.action,
        StompAction::Subscribe {
            ack: AckMode::Client,
            ..
        }
    ));
    assert_eq!(
        subscribe
            .receipt
            .map(|receipt| (receipt.timeout.as_secs(), receipt.wait)),
        Some((3, false))
    );
    assert_eq!(scenario.step_names[usize::from(subscribe.set)], "destination:/queue/a");
    let Action::Stomp(put) = &part.steps[2].action else {
        panic!("not a STOMP step")
    };
    assert_eq!(put.set, subscribe.set);
    let StompAction::Send { headers, .. } = &put.action else {
        panic!("not a send")
    };
    assert_eq!(
        headers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
        ["kind", "content-type"]
    );
    let Action::Stomp(file) = &part.steps[3].action else {
        panic!("not a STOMP step")
    };
    assert!(matches!(&file.action, StompAction::Send { body: StompBody::Bytes(bytes), .. } if bytes == &[0, 1, 2]));
    let events = part.events.as_ref().expect("destination sets");
    assert_eq!(
        scenario.step_names[usize::from(events.of("destination:", "/topic/b", u16::MAX))],
        "destination:/topic/b"
    );
    assert_eq!(
        scenario.step_names[usize::from(events.of("destination:", "/queue/elsewhere", u16::MAX))],
        "destination:*"
    );
}

fn empty_scope() -> Scope<'static> {
    static NAMED: std::sync::OnceLock<crate::Values> = std::sync::OnceLock::new();
    Scope {
        vu: 0,
        iteration: 0,
        vu_iteration: 0,
        agent: "",
        named: NAMED.get_or_init(Default::default),
        local: None,
    }
}

#[test]
fn bad_stomp_input_is_located() {
    let found = problems(
        "load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://h:1/ws', protocol: stomp, stomp: { heartbeat: { send: 10ms }, headers: { login: x } } }
  - stomp_subscribe: { destination: '/queue/${vu}', ack: sometimes }
  - stomp_send: { destination: /queue/a, text: a, file: body.bin, headers: { receipt: r } }
  - stomp_unsubscribe: {}
  - connect: { url: 'ws://h:1/', connection: plain }
  - stomp_send: { connection: plain, destination: /queue/a }
",
    );
    let fields: Vec<&str> = found.iter().map(|problem| problem.field.as_str()).collect();
    for wanted in [
        "steps[0].connect.stomp.heartbeat.send",
        "steps[0].connect.stomp.headers.login",
        "steps[1].stomp_subscribe.destination",
        "steps[1].stomp_subscribe.ack",
        "steps[2].stomp_send",
        "steps[2].stomp_send.headers.receipt",
        "steps[3].stomp_unsubscribe",
        "steps[5].stomp_send",
    ] {
        assert!(fields.contains(&wanted), "{wanted} not in {found:#?}");
    }
    let plain = found
        .iter()
        .find(|problem| problem.field == "steps[5].stomp_send")
        .unwrap();
    assert!(
        plain.message.contains("needs a connection that speaks `stomp`"),
        "{}",
        plain.message
    );
    assert_eq!(plain.location.map(|at| at.line), Some(8));
    let mode = found
        .iter()
        .find(|problem| problem.field == "steps[1].stomp_subscribe.ack")
        .unwrap();
    assert!(mode.hint.as_deref().unwrap_or("").contains("client-individual"));
}

#[test]
fn stomp_error_and_heartbeat_timeout_are_error_kinds_rules_name() {
    let scenario = compile(&format!(
        "{SESSION}on_error:\n  - {{ kinds: [stomp_error, heartbeat_timeout, connect_error], then: end_iteration }}\n"
    ));
    assert!(scenario.is_ok(), "{:?}", scenario.err());
    let found =
        problems("load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://h:1/', stomp: { login: x } }\n");
    assert_eq!(found[0].field, "steps[0].connect.stomp", "{found:#?}");
}
