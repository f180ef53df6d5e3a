use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::*;
use crate::error::Problem;
use crate::positions::Positions;
use crate::template::Scope;

/// Variables `device` is known; file `blob.bin` came with the scenario.
struct Known(BTreeMap<String, Vec<u8>>);

impl Fields for Known {
    fn template(&self, text: &str, field: &str, problems: &mut Problems<'_>) -> Option<Template> {
        match Template::compile(text, &|name| name == "device") {
            Ok(template) => Some(template),
            Err(error) => {
                problems.add(field, error.to_string(), None);
                None
            }
        }
    }

    fn file(&self, name: &str, field: &str, problems: &mut Problems<'_>) -> Vec<u8> {
        self.0.get(name).cloned().unwrap_or_else(|| {
            problems.add(field, format!("file `{name}` did not come with the scenario"), None);
            Vec::new()
        })
    }
}

fn known() -> Known {
    Known(BTreeMap::from([("blob.bin".to_owned(), vec![0, 1, 2])]))
}

/// Compiles the YAML under `field` at the top of `source`; returns the result and the problems
/// with their lines.
fn compile<R: DeserializeOwned, T>(
    source: &str,
    field: &str,
    build: impl FnOnce(&R, &str, &dyn Fields, &mut Problems<'_>) -> T,
) -> (T, Vec<Problem>) {
    let document: BTreeMap<String, R> = serde_norway::from_str(source).expect("the YAML parses");
    let raw = &document[field];
    let positions = Positions::index(source);
    let mut problems = Problems::new("s.yaml", &positions);
    let compiled = build(raw, field, &known(), &mut problems);
    let found = problems
        .into_result(())
        .err()
        .map(|error| error.problems().to_vec())
        .unwrap_or_default();
    (compiled, found)
}

fn fields(found: &[Problem]) -> Vec<(&str, usize)> {
    found
        .iter()
        .map(|problem| (problem.field.as_str(), problem.location.map_or(0, |at| at.line)))
        .collect()
}

fn render(template: &Template, device: &str) -> String {
    let named = crate::Values::default();
    let local = crate::Values::from_iter([("device".to_owned(), device.to_owned())]);
    let scope = Scope {
        vu: 4,
        iteration: 0,
        vu_iteration: 0,
        agent: "a",
        named: &named,
        local: Some(&local),
    };
    template.render(&scope).into_owned()
}

#[test]
fn options_have_mqtt_js_defaults() {
    let (options, found) = compile("mqtt: {}\n", "mqtt", compile_options);
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(options.version, Version::V311);
    assert!(options.client_id.is_none(), "a random id per connection");
    assert!(options.clean);
    assert_eq!(options.keep_alive, DEFAULT_KEEP_ALIVE);
}

#[test]
fn full_v5_options_compile() {
    let source = "\
mqtt:
  version: 5
  client_id: 'dev-${device}-${vu}'
  clean: false
  username: fleet
  password: '${device}'
  keep_alive: 30s
  will:
    topic: 'status/${device}'
    payload: offline
    qos: 1
    retain: true
    delay: 5s
    properties: { message_expiry: 1m, user_properties: { why: gone } }
  properties:
    session_expiry: 1h
    receive_maximum: 10
    user_properties: { tenant: acme }
";
    let (options, found) = compile(source, "mqtt", compile_options);
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(options.version, Version::V5);
    assert_eq!(render(options.client_id.as_ref().unwrap(), "d7"), "dev-d7-4");
    assert!(!options.clean);
    assert_eq!(options.keep_alive, 30);
    let will = options.will.unwrap();
    assert_eq!(render(&will.topic, "d7"), "status/d7");
    assert_eq!((will.qos, will.retain, will.delay), (1, true, Some(5)));
    assert_eq!(will.properties.message_expiry, Some(60));
    assert_eq!(options.session_expiry, Some(3600));
    assert_eq!(options.receive_maximum, Some(10));
    assert_eq!(options.user_properties.len(), 1);
}

#[test]
fn option_problems_are_located() {
    let source = "\
mqtt:
  version: 3.2
  client_id: same-for-all
  keep_alive: 70000
  will: { topic: 'a/+', qos: 3, delay: 5s }
  properties: { receive_maximum: 0 }
";
    let (_, found) = compile(source, "mqtt", compile_options);
    assert_eq!(
        fields(&found),
        vec![
            ("mqtt.version", 2),
            ("mqtt.client_id", 3),
            ("mqtt.keep_alive", 4),
            ("mqtt.will.topic", 5),
            ("mqtt.will.qos", 5),
            ("mqtt.will.delay", 5),
            ("mqtt.properties", 6),
            ("mqtt.properties.receive_maximum", 6),
        ],
        "{found:#?}"
    );
    assert!(found[0].hint.as_deref().unwrap().contains("version: 5"));
    assert!(found[6].message.contains("MQTT 5.0 only"));
}

/// `delivery_stamp` defaults to the property on 5.0 and to none on 3.1.1; `payload` and `off`
/// compile on both, `property` only on 5.0.
#[test]
fn delivery_stamp_defaults_by_version() {
    let stamp = |source: &str| {
        let (options, found) = compile(source, "mqtt", compile_options);
        assert!(found.is_empty(), "{source}: {found:?}");
        options.delivery_stamp
    };
    assert_eq!(stamp("mqtt: {}\n"), DeliveryStamp::Off);
    assert_eq!(stamp("mqtt: { version: 5 }\n"), DeliveryStamp::Property);
    assert_eq!(stamp("mqtt: { delivery_stamp: payload }\n"), DeliveryStamp::Payload);
    assert_eq!(
        stamp("mqtt: { version: 3.1.1, delivery_stamp: off }\n"),
        DeliveryStamp::Off
    );
    assert_eq!(
        stamp("mqtt: { version: 5, delivery_stamp: payload }\n"),
        DeliveryStamp::Payload
    );
    assert_eq!(
        stamp("mqtt: { version: 5, delivery_stamp: 'off' }\n"),
        DeliveryStamp::Off
    );
    // Unquoted `off` on version 5, whose default is `property`.
    assert_eq!(stamp("mqtt: { version: 5, delivery_stamp: off }\n"), DeliveryStamp::Off);
    assert_eq!(
        stamp("mqtt: { version: 5, delivery_stamp: property }\n"),
        DeliveryStamp::Property
    );
}

#[test]
fn delivery_stamp_problems_are_located() {
    let source = "\
three:
  delivery_stamp: property
five:
  version: 5
  delivery_stamp: header
";
    let (options, found) = compile(source, "three", compile_options);
    assert_eq!(fields(&found), vec![("three.delivery_stamp", 2)], "{found:#?}");
    assert!(found[0].message.contains("3.1.1 has no properties"), "{found:#?}");
    assert!(found[0].hint.as_deref().unwrap().contains("delivery_stamp: payload"));
    assert_eq!(options.delivery_stamp, DeliveryStamp::Off);
    let (_, found) = compile(source, "five", compile_options);
    assert_eq!(fields(&found), vec![("five.delivery_stamp", 5)], "{found:#?}");
    assert!(found[0].message.contains("`header`"), "{found:#?}");
}

#[test]
fn publish_compiles_payloads_and_checks_topics() {
    let source = "\
text: { topic: 'sensors/${device}/t', payload: 'v=${device}', qos: 2, retain: true, ack: { timeout: 2s } }
file: { topic: t, payload: { file: blob.bin } }
";
    let (publish, found) = compile(source, "text", |raw, field, fields, problems| {
        compile_publish(raw, Version::V311, field, fields, problems)
    });
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(render(&publish.topic, "d1"), "sensors/d1/t");
    let Payload::Text(payload) = &publish.payload else {
        panic!("text")
    };
    assert_eq!(render(payload, "d1"), "v=d1");
    assert_eq!((publish.qos, publish.retain), (2, true));
    assert_eq!(publish.ack_timeout, Some(Duration::from_secs(2)));
    let (publish, found) = compile(source, "file", |raw, field, fields, problems| {
        compile_publish(raw, Version::V311, field, fields, problems)
    });
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(publish.payload, Payload::Bytes(vec![0, 1, 2]));
    assert_eq!(publish.ack_timeout, None);
}

#[test]
fn publish_problems_are_located() {
    let source = "\
publish:
  topic: 'sensors/#/${device}'
  payload: { text: a, file: blob.bin }
  qos: 0
  ack: {}
  properties: { message_expiry: 1.5s }
";
    let (_, found) = compile(source, "publish", |raw, field, fields, problems| {
        compile_publish(raw, Version::V311, field, fields, problems)
    });
    assert_eq!(
        fields(&found),
        vec![
            ("publish.topic", 2),
            ("publish.payload", 3),
            ("publish.properties", 6),
            ("publish.properties.message_expiry", 6),
            ("publish.ack", 5),
        ],
        "{found:#?}"
    );
    // A `+` inside a variable's expression is not a wildcard.
    let source = "publish: { topic: 'n/${vu + 1}' }\n";
    let (_, found) = compile(source, "publish", |raw, field, fields, problems| {
        compile_publish(raw, Version::V311, field, fields, problems)
    });
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn subscribe_filters_with_options() {
    let source = "\
subscribe:
  qos: 1
  filters:
    - 'sensors/+/temp'
    - { filter: 'cmd/${device}/#', qos: 2, no_local: true, retain_handling: new }
";
    let (subscribe, found) = compile(source, "subscribe", |raw, field, fields, problems| {
        compile_subscribe(raw, Version::V5, field, fields, problems)
    });
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(subscribe.filters[0].qos, 1);
    assert_eq!(subscribe.filters[0].written, "sensors/+/temp");
    let second = &subscribe.filters[1];
    assert_eq!(render(&second.filter, "d2"), "cmd/d2/#");
    assert_eq!((second.qos, second.no_local, second.retain_handling), (2, true, 1));
    assert_eq!(subscribe.timeout, DEFAULT_ACK_TIMEOUT);
}

#[test]
fn subscribe_problems_are_located() {
    let source = "\
subscribe:
  filters:
    - 'a/#/b'
    - { filter: 'x/+', no_local: true, retain_handling: sometimes }
    - 'a/#/b'
  timeout: soon
";
    let (_, found) = compile(source, "subscribe", |raw, field, fields, problems| {
        compile_subscribe(raw, Version::V311, field, fields, problems)
    });
    assert_eq!(
        fields(&found),
        vec![
            ("subscribe.filters[0]", 3),
            ("subscribe.filters[1]", 4),
            ("subscribe.filters[1].retain_handling", 4),
            ("subscribe.filters[2]", 5),
            ("subscribe.filters[2]", 5),
            ("subscribe.timeout", 6),
        ],
        "{found:#?}"
    );
    assert!(found[3].message.contains("listed twice") || found[4].message.contains("listed twice"));
}

#[test]
fn unsubscribe_and_disconnect() {
    let source = "unsubscribe: { filters: ['a/+', ''] }\n";
    let (unsubscribe, found) = compile(source, "unsubscribe", |raw, field, fields, problems| {
        compile_unsubscribe(raw, Version::V5, field, fields, problems)
    });
    assert_eq!(fields(&found), vec![("unsubscribe.filters[1]", 1)]);
    assert_eq!(unsubscribe.filters.len(), 2);
    let source = "\ndisconnect: { with_will: true }\n";
    let (_, found) = compile(source, "disconnect", |raw, field, _, problems| {
        compile_disconnect(raw, Version::V311, field, problems)
    });
    assert_eq!(fields(&found), vec![("disconnect.with_will", 2)]);
}
