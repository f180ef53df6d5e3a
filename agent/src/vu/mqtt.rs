//! MQTT's steps on the protocol layer: the session a connect step's options make, and
//! `mqtt_publish` (acknowledgements of QoS 1 and 2 timed from the publish, awaited when the step
//! says so), `mqtt_subscribe` and `mqtt_unsubscribe` (each waits for its SUBACK or UNSUBACK),
//! `mqtt_disconnect`. Counted here: `events_sent` in the set of the publish's topic; the
//! acknowledgements' `acks_received` and `ack_latency` go to the same set (QoS 1: PUBACK, QoS 2:
//! PUBCOMP) or to the subscribe step's own set. A publish carries its send stamp where the
//! connection's `delivery_stamp` says (`protocol::mqtt::stamp`); a delivery's, read by the
//! layer, is timed by [`delivery_latency`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use wsfleet_metrics::{Counter, ErrorKind, SetId};
use wsfleet_scenario::protocol::mqtt::{
    DeliveryStamp, DisconnectStep, Filter, MessageProperties, Mqtt, Payload, PublishStep, SubscribeStep,
    UnsubscribeStep, Version,
};
use wsfleet_scenario::{ConnId, Scope, Step, StepId};

use super::closing::close_connection;
use super::outcome::{Failure, StepResult};
use super::protocol::due_at;
use super::state::Vu;
use crate::clock;
use crate::failure::FailureKind;
use crate::protocol::mqtt::{self, layer::Connection, stamp, QoS, SendError, Session};
use crate::protocol::Event;

/// How long `mqtt_disconnect` waits for the server's close frame after its own.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The MQTT session of a new connection: its options rendered in `scope`; a connection without
/// a `client_id` gets a random one (`wsfleet-` and 16 hex digits), as MQTT.js makes `mqttjs_…`.
pub(super) fn session(options: &Mqtt, scope: &Scope<'_>) -> Connection {
    let render = |template: &wsfleet_scenario::Template| template.render(scope).into_owned();
    let client_id = options
        .client_id
        .as_ref()
        .map(render)
        .unwrap_or_else(|| format!("wsfleet-{:016x}", rand::random::<u64>()));
    let will = options.will.as_ref().map(|will| mqtt::Will {
        topic: render(&will.topic),
        payload: payload(&will.payload, scope),
        qos: QoS::from_u8(will.qos).unwrap_or_default(),
        retain: will.retain,
        delay: will.delay,
        properties: properties(&will.properties, scope),
    });
    let connect = mqtt::Connect {
        client_id,
        clean: options.clean,
        keep_alive: options.keep_alive,
        username: options.username.as_ref().map(render),
        password: options.password.as_ref().map(render),
        will,
        session_expiry: options.session_expiry,
        receive_maximum: options.receive_maximum,
        maximum_packet_size: options.maximum_packet_size,
        user_properties: pairs(&options.user_properties, scope),
    };
    let version = match options.version {
        Version::V311 => mqtt::Version::V311,
        Version::V5 => mqtt::Version::V5,
    };
    Connection::new(Session::new(version, connect), options.delivery_stamp)
}

fn payload(payload: &Payload, scope: &Scope<'_>) -> Bytes {
    match payload {
        Payload::Text(template) => Bytes::from(template.render(scope).into_owned()),
        Payload::Bytes(bytes) => Bytes::from(bytes.clone()),
    }
}

fn pairs(pairs: &[(String, wsfleet_scenario::Template)], scope: &Scope<'_>) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.clone(), value.render(scope).into_owned()))
        .collect()
}

fn properties(properties: &MessageProperties, scope: &Scope<'_>) -> mqtt::MessageProperties {
    let render = |template: &wsfleet_scenario::Template| template.render(scope).into_owned();
    mqtt::MessageProperties {
        user_properties: pairs(&properties.user_properties, scope),
        message_expiry: properties.message_expiry,
        content_type: properties.content_type.as_ref().map(render),
        response_topic: properties.response_topic.as_ref().map(render),
        correlation_data: properties
            .correlation_data
            .as_ref()
            .map(|template| Bytes::from(render(template))),
        utf8_payload: properties.utf8,
    }
}

/// From the send stamp of a delivery (read by the layer) to its arrival at `arrived`; `None`
/// when it carried no usable one (`deliveries_untimed`).
pub(super) fn delivery_latency(event: &Event, arrived: Instant) -> Option<Duration> {
    let sent = event.sent_micros?;
    // The wall clock at the arrival: now, less what passed since.
    let since = clock::now().saturating_duration_since(arrived);
    let arrived_micros = stamp::unix_micros_now().saturating_sub(since.as_micros() as i64);
    Some(stamp::latency(sent, arrived_micros))
}

/// Puts the send stamp of `sent_micros` where `delivery_stamp` says. An empty retained payload
/// stays empty: it deletes the topic's retained message, which a stamp would replace instead.
fn stamp_publish(packet: &mut mqtt::Publish, delivery_stamp: DeliveryStamp, sent_micros: i64) {
    match delivery_stamp {
        DeliveryStamp::Property => packet
            .properties
            .user_properties
            .push((stamp::PROPERTY.to_owned(), stamp::encode(sent_micros))),
        DeliveryStamp::Payload if !(packet.retain && packet.payload.is_empty()) => {
            packet.payload = stamp::stamp_payload(&packet.payload, sent_micros);
        }
        DeliveryStamp::Payload | DeliveryStamp::Off => {}
    }
}

/// The failure of a packet the session would not send.
fn refused(step: StepId, error: SendError) -> Failure {
    tracing::debug!(kind = error.kind, why = %error.message, "an MQTT packet not sent");
    let kind = if error.kind == "mqtt_not_connected" {
        ErrorKind::Closed
    } else {
        ErrorKind::MqttFailure
    };
    Failure::new(step, kind)
}

impl Vu {
    /// The MQTT session of `conn`, or the step fails (`closed` when the connection is gone).
    fn mqtt_connection(&mut self, conn: ConnId, step: StepId) -> Result<&mut Connection, Failure> {
        let conn = self.conn_mut(conn, step)?;
        conn.protocol
            .as_mut()
            .and_then(|speaking| speaking.layer.as_mqtt())
            .ok_or_else(|| Failure::new(step, ErrorKind::Protocol))
    }

    /// Sends a packet the session made on `conn`, counted in the step's set.
    async fn send_packet(
        &mut self,
        conn: ConnId,
        message: Message,
        step: &Step,
        flush: wsfleet_scenario::Flush,
        iteration: u64,
    ) -> StepResult {
        self.send_message(conn, message, 1, flush, SetId::Step(step.id), step.id, iteration)
            .await
    }

    /// Tracks the acknowledgement of packet `id`, timed from `sent`, and waits for it when
    /// `timeout` is given.
    async fn mqtt_ack(
        &mut self,
        conn: ConnId,
        id: u16,
        step: StepId,
        ack_set: StepId,
        timeout: Option<Duration>,
        iteration: u64,
    ) -> StepResult {
        // Timed from when the packet left (from when it was due, when a paced iteration runs
        // late); a packet held for a batch leaves now.
        let sent = match timeout {
            Some(_) => self.flush_held(step, iteration).await?.unwrap_or_else(clock::now),
            None => clock::now(),
        };
        let due = due_at(sent, self.lag);
        {
            let conn = self.conn_mut(conn, step)?;
            let Some(speaking) = conn.protocol.as_mut() else {
                return Err(Failure::new(step, ErrorKind::Closed).into());
            };
            speaking.expect_ack(u64::from(id), step, ack_set, due, timeout.is_some());
        }
        let Some(timeout) = timeout else {
            return Ok(());
        };
        self.recent = None;
        self.await_ack(
            conn,
            u64::from(id),
            sent + timeout,
            step,
            iteration,
            ErrorKind::AckTimeout,
        )
        .await
        .map(drop)
    }

    /// `mqtt_publish`: the PUBLISH (held back by the session while the server's receive
    /// maximum is reached), then, for QoS 1 and 2, its acknowledgement tracked and, with `ack`,
    /// awaited.
    pub(super) async fn mqtt_publish_step(&mut self, step: &Step, publish: &PublishStep, iteration: u64) -> StepResult {
        let mut packet = {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            let message = &publish.publish;
            mqtt::Publish {
                topic: message.topic.render(&scope).into_owned(),
                payload: payload(&message.payload, &scope),
                qos: QoS::from_u8(message.qos).unwrap_or_default(),
                retain: message.retain,
                properties: properties(&message.properties, &scope),
                ..mqtt::Publish::default()
            }
        };
        let qos = packet.qos;
        let now = clock::now();
        let connection = self.mqtt_connection(publish.conn, step.id)?;
        // Stamped with the wall clock of the instant its send is counted at, for a subscriber's
        // `delivery_latency`.
        stamp_publish(&mut packet, connection.delivery_stamp, stamp::unix_micros_now());
        let (id, message) = connection
            .session
            .publish(packet)
            .map_err(|error| refused(step.id, error))?;
        connection.sent_at(now);
        if let Some(message) = message {
            self.send_packet(publish.conn, message, step, publish.flush, iteration)
                .await?;
        }
        self.env
            .recorder
            .borrow_mut()
            .add(now, SetId::Step(publish.topic_set), Counter::EventsSent, 1);
        if qos == QoS::AtMostOnce {
            return Ok(());
        }
        self.mqtt_ack(
            publish.conn,
            id,
            step.id,
            publish.topic_set,
            publish.publish.ack_timeout,
            iteration,
        )
        .await
    }

    /// `mqtt_subscribe`: the SUBSCRIBE, and the wait for its SUBACK (a refused filter fails the
    /// step as `mqtt_failure`).
    pub(super) async fn mqtt_subscribe_step(
        &mut self,
        step: &Step,
        subscribe: &SubscribeStep,
        iteration: u64,
    ) -> StepResult {
        let (filters, user_properties) = {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            let filters: Vec<mqtt::Filter> = subscribe
                .subscribe
                .filters
                .iter()
                .map(|filter: &Filter| mqtt::Filter {
                    filter: filter.filter.render(&scope).into_owned(),
                    qos: QoS::from_u8(filter.qos).unwrap_or_default(),
                    no_local: filter.no_local,
                    retain_as_published: filter.retain_as_published,
                    retain_handling: filter.retain_handling,
                })
                .collect();
            (filters, pairs(&subscribe.subscribe.user_properties, &scope))
        };
        let now = clock::now();
        let connection = self.mqtt_connection(subscribe.conn, step.id)?;
        let (id, message) = connection
            .session
            .subscribe(filters, user_properties)
            .map_err(|error| refused(step.id, error))?;
        connection.sent_at(now);
        self.send_packet(subscribe.conn, message, step, wsfleet_scenario::Flush::Each, iteration)
            .await?;
        self.mqtt_ack(
            subscribe.conn,
            id,
            step.id,
            step.id,
            Some(subscribe.subscribe.timeout),
            iteration,
        )
        .await
    }

    /// `mqtt_unsubscribe`: the UNSUBSCRIBE, and the wait for its UNSUBACK.
    pub(super) async fn mqtt_unsubscribe_step(
        &mut self,
        step: &Step,
        unsubscribe: &UnsubscribeStep,
        iteration: u64,
    ) -> StepResult {
        let (filters, user_properties) = {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            let filters: Vec<String> = unsubscribe
                .unsubscribe
                .filters
                .iter()
                .map(|filter| filter.render(&scope).into_owned())
                .collect();
            (filters, pairs(&unsubscribe.unsubscribe.user_properties, &scope))
        };
        let now = clock::now();
        let connection = self.mqtt_connection(unsubscribe.conn, step.id)?;
        let (id, message) = connection
            .session
            .unsubscribe(filters, user_properties)
            .map_err(|error| refused(step.id, error))?;
        connection.sent_at(now);
        self.send_packet(
            unsubscribe.conn,
            message,
            step,
            wsfleet_scenario::Flush::Each,
            iteration,
        )
        .await?;
        self.mqtt_ack(
            unsubscribe.conn,
            id,
            step.id,
            step.id,
            Some(unsubscribe.unsubscribe.timeout),
            iteration,
        )
        .await
    }

    /// `mqtt_disconnect`: DISCONNECT (5.0: keeping the will when asked), then the WebSocket's
    /// close (1000), waiting for the server's close frame or its closing the connection.
    pub(super) async fn mqtt_disconnect_step(
        &mut self,
        step: &Step,
        disconnect: &DisconnectStep,
        iteration: u64,
    ) -> StepResult {
        let connection = self.mqtt_connection(disconnect.conn, step.id)?;
        let message = connection.session.disconnect_message(disconnect.disconnect.with_will);
        self.send_packet(disconnect.conn, message, step, wsfleet_scenario::Flush::Each, iteration)
            .await?;
        self.flush_held(step.id, iteration).await?;
        let Some(mut conn) = self.conns.get_mut(disconnect.conn).and_then(Option::take) else {
            return Err(Failure::new(step.id, ErrorKind::Closed).into());
        };
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: Utf8Bytes::from_static(""),
        };
        // MQTT's server closes the network connection on DISCONNECT, with or without a close
        // frame (mosquitto races the two): an ending without one is the protocol's ending.
        match close_connection(&mut conn, frame, CLOSE_TIMEOUT, step.id, SetId::Step(step.id)).await {
            Ok(_) => Ok(()),
            Err(failure) if matches!(failure.kind, FailureKind::Catalog(ErrorKind::Reset | ErrorKind::Closed)) => {
                Ok(())
            }
            Err(failure) => Err(failure.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(sent_micros: Option<i64>) -> Event {
        Event {
            sent_micros,
            ..Event::new("fanout/1/data", "", "q1 from 1")
        }
    }

    /// A stamped delivery is timed from its stamp to its arrival, one from a clock ahead counts
    /// as 0, and one without a stamp is not timed.
    #[test]
    fn a_delivery_is_timed_from_its_stamp() {
        // Sent 5 ms before it is read, and arrived after that read (1 µs of truncation either way).
        let sent = stamp::unix_micros_now() - 5_000;
        let arrived = clock::now();
        let latency = delivery_latency(&delivery(Some(sent)), arrived).unwrap();
        assert!(
            latency >= Duration::from_micros(4_999) && latency < Duration::from_secs(1),
            "{latency:?}"
        );
        let ahead = stamp::unix_micros_now() + 60_000_000;
        assert_eq!(delivery_latency(&delivery(Some(ahead)), arrived), Some(Duration::ZERO));
        assert_eq!(delivery_latency(&delivery(None), arrived), None);
    }

    /// Each option puts the stamp in its place and nowhere else; an empty retained payload (a
    /// deletion) keeps no payload stamp, an empty one that is not retained gets one.
    #[test]
    fn a_publish_is_stamped_where_its_connection_says() {
        let stamped = |delivery_stamp, payload: &'static [u8], retain| {
            let mut packet = mqtt::Publish {
                topic: "t".into(),
                payload: Bytes::from_static(payload),
                retain,
                ..mqtt::Publish::default()
            };
            packet
                .properties
                .user_properties
                .push(("unit".into(), "celsius".into()));
            stamp_publish(&mut packet, delivery_stamp, 1_764_509_000_123_456);
            let names: Vec<String> = packet
                .properties
                .user_properties
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            (packet.payload, names.join(","))
        };
        let unit = || "unit=celsius".to_owned();
        assert_eq!(
            stamped(DeliveryStamp::Off, b"21", false),
            (Bytes::from_static(b"21"), unit())
        );
        assert_eq!(
            stamped(DeliveryStamp::Property, b"21", false),
            (
                Bytes::from_static(b"21"),
                "unit=celsius,wsfleet-sent=1764509000123456".to_owned()
            )
        );
        assert_eq!(
            stamped(DeliveryStamp::Payload, b"21", true),
            (Bytes::from_static(b"wsfleet-sent:0001764509000123456;21"), unit())
        );
        assert_eq!(
            stamped(DeliveryStamp::Payload, b"", false),
            (Bytes::from_static(b"wsfleet-sent:0001764509000123456;"), unit())
        );
        assert_eq!(stamped(DeliveryStamp::Payload, b"", true), (Bytes::new(), unit()));
    }
}
