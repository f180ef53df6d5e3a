//! MQTT's options and steps in the step builder: `connect: { protocol: mqtt, mqtt: {...} }`,
//! `mqtt_publish`, `mqtt_subscribe`, `mqtt_unsubscribe`, `mqtt_disconnect`, and the metric sets
//! of topics and topic filters (`topic:sensors/+/temperature`). The values themselves are
//! compiled in `scenario/src/protocol/mqtt/compile.rs`.

use crate::error::Problems;
use crate::protocol::mqtt::{
    compile_disconnect, compile_options, compile_publish, compile_subscribe, compile_unsubscribe, set_key,
    DisconnectStep, Fields, PublishStep, RawDisconnect, RawMqtt, RawPublish, RawSubscribe, RawUnsubscribe,
    SubscribeStep, UnsubscribeStep, Version, TOPIC_SET_PREFIX,
};
use crate::protocol::Protocol;
use crate::raw::RawConnect;
use crate::steps::{Action, ConnId, Step};
use crate::template::Template;

use super::super::builder::{At, StepBuilder};
use super::super::fields::{compile_template, flush};

impl Fields for StepBuilder<'_> {
    fn template(&self, text: &str, field: &str, problems: &mut Problems<'_>) -> Option<Template> {
        compile_template(text, field, &self.known, problems)
    }

    fn file(&self, name: &str, field: &str, problems: &mut Problems<'_>) -> Vec<u8> {
        StepBuilder::file(self, name, field, problems)
    }
}

impl StepBuilder<'_> {
    /// `protocol: mqtt` with its `mqtt` options; notes the connection's version.
    pub(super) fn mqtt_options(&mut self, connect: &RawConnect, field: &str, problems: &mut Problems<'_>) -> Protocol {
        let default = RawMqtt::default();
        let raw = connect.mqtt.as_deref().unwrap_or(&default);
        let options = compile_options(raw, &format!("{field}.mqtt"), self, problems);
        let connection = connect
            .connection
            .clone()
            .unwrap_or_else(|| crate::steps::DEFAULT_CONNECTION.to_owned());
        self.mqtt_versions.insert(connection, options.version);
        Protocol::Mqtt(Box::new(options))
    }

    /// The MQTT version of a connection's connect step (3.1.1 when it speaks something else,
    /// which `require_protocol` reports).
    fn mqtt_version(&self, conn: ConnId) -> Version {
        self.connections
            .get(conn)
            .and_then(|name| self.mqtt_versions.get(name))
            .copied()
            .unwrap_or(Version::V5)
    }

    pub(in crate::validate) fn mqtt_publish_step(
        &mut self,
        raw: &RawPublish,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, raw.name.as_ref(), raw.connection.as_ref(), connected, problems);
        let field = at.field;
        self.require_protocol(conn, "mqtt", field, at.kind, problems);
        let publish = compile_publish(raw, self.mqtt_version(conn), field, self, problems);
        let topic_set = self.event_set(TOPIC_SET_PREFIX, &set_key(&raw.topic));
        let flush = flush(
            raw.flush.as_deref(),
            &format!("{field}.flush"),
            self.default_flush,
            problems,
        );
        Step {
            id,
            name,
            action: Action::MqttPublish(Box::new(PublishStep {
                conn,
                publish,
                topic_set,
                flush,
            })),
        }
    }

    pub(in crate::validate) fn mqtt_subscribe_step(
        &mut self,
        raw: &RawSubscribe,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, raw.name.as_ref(), raw.connection.as_ref(), connected, problems);
        self.require_protocol(conn, "mqtt", at.field, at.kind, problems);
        let subscribe = compile_subscribe(raw, self.mqtt_version(conn), at.field, self, problems);
        for filter in &subscribe.filters {
            self.event_set(TOPIC_SET_PREFIX, &set_key(&filter.written));
        }
        Step {
            id,
            name,
            action: Action::MqttSubscribe(Box::new(SubscribeStep { conn, subscribe })),
        }
    }

    pub(in crate::validate) fn mqtt_unsubscribe_step(
        &mut self,
        raw: &RawUnsubscribe,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, raw.name.as_ref(), raw.connection.as_ref(), connected, problems);
        self.require_protocol(conn, "mqtt", at.field, at.kind, problems);
        let unsubscribe = compile_unsubscribe(raw, self.mqtt_version(conn), at.field, self, problems);
        Step {
            id,
            name,
            action: Action::MqttUnsubscribe(Box::new(UnsubscribeStep { conn, unsubscribe })),
        }
    }

    pub(in crate::validate) fn mqtt_disconnect_step(
        &mut self,
        raw: &RawDisconnect,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, raw.name.as_ref(), raw.connection.as_ref(), connected, problems);
        self.require_protocol(conn, "mqtt", at.field, at.kind, problems);
        let disconnect = compile_disconnect(raw, self.mqtt_version(conn), at.field, problems);
        Step {
            id,
            name,
            action: Action::MqttDisconnect(Box::new(DisconnectStep { conn, disconnect })),
        }
    }
}
