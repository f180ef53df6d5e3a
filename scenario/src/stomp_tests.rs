//! STOMP scenarios: what compiles (options, steps, destination sets, templated destinations and
//! their sets, transactions, header conditions, the subprotocols offered) and what is refused,
//! each problem located with its field.

use super::*;
use crate::matcher::{EventTags, FrameKind, Incoming};
use crate::protocol::stomp::{key_matches, set_key, AckMode, StompAction, StompBody, Transaction};
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
  - stomp_subscribe: { destination: '/queue/${nope}', ack: sometimes }
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

/// Each `${...}` of a destination is a `*` in its set's name, and a `*` stands for any text
/// when a destination is looked up among the sets.
#[test]
fn a_templated_destination_names_its_set_with_stars() {
    let known = ["room".to_owned()];
    let key = |text: &str| set_key(&Template::compile_with_scripts(text, &known).unwrap());
    assert_eq!(key("/topic/room.${vu % 3}"), "/topic/room.*");
    assert_eq!(key("/queue/${room}-${vu}.in"), "/queue/*-*.in");
    assert_eq!(key("/queue/fixed"), "/queue/fixed");
    // `$${` is a literal `${`, not a variable.
    assert_eq!(key("/queue/$${x}"), "/queue/${x}");
    for (pattern, destination, wanted) in [
        ("/topic/room.*", "/topic/room.2", true),
        ("/topic/room.*", "/topic/room.", true),
        ("/topic/room.*", "/topic/hall.2", false),
        ("/queue/*-*.in", "/queue/a-7.in", true),
        ("/queue/*-*.in", "/queue/a-7.out", false),
        ("/queue/*-*.in", "/queue/a.in", false),
        ("/queue/fixed", "/queue/fixed", true),
        ("/queue/fixed", "/queue/fixed2", false),
        ("*", "/anything", true),
    ] {
        assert_eq!(key_matches(pattern, destination), wanted, "{pattern} ~ {destination}");
    }
}

const ROOMS: &str = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://127.0.0.1:9/ws', protocol: stomp }
  - stomp_subscribe: { destination: '/topic/room.${vu % 3}', receipt: true }
  - stomp_begin: { name: open, receipt: true }
  - stomp_send: { name: say, destination: '/topic/room.${vu % 3}', text: hi, transaction: true }
  - stomp_commit: { name: done, receipt: true }
  - stomp_begin: { transaction: 'pay-${vu}' }
  - stomp_send: { destination: /queue/fixed, text: x, transaction: 'pay-${vu}' }
  - stomp_abort: { transaction: 'pay-${vu}' }
  - receive: { match: { destination: '/topic/room.${vu % 3}' } }
  - stomp_ack: { transaction: true }
  - stomp_unsubscribe: { destination: '/topic/room.${vu % 3}' }
";

#[test]
fn templated_destinations_and_transactions_compile() {
    let scenario = compile(ROOMS).unwrap();
    let part = &scenario.parts[0];
    let stomp = |index: usize| match &part.steps[index].action {
        Action::Stomp(step) => step.as_ref().clone(),
        other => panic!("not a STOMP step: {other:?}"),
    };
    let subscribe = stomp(1);
    assert_eq!(
        scenario.step_names[usize::from(subscribe.set)],
        "destination:/topic/room.*"
    );
    let StompAction::Subscribe { destination, .. } = &subscribe.action else {
        panic!("not a subscribe")
    };
    let mut scope = empty_scope();
    scope.vu = 4;
    assert_eq!(destination.render(&scope), "/topic/room.1");
    // The send to the same template counts in the same set.
    let say = stomp(3);
    assert_eq!(say.set, subscribe.set);
    assert!(matches!(
        say.action,
        StompAction::Send {
            transaction: Some(Transaction::Open),
            ..
        }
    ));
    // BEGIN, COMMIT and ABORT time their receipts in their own sets.
    let open = stomp(2);
    assert!(matches!(open.action, StompAction::Begin { id: None }));
    assert_eq!(scenario.step_names[usize::from(open.set)], "open");
    assert!(open.receipt.is_some());
    let done = stomp(4);
    assert!(matches!(done.action, StompAction::End { commit: true, id: None }));
    assert_eq!(scenario.step_names[usize::from(done.set)], "done");
    let StompAction::Begin { id: Some(named) } = &stomp(5).action else {
        panic!("not a named begin")
    };
    assert_eq!(named.render(&scope), "pay-4");
    assert!(matches!(
        &stomp(6).action,
        StompAction::Send { transaction: Some(Transaction::Id(id)), .. } if id.render(&scope) == "pay-4"
    ));
    assert!(matches!(
        stomp(7).action,
        StompAction::End {
            commit: false,
            id: Some(_)
        }
    ));
    assert!(matches!(
        stomp(9).action,
        StompAction::Ack {
            transaction: Some(Transaction::Open),
            ..
        }
    ));
    let unsubscribe = stomp(10);
    assert_eq!(unsubscribe.set, subscribe.set);
    // The receive matches the VU's own room, rendered.
    let Action::Receive(receive) = &part.steps[8].action else {
        panic!("not a receive")
    };
    let matcher = receive.matcher.as_ref().expect("a match");
    let delivery = |destination: &'static str| Incoming {
        bytes: b"hi",
        kind: FrameKind::Text,
        event: Some(EventTags {
            name: destination,
            namespace: "sub-0",
            headers: &[],
        }),
    };
    assert!(matcher.matches(delivery("/topic/room.1"), &scope).unwrap());
    assert!(!matcher.matches(delivery("/topic/room.2"), &scope).unwrap());
    // Deliveries to any room count in the rooms' set (when no subscription says otherwise);
    // others in `destination:*`.
    let events = part.events.as_ref().expect("destination sets");
    let set_of =
        |destination: &str| scenario.step_names[usize::from(events.of("destination:", destination, u16::MAX))].clone();
    assert_eq!(set_of("/topic/room.2"), "destination:/topic/room.*");
    assert_eq!(set_of("/queue/fixed"), "destination:/queue/fixed");
    assert_eq!(set_of("/topic/hall"), "destination:*");
}

#[test]
fn bad_templated_destinations_and_transactions_are_located() {
    let found = problems(
        "load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://h:1/ws', protocol: stomp }
  - stomp_subscribe: { destination: '/topic/room.${vu' }
  - stomp_send: { destination: '', text: a, transaction: '' }
  - stomp_send: { destination: '/queue/${nobody}', text: a, headers: { transaction: t } }
  - stomp_begin: { transaction: '${nobody}' }
  - stomp_commit: { transaction: '' }
  - stomp_ack: { transaction: '${nobody}' }
  - receive: { match: { destination: '/topic/${nobody}' } }
  - connect: { url: 'ws://h:1/', connection: plain }
  - stomp_abort: { connection: plain }
",
    );
    let fields: Vec<&str> = found.iter().map(|problem| problem.field.as_str()).collect();
    for wanted in [
        "steps[1].stomp_subscribe.destination",
        "steps[2].stomp_send.destination",
        "steps[2].stomp_send.transaction",
        "steps[3].stomp_send.destination",
        "steps[3].stomp_send.headers.transaction",
        "steps[4].stomp_begin.transaction",
        "steps[5].stomp_commit.transaction",
        "steps[6].stomp_ack.transaction",
        "steps[7].receive.match.event",
        "steps[9].stomp_abort",
    ] {
        assert!(fields.contains(&wanted), "{wanted} not in {found:#?}");
    }
    let unknown = found
        .iter()
        .find(|problem| problem.field == "steps[3].stomp_send.destination")
        .unwrap();
    assert!(unknown.message.contains("nobody"), "{}", unknown.message);
    assert_eq!(unknown.location.map(|at| at.line), Some(6));
    let empty = found
        .iter()
        .find(|problem| problem.field == "steps[2].stomp_send.destination")
        .unwrap();
    assert!(empty.message.contains("cannot be empty"), "{}", empty.message);
}

/// Only a templated destination's `*`s stand for any text: a literal `*` (RabbitMQ's own
/// wildcard) is itself, and takes no deliveries its subscription does not place. A literal
/// destination equal to a templated one's set name is refused, naming both.
#[test]
fn literal_stars_are_not_patterns_and_cannot_share_a_templated_set() {
    let scenario = compile(
        "load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://h:1/ws', protocol: stomp }
  - stomp_subscribe: { destination: '/exchange/amq.topic/alerts.*' }
  - stomp_subscribe: { destination: '/topic/room.${vu}' }
",
    )
    .unwrap();
    let part = &scenario.parts[0];
    let events = part.events.as_ref().expect("destination sets");
    let set_of =
        |destination: &str| scenario.step_names[usize::from(events.of("destination:", destination, u16::MAX))].clone();
    assert_eq!(set_of("/exchange/amq.topic/alerts.fire"), "destination:*");
    assert_eq!(
        set_of("/exchange/amq.topic/alerts.*"),
        "destination:/exchange/amq.topic/alerts.*"
    );
    assert_eq!(set_of("/topic/room.3"), "destination:/topic/room.*");
    let found = problems(
        "load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://h:1/ws', protocol: stomp }
  - stomp_subscribe: { destination: '/topic/room.${vu}' }
  - stomp_send: { destination: '/topic/room.*', text: a }
",
    );
    let clash = found
        .iter()
        .find(|problem| problem.field == "steps[2].stomp_send.destination")
        .unwrap_or_else(|| panic!("no clash in {found:#?}"));
    assert!(
        clash.message.contains("steps[1].stomp_subscribe.destination"),
        "{}",
        clash.message
    );
}
