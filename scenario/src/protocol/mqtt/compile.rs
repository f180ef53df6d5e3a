//! Compiling MQTT options and steps: every value checked, every problem located at its field
//! with what to write instead. Templates and files come through [`Fields`], which the step
//! builder implements (known variables, shipped files).

use std::collections::BTreeMap;
use std::time::Duration;

use super::topic::{filter_problem, has_wildcards, topic_problem};
use super::{
    DeliveryStamp, Disconnect, Filter, MessageProperties, Mqtt, Payload, Publish, RawDisconnect, RawFilter,
    RawMessageProperties, RawMqtt, RawPayload, RawPublish, RawScalar, RawSubscribe, RawUnsubscribe, Subscribe,
    Unsubscribe, Version, Will, DEFAULT_ACK_TIMEOUT, DEFAULT_KEEP_ALIVE,
};
use crate::duration::parse_duration;
use crate::error::Problems;
use crate::template::Template;

/// What compiling needs from the step builder.
pub(crate) trait Fields {
    /// A template that may read the variables known here; a problem (located at `field`) and
    /// `None` when it cannot compile.
    fn template(&self, text: &str, field: &str, problems: &mut Problems<'_>) -> Option<Template>;
    /// A file shipped with the scenario; a problem and no bytes when it did not come.
    fn file(&self, name: &str, field: &str, problems: &mut Problems<'_>) -> Vec<u8>;
}

const V5_HINT: &str = "add `version: 5` to the connect step's `mqtt` options";

/// A connect step's `mqtt` options.
pub(crate) fn compile_options(raw: &RawMqtt, field: &str, fields: &dyn Fields, problems: &mut Problems<'_>) -> Mqtt {
    let version = match raw.version.as_ref().map(RawScalar::text).as_deref() {
        None | Some("3.1.1") | Some("4") => Version::V311,
        Some("5") | Some("5.0") => Version::V5,
        Some(other) => {
            problems.add(
                &format!("{field}.version"),
                format!("MQTT version `{other}` is not one wsfleet speaks"),
                Some("write `version: 3.1.1` (the default) or `version: 5`".into()),
            );
            Version::V311
        }
    };
    let client_id = raw
        .client_id
        .as_ref()
        .and_then(|text| fields.template(text, &format!("{field}.client_id"), problems));
    if client_id.as_ref().and_then(Template::as_literal).is_some() {
        problems.add(
            &format!("{field}.client_id"),
            "every connection would use the same client id, and brokers end the older session of a client id when a new one connects",
            Some("make it unique per connection, e.g. `client_id: 'device-${agent}-${vu}'`, or leave it out for a random one".into()),
        );
    }
    let username = raw
        .username
        .as_ref()
        .and_then(|text| fields.template(text, &format!("{field}.username"), problems));
    let password = raw
        .password
        .as_ref()
        .and_then(|text| fields.template(text, &format!("{field}.password"), problems));
    let keep_alive = match &raw.keep_alive {
        None => DEFAULT_KEEP_ALIVE,
        Some(value) => seconds_u16(value, &format!("{field}.keep_alive"), problems),
    };
    let will = raw.will.as_ref().map(|will| {
        let at = format!("{field}.will");
        let topic = checked_topic(&will.topic, &format!("{at}.topic"), fields, problems);
        let payload = payload(will.payload.as_ref(), &format!("{at}.payload"), fields, problems);
        let qos = qos(will.qos, &format!("{at}.qos"), problems);
        let delay = will.delay.as_deref().map(|text| {
            v5_only(version, &format!("{at}.delay"), "a will delay", problems);
            seconds_u32(text, &format!("{at}.delay"), problems)
        });
        let properties = message_properties(
            will.properties.as_ref(),
            version,
            &format!("{at}.properties"),
            fields,
            problems,
        );
        Will {
            topic,
            payload,
            qos,
            retain: will.retain,
            delay,
            properties,
        }
    });
    let delivery_stamp = delivery_stamp(
        raw.delivery_stamp.as_deref(),
        version,
        &format!("{field}.delivery_stamp"),
        problems,
    );
    let mut options = Mqtt {
        version,
        client_id,
        clean: raw.clean.unwrap_or(true),
        username,
        password,
        keep_alive,
        will,
        delivery_stamp,
        session_expiry: None,
        receive_maximum: None,
        maximum_packet_size: None,
        user_properties: Vec::new(),
    };
    if let Some(properties) = &raw.properties {
        let at = format!("{field}.properties");
        v5_only(version, &at, "CONNECT properties", problems);
        options.session_expiry = properties
            .session_expiry
            .as_deref()
            .map(|text| seconds_u32(text, &format!("{at}.session_expiry"), problems));
        if properties.receive_maximum == Some(0) {
            problems.add(
                &format!("{at}.receive_maximum"),
                "a receive maximum of 0 is a protocol error",
                Some("give at least 1, or leave it out (65,535)".into()),
            );
        }
        options.receive_maximum = properties.receive_maximum;
        options.maximum_packet_size = properties.maximum_packet_size;
        options.user_properties = user_properties(
            &properties.user_properties,
            &format!("{at}.user_properties"),
            fields,
            problems,
        );
    }
    if options.client_id.is_none() && raw.client_id.is_none() && !options.clean && version == Version::V311 {
        problems.add(
            &format!("{field}.clean"),
            "MQTT 3.1.1 keeps a session only for a client id the client chose",
            Some("give a `client_id` to resume sessions, or leave `clean` at true".into()),
        );
    }
    options
}

/// `delivery_stamp`: `property` (5.0 only, its default), `payload`, or `off` (3.1.1's default).
fn delivery_stamp(written: Option<&str>, version: Version, field: &str, problems: &mut Problems<'_>) -> DeliveryStamp {
    let default = match version {
        Version::V5 => DeliveryStamp::Property,
        Version::V311 => DeliveryStamp::Off,
    };
    match written {
        None => default,
        Some("property") if version == Version::V311 => {
            problems.add(
                field,
                "MQTT 3.1.1 has no properties to carry the send stamp in",
                Some("write `delivery_stamp: payload` (the stamp goes in front of the payload and subscribers strip it), or add `version: 5`".into()),
            );
            default
        }
        Some("property") => DeliveryStamp::Property,
        Some("payload") => DeliveryStamp::Payload,
        Some("off") => DeliveryStamp::Off,
        Some(other) => {
            problems.add(
                field,
                format!("`{other}` is not a place for the send stamp"),
                Some("write `property` (5.0), `payload` or `off`".into()),
            );
            default
        }
    }
}

/// A `publish` step.
pub(crate) fn compile_publish(
    raw: &RawPublish,
    version: Version,
    field: &str,
    fields: &dyn Fields,
    problems: &mut Problems<'_>,
) -> Publish {
    let topic = checked_topic(&raw.topic, &format!("{field}.topic"), fields, problems);
    let qos = qos(raw.qos, &format!("{field}.qos"), problems);
    let payload = payload(raw.payload.as_ref(), &format!("{field}.payload"), fields, problems);
    let properties = message_properties(
        raw.properties.as_ref(),
        version,
        &format!("{field}.properties"),
        fields,
        problems,
    );
    let ack_timeout = raw.ack.as_ref().map(|ack| {
        if qos == 0 {
            problems.add(
                &format!("{field}.ack"),
                "a QoS 0 publish has no acknowledgement to wait for",
                Some("give `qos: 1` or `qos: 2`, or drop `ack`".into()),
            );
        }
        duration(
            ack.timeout.as_deref(),
            &format!("{field}.ack.timeout"),
            DEFAULT_ACK_TIMEOUT,
            problems,
        )
    });
    Publish {
        topic,
        payload,
        qos,
        retain: raw.retain,
        properties,
        ack_timeout,
    }
}

/// A `subscribe` step.
pub(crate) fn compile_subscribe(
    raw: &RawSubscribe,
    version: Version,
    field: &str,
    fields: &dyn Fields,
    problems: &mut Problems<'_>,
) -> Subscribe {
    if raw.filters.is_empty() {
        problems.add(
            &format!("{field}.filters"),
            "a subscribe needs at least one topic filter",
            Some("write e.g. `filters: ['sensors/+/temperature']`".into()),
        );
    }
    let default_qos = qos(raw.qos, &format!("{field}.qos"), problems);
    let mut filters: Vec<Filter> = Vec::new();
    for (index, filter) in raw.filters.iter().enumerate() {
        let at = format!("{field}.filters[{index}]");
        let compiled = match filter {
            RawFilter::Filter(text) => Filter {
                written: text.clone(),
                filter: checked_filter(text, &at, fields, problems),
                qos: default_qos,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            },
            RawFilter::Spec(spec) => {
                let options = spec.no_local || spec.retain_as_published || spec.retain_handling.is_some();
                if options {
                    v5_only(version, &at, "subscription options", problems);
                }
                let retain_handling = match spec.retain_handling.as_deref() {
                    None | Some("send") => 0,
                    Some("new") => 1,
                    Some("never") => 2,
                    Some(other) => {
                        problems.add(
                            &format!("{at}.retain_handling"),
                            format!("unknown retain handling `{other}`"),
                            Some(
                                "write `send` (on every subscribe), `new` (only for a new subscription) or `never`"
                                    .into(),
                            ),
                        );
                        0
                    }
                };
                Filter {
                    written: spec.filter.clone(),
                    filter: checked_filter(&spec.filter, &format!("{at}.filter"), fields, problems),
                    qos: spec
                        .qos
                        .map_or(default_qos, |level| qos(Some(level), &format!("{at}.qos"), problems)),
                    no_local: spec.no_local,
                    retain_as_published: spec.retain_as_published,
                    retain_handling,
                }
            }
        };
        if filters.iter().any(|known| known.written == compiled.written) {
            problems.add(&at, format!("filter `{}` is listed twice", compiled.written), None);
        }
        filters.push(compiled);
    }
    if !raw.user_properties.is_empty() {
        v5_only(
            version,
            &format!("{field}.user_properties"),
            "user properties",
            problems,
        );
    }
    Subscribe {
        filters,
        timeout: duration(
            raw.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_ACK_TIMEOUT,
            problems,
        ),
        user_properties: user_properties(
            &raw.user_properties,
            &format!("{field}.user_properties"),
            fields,
            problems,
        ),
    }
}

/// An `unsubscribe` step.
pub(crate) fn compile_unsubscribe(
    raw: &RawUnsubscribe,
    version: Version,
    field: &str,
    fields: &dyn Fields,
    problems: &mut Problems<'_>,
) -> Unsubscribe {
    if raw.filters.is_empty() {
        problems.add(
            &format!("{field}.filters"),
            "an unsubscribe needs at least one topic filter",
            Some("list the filters a subscribe step subscribed to".into()),
        );
    }
    let filters = raw
        .filters
        .iter()
        .enumerate()
        .map(|(index, text)| checked_filter(text, &format!("{field}.filters[{index}]"), fields, problems))
        .collect();
    if !raw.user_properties.is_empty() {
        v5_only(
            version,
            &format!("{field}.user_properties"),
            "user properties",
            problems,
        );
    }
    Unsubscribe {
        filters,
        timeout: duration(
            raw.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_ACK_TIMEOUT,
            problems,
        ),
        user_properties: user_properties(
            &raw.user_properties,
            &format!("{field}.user_properties"),
            fields,
            problems,
        ),
    }
}

/// A `disconnect` step.
pub(crate) fn compile_disconnect(
    raw: &RawDisconnect,
    version: Version,
    field: &str,
    problems: &mut Problems<'_>,
) -> Disconnect {
    if raw.with_will {
        v5_only(
            version,
            &format!("{field}.with_will"),
            "a DISCONNECT that keeps the will",
            problems,
        );
    }
    Disconnect {
        with_will: raw.with_will,
    }
}

fn v5_only(version: Version, field: &str, what: &str, problems: &mut Problems<'_>) {
    if version == Version::V311 {
        problems.add(
            field,
            format!("{what}: MQTT 5.0 only, and this connection speaks 3.1.1"),
            Some(V5_HINT.into()),
        );
    }
}

fn qos(level: Option<u8>, field: &str, problems: &mut Problems<'_>) -> u8 {
    match level {
        None => 0,
        Some(level @ 0..=2) => level,
        Some(other) => {
            problems.add(
                field,
                format!("QoS {other} does not exist"),
                Some("write 0, 1 or 2".into()),
            );
            0
        }
    }
}

/// A topic name template; its fixed text is checked now (a variable may not add wildcards,
/// which the agent checks when it renders one).
fn checked_topic(text: &str, field: &str, fields: &dyn Fields, problems: &mut Problems<'_>) -> Template {
    let template = fields
        .template(text, field, problems)
        .unwrap_or_else(|| Template::literal(text));
    let problem = match template.as_literal() {
        Some(fixed) => topic_problem(fixed),
        None if has_wildcards(&mask_variables(text)) => topic_problem("+"),
        None => None,
    };
    if let Some(problem) = problem {
        problems.add(
            field,
            format!("`{text}`: {problem}"),
            Some("publish to a topic such as `sensors/${vu}/temperature`".into()),
        );
    }
    template
}

fn checked_filter(text: &str, field: &str, fields: &dyn Fields, problems: &mut Problems<'_>) -> Template {
    let template = fields
        .template(text, field, problems)
        .unwrap_or_else(|| Template::literal(text));
    // Variables fill levels or parts of them, never wildcards: the written levels hold.
    let shape = match template.as_literal() {
        Some(fixed) => fixed.to_owned(),
        None => mask_variables(text),
    };
    if let Some(problem) = filter_problem(&shape) {
        problems.add(
            field,
            format!("`{text}`: {problem}"),
            Some("write e.g. `sensors/+/temperature` or `sensors/#`".into()),
        );
    }
    template
}

/// `text` with each `${...}` as one `x`, to check what is written around variables.
fn mask_variables(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        masked.push_str(&rest[..start]);
        masked.push('x');
        rest = match rest[start..].find('}') {
            Some(end) => &rest[start + end + 1..],
            None => "",
        };
    }
    masked.push_str(rest);
    masked
}

fn payload(raw: Option<&RawPayload>, field: &str, fields: &dyn Fields, problems: &mut Problems<'_>) -> Payload {
    match raw {
        None => Payload::Bytes(Vec::new()),
        Some(RawPayload::Text(text)) => Payload::Text(
            fields
                .template(text, field, problems)
                .unwrap_or_else(|| Template::literal("")),
        ),
        Some(RawPayload::Spec(spec)) => match (&spec.text, &spec.file) {
            (Some(text), None) => Payload::Text(
                fields
                    .template(text, &format!("{field}.text"), problems)
                    .unwrap_or_else(|| Template::literal("")),
            ),
            (None, Some(file)) => Payload::Bytes(fields.file(file, &format!("{field}.file"), problems)),
            _ => {
                problems.add(
                    field,
                    "a payload is a text or a file",
                    Some("write `payload: 'text ${vu}'`, `payload: { text: ... }` or `payload: { file: path }`".into()),
                );
                Payload::Bytes(Vec::new())
            }
        },
    }
}

fn message_properties(
    raw: Option<&RawMessageProperties>,
    version: Version,
    field: &str,
    fields: &dyn Fields,
    problems: &mut Problems<'_>,
) -> MessageProperties {
    let Some(raw) = raw else {
        return MessageProperties::default();
    };
    v5_only(version, field, "message properties", problems);
    let optional = |text: &Option<String>, name: &str, problems: &mut Problems<'_>| {
        text.as_ref()
            .and_then(|text| fields.template(text, &format!("{field}.{name}"), problems))
    };
    let response_topic = optional(&raw.response_topic, "response_topic", problems);
    if let (Some(text), Some(template)) = (&raw.response_topic, &response_topic) {
        if let Some(problem) = template.as_literal().and_then(topic_problem) {
            problems.add(&format!("{field}.response_topic"), format!("`{text}`: {problem}"), None);
        }
    }
    MessageProperties {
        user_properties: user_properties(
            &raw.user_properties,
            &format!("{field}.user_properties"),
            fields,
            problems,
        ),
        message_expiry: raw
            .message_expiry
            .as_deref()
            .map(|text| seconds_u32(text, &format!("{field}.message_expiry"), problems)),
        content_type: optional(&raw.content_type, "content_type", problems),
        response_topic,
        correlation_data: optional(&raw.correlation_data, "correlation_data", problems),
        utf8: raw.utf8,
    }
}

fn user_properties(
    raw: &BTreeMap<String, String>,
    field: &str,
    fields: &dyn Fields,
    problems: &mut Problems<'_>,
) -> Vec<(String, Template)> {
    raw.iter()
        .filter_map(|(name, value)| {
            fields
                .template(value, &format!("{field}.{name}"), problems)
                .map(|template| (name.clone(), template))
        })
        .collect()
}

fn duration(text: Option<&str>, field: &str, default: Duration, problems: &mut Problems<'_>) -> Duration {
    match text.map(parse_duration) {
        None => default,
        Some(Ok(duration)) => duration,
        Some(Err(message)) => {
            problems.add(field, message, None);
            default
        }
    }
}

/// Whole seconds of a duration (`30s`, `1h`) up to `limit`.
fn seconds(text: &str, field: &str, limit: u64, problems: &mut Problems<'_>) -> u64 {
    let duration = match parse_duration(text) {
        Ok(duration) => duration,
        Err(message) => {
            problems.add(field, message, None);
            return 0;
        }
    };
    if duration.subsec_nanos() != 0 {
        problems.add(
            field,
            format!("`{text}` is not whole seconds, which is all MQTT counts"),
            Some("write e.g. `30s`".into()),
        );
    }
    if duration.as_secs() > limit {
        problems.add(field, format!("`{text}` is past MQTT's limit of {limit} seconds"), None);
        return limit;
    }
    duration.as_secs()
}

fn seconds_u32(text: &str, field: &str, problems: &mut Problems<'_>) -> u32 {
    seconds(text, field, u64::from(u32::MAX), problems) as u32
}

/// A keep-alive: a number of seconds, or a duration.
fn seconds_u16(value: &RawScalar, field: &str, problems: &mut Problems<'_>) -> u16 {
    let limit = u64::from(u16::MAX);
    match value {
        RawScalar::Number(number) if *number <= limit => *number as u16,
        RawScalar::Number(_) => {
            problems.add(
                field,
                format!("past MQTT's limit of {limit} seconds (18 h 12 min)"),
                None,
            );
            u16::MAX
        }
        RawScalar::Float(_) => {
            problems.add(
                field,
                "MQTT counts whole seconds",
                Some("write e.g. `keep_alive: 30` or `30s`".into()),
            );
            0
        }
        RawScalar::Text(text) => seconds(text, field, limit, problems) as u16,
    }
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
