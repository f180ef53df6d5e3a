//! MQTT packets as the session needs them, one type for 3.1.1 and 5.0: what the client writes
//! ([`Outgoing`]) and what the server sends ([`Incoming`]), with reason codes as numbers (names
//! in `reason`). The bytes are rumqttc's codec (`mqttbytes::v4` for 3.1.1, `v5::mqttbytes::v5`
//! for 5.0), used without its client, event loop or TLS.
//!
//! [`Reader`] accumulates the bytes of binary WebSocket messages and yields whole packets: a
//! packet may span several messages and a message may carry several packets. Whether a packet is
//! complete is decided by its fixed header alone, so a packet that is whole but malformed is a
//! violation, never mistaken for one still arriving.

use bytes::{Buf, Bytes, BytesMut};
use rumqttc::mqttbytes::{self as m4, v4};
use rumqttc::v5::mqttbytes::{self as m5, v5};

/// The largest packet the reader buffers (fixed header excluded); past this a packet is a
/// violation, so a server cannot make the client buffer without bound.
pub const MAX_PACKET: usize = 16 * 1024 * 1024;

/// The protocol version a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    #[default]
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// A quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
#[repr(u8)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(level: u8) -> Option<QoS> {
        match level {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    fn to_v4(self) -> m4::QoS {
        match self {
            QoS::AtMostOnce => m4::QoS::AtMostOnce,
            QoS::AtLeastOnce => m4::QoS::AtLeastOnce,
            QoS::ExactlyOnce => m4::QoS::ExactlyOnce,
        }
    }

    fn to_v5(self) -> m5::QoS {
        match self {
            QoS::AtMostOnce => m5::QoS::AtMostOnce,
            QoS::AtLeastOnce => m5::QoS::AtLeastOnce,
            QoS::ExactlyOnce => m5::QoS::ExactlyOnce,
        }
    }
}

/// Why bytes are not an MQTT packet the client may receive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PacketError(pub String);

/// The MQTT 5.0 properties of an application message (PUBLISH, will); 3.1.1 has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    pub user_properties: Vec<(String, String)>,
    /// Seconds the broker keeps the message for subscribers that have not received it.
    pub message_expiry: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    /// Payload format indicator 1: the payload is UTF-8.
    pub utf8_payload: bool,
}

impl MessageProperties {
    fn is_empty(&self) -> bool {
        *self == MessageProperties::default()
    }

    fn to_publish(&self) -> Option<v5::PublishProperties> {
        if self.is_empty() {
            return None;
        }
        Some(v5::PublishProperties {
            payload_format_indicator: self.utf8_payload.then_some(1),
            message_expiry_interval: self.message_expiry,
            topic_alias: None,
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: self.content_type.clone(),
        })
    }
}

/// The will: what the broker publishes when the connection ends without a DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5.0: seconds the broker waits before publishing it.
    pub delay: Option<u32>,
    pub properties: MessageProperties,
}

/// What a CONNECT says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connect {
    pub client_id: String,
    /// Clean session (3.1.1) or clean start (5.0).
    pub clean: bool,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub will: Option<Will>,
    /// MQTT 5.0: seconds the broker keeps the session after the connection ends.
    pub session_expiry: Option<u32>,
    /// MQTT 5.0: QoS 1 and 2 deliveries the client takes in flight at once.
    pub receive_maximum: Option<u16>,
    /// MQTT 5.0: the largest packet the client takes.
    pub maximum_packet_size: Option<u32>,
    pub user_properties: Vec<(String, String)>,
}

/// A PUBLISH, either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    /// 0 at QoS 0.
    pub packet_id: u16,
    pub properties: MessageProperties,
}

/// One topic filter of a SUBSCRIBE, with its options (all but `qos` are MQTT 5.0's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub filter: String,
    pub qos: QoS,
    /// Do not deliver the client's own publishes back to it.
    pub no_local: bool,
    /// Keep the retain flag of forwarded messages as published.
    pub retain_as_published: bool,
    /// 0: send retained messages on subscribe; 1: only on a new subscription; 2: never.
    pub retain_handling: u8,
}

/// A packet the client writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Connect(Connect),
    Publish(Publish),
    PubAck {
        packet_id: u16,
        reason: u8,
    },
    PubRec {
        packet_id: u16,
        reason: u8,
    },
    PubRel {
        packet_id: u16,
        reason: u8,
    },
    PubComp {
        packet_id: u16,
        reason: u8,
    },
    Subscribe {
        packet_id: u16,
        filters: Vec<Filter>,
        user_properties: Vec<(String, String)>,
    },
    Unsubscribe {
        packet_id: u16,
        filters: Vec<String>,
        user_properties: Vec<(String, String)>,
    },
    PingReq,
    Disconnect {
        reason: u8,
    },
}

/// What a CONNACK says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// The MQTT 5.0 reason code (3.1.1's return codes mapped to the 5.0 codes that mean the
    /// same: `reason::connack_v311`).
    pub code: u8,
    pub assigned_client_id: Option<String>,
    /// MQTT 5.0: the keep-alive the server imposes, in seconds.
    pub server_keep_alive: Option<u16>,
    /// MQTT 5.0: QoS 1 and 2 publishes the server takes in flight at once.
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub maximum_qos: Option<u8>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<(String, String)>,
}

/// The answer to a packet id: PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: u16,
    /// 0 in 3.1.1.
    pub code: u8,
    pub reason_string: Option<String>,
}

/// A packet the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    /// One code per filter: the granted QoS (0-2) or a failure (0x80 and up).
    SubAck {
        packet_id: u16,
        codes: Vec<u8>,
        reason_string: Option<String>,
    },
    /// One code per filter in 5.0; none in 3.1.1.
    UnsubAck {
        packet_id: u16,
        codes: Vec<u8>,
        reason_string: Option<String>,
    },
    PingResp,
    /// MQTT 5.0: the server ends the connection, with a reason.
    Disconnect {
        code: u8,
        reason_string: Option<String>,
    },
}

/// Writes `packet` at the end of `out`.
pub fn encode(version: Version, packet: &Outgoing, out: &mut BytesMut) -> Result<(), PacketError> {
    // rumqttc 0.25 writes a 5.0 DISCONNECT with a reason code but no properties with a
    // remaining length one short; it is two or three bytes, written here.
    if let (Version::V5, Outgoing::Disconnect { reason }) = (version, packet) {
        match reason {
            0 => out.extend_from_slice(&[0xe0, 0x00]),
            code => out.extend_from_slice(&[0xe0, 0x01, *code]),
        }
        return Ok(());
    }
    let cannot = |error: &dyn std::fmt::Display| PacketError(format!("cannot encode the packet: {error}"));
    match version {
        Version::V311 => to_v4(packet)?.write(out, usize::MAX).map_err(|error| cannot(&error))?,
        Version::V5 => to_v5(packet)?.write(out, None).map_err(|error| cannot(&error))?,
    };
    Ok(())
}

fn to_v4(packet: &Outgoing) -> Result<v4::Packet, PacketError> {
    Ok(match packet {
        Outgoing::Connect(connect) => {
            let login = login(connect);
            v4::Packet::Connect(v4::Connect {
                protocol: m4::Protocol::V4,
                keep_alive: connect.keep_alive,
                client_id: connect.client_id.clone(),
                clean_session: connect.clean,
                last_will: connect.will.as_ref().map(|will| v4::LastWill {
                    topic: will.topic.clone(),
                    message: will.payload.clone(),
                    qos: will.qos.to_v4(),
                    retain: will.retain,
                }),
                login: login.map(|(username, password)| v4::Login { username, password }),
            })
        }
        Outgoing::Publish(publish) => v4::Packet::Publish(v4::Publish {
            dup: publish.dup,
            qos: publish.qos.to_v4(),
            retain: publish.retain,
            topic: publish.topic.clone(),
            pkid: publish.packet_id,
            payload: publish.payload.clone(),
        }),
        Outgoing::PubAck { packet_id, .. } => v4::Packet::PubAck(v4::PubAck { pkid: *packet_id }),
        Outgoing::PubRec { packet_id, .. } => v4::Packet::PubRec(v4::PubRec { pkid: *packet_id }),
        Outgoing::PubRel { packet_id, .. } => v4::Packet::PubRel(v4::PubRel { pkid: *packet_id }),
        Outgoing::PubComp { packet_id, .. } => v4::Packet::PubComp(v4::PubComp { pkid: *packet_id }),
        Outgoing::Subscribe { packet_id, filters, .. } => v4::Packet::Subscribe(v4::Subscribe {
            pkid: *packet_id,
            filters: filters
                .iter()
                .map(|filter| v4::SubscribeFilter::new(filter.filter.clone(), filter.qos.to_v4()))
                .collect(),
        }),
        Outgoing::Unsubscribe { packet_id, filters, .. } => v4::Packet::Unsubscribe(v4::Unsubscribe {
            pkid: *packet_id,
            topics: filters.clone(),
        }),
        Outgoing::PingReq => v4::Packet::PingReq,
        Outgoing::Disconnect { .. } => v4::Packet::Disconnect,
    })
}

fn to_v5(packet: &Outgoing) -> Result<v5::Packet, PacketError> {
    fn user(user_properties: &[(String, String)]) -> Vec<(String, String)> {
        user_properties.to_vec()
    }
    Ok(match packet {
        Outgoing::Connect(connect) => {
            let properties = (connect.session_expiry.is_some()
                || connect.receive_maximum.is_some()
                || connect.maximum_packet_size.is_some()
                || !connect.user_properties.is_empty())
            .then(|| v5::ConnectProperties {
                session_expiry_interval: connect.session_expiry,
                receive_maximum: connect.receive_maximum,
                max_packet_size: connect.maximum_packet_size,
                topic_alias_max: None,
                request_response_info: None,
                request_problem_info: None,
                user_properties: user(&connect.user_properties),
                authentication_method: None,
                authentication_data: None,
            });
            let will = connect.will.as_ref().map(|will| {
                let properties = &will.properties;
                v5::LastWill {
                    topic: Bytes::from(will.topic.clone()),
                    message: will.payload.clone(),
                    qos: will.qos.to_v5(),
                    retain: will.retain,
                    properties: (will.delay.is_some() || !properties.is_empty()).then(|| v5::LastWillProperties {
                        delay_interval: will.delay,
                        payload_format_indicator: properties.utf8_payload.then_some(1),
                        message_expiry_interval: properties.message_expiry,
                        content_type: properties.content_type.clone(),
                        response_topic: properties.response_topic.clone(),
                        correlation_data: properties.correlation_data.clone(),
                        user_properties: properties.user_properties.clone(),
                    }),
                }
            });
            let login = login(connect).map(|(username, password)| v5::Login { username, password });
            v5::Packet::Connect(
                v5::Connect {
                    keep_alive: connect.keep_alive,
                    client_id: connect.client_id.clone(),
                    clean_start: connect.clean,
                    properties,
                },
                will,
                login,
            )
        }
        Outgoing::Publish(publish) => v5::Packet::Publish(v5::Publish {
            dup: publish.dup,
            qos: publish.qos.to_v5(),
            retain: publish.retain,
            topic: Bytes::from(publish.topic.clone()),
            pkid: publish.packet_id,
            payload: publish.payload.clone(),
            properties: publish.properties.to_publish(),
        }),
        Outgoing::PubAck { packet_id, reason } => v5::Packet::PubAck(v5::PubAck {
            pkid: *packet_id,
            reason: puback_reason(*reason)?,
            properties: None,
        }),
        Outgoing::PubRec { packet_id, reason } => v5::Packet::PubRec(v5::PubRec {
            pkid: *packet_id,
            reason: pubrec_reason(*reason)?,
            properties: None,
        }),
        Outgoing::PubRel { packet_id, reason } => v5::Packet::PubRel(v5::PubRel {
            pkid: *packet_id,
            reason: match reason {
                0 => v5::PubRelReason::Success,
                _ => v5::PubRelReason::PacketIdentifierNotFound,
            },
            properties: None,
        }),
        Outgoing::PubComp { packet_id, reason } => v5::Packet::PubComp(v5::PubComp {
            pkid: *packet_id,
            reason: match reason {
                0 => v5::PubCompReason::Success,
                _ => v5::PubCompReason::PacketIdentifierNotFound,
            },
            properties: None,
        }),
        Outgoing::Subscribe {
            packet_id,
            filters,
            user_properties,
        } => v5::Packet::Subscribe(v5::Subscribe {
            pkid: *packet_id,
            filters: filters
                .iter()
                .map(|filter| v5::Filter {
                    path: filter.filter.clone(),
                    qos: filter.qos.to_v5(),
                    nolocal: filter.no_local,
                    preserve_retain: filter.retain_as_published,
                    retain_forward_rule: match filter.retain_handling {
                        0 => v5::RetainForwardRule::OnEverySubscribe,
                        1 => v5::RetainForwardRule::OnNewSubscribe,
                        _ => v5::RetainForwardRule::Never,
                    },
                })
                .collect(),
            properties: (!user_properties.is_empty()).then(|| v5::SubscribeProperties {
                id: None,
                user_properties: user(user_properties),
            }),
        }),
        Outgoing::Unsubscribe {
            packet_id,
            filters,
            user_properties,
        } => v5::Packet::Unsubscribe(v5::Unsubscribe {
            pkid: *packet_id,
            filters: filters.clone(),
            properties: (!user_properties.is_empty()).then(|| v5::UnsubscribeProperties {
                user_properties: user(user_properties),
            }),
        }),
        Outgoing::PingReq => v5::Packet::PingReq(v5::PingReq),
        Outgoing::Disconnect { reason } => v5::Packet::Disconnect(v5::Disconnect {
            reason_code: v5::DisconnectReasonCode::try_from(*reason)
                .map_err(|_| PacketError(format!("0x{reason:02x} is not a DISCONNECT reason code")))?,
            properties: None,
        }),
    })
}

/// Username and password as rumqttc writes them: an empty one is left out.
fn login(connect: &Connect) -> Option<(String, String)> {
    if connect.username.is_none() && connect.password.is_none() {
        return None;
    }
    Some((
        connect.username.clone().unwrap_or_default(),
        connect.password.clone().unwrap_or_default(),
    ))
}

fn puback_reason(code: u8) -> Result<v5::PubAckReason, PacketError> {
    use v5::PubAckReason::*;
    Ok(match code {
        0x00 => Success,
        0x10 => NoMatchingSubscribers,
        0x80 => UnspecifiedError,
        0x83 => ImplementationSpecificError,
        0x87 => NotAuthorized,
        0x90 => TopicNameInvalid,
        0x91 => PacketIdentifierInUse,
        0x97 => QuotaExceeded,
        0x99 => PayloadFormatInvalid,
        other => return Err(PacketError(format!("0x{other:02x} is not a PUBACK reason code"))),
    })
}

fn pubrec_reason(code: u8) -> Result<v5::PubRecReason, PacketError> {
    use v5::PubRecReason::*;
    Ok(match code {
        0x00 => Success,
        0x10 => NoMatchingSubscribers,
        0x80 => UnspecifiedError,
        0x83 => ImplementationSpecificError,
        0x87 => NotAuthorized,
        0x90 => TopicNameInvalid,
        0x91 => PacketIdentifierInUse,
        0x97 => QuotaExceeded,
        0x99 => PayloadFormatInvalid,
        other => return Err(PacketError(format!("0x{other:02x} is not a PUBREC reason code"))),
    })
}

/// Accumulates received bytes and yields whole packets.
#[derive(Debug, Default)]
pub struct Reader {
    buffer: BytesMut,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes of a packet not yet complete.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole packet, `None` while the next one is incomplete.
    pub fn next_packet(&mut self, version: Version) -> Result<Option<Incoming>, PacketError> {
        let Some((length, frame)) = self.frame()? else {
            return Ok(None);
        };
        let kind = self.buffer[0] >> 4;
        // MQTT 5.0's DISCONNECT may end before its properties (a reason code alone) or before
        // its reason code (0); rumqttc 0.25 reads neither.
        if version == Version::V5 && kind == 14 && length < 2 {
            let code = if length == 1 { self.buffer[frame - 1] } else { 0 };
            self.buffer.advance(frame);
            return Ok(Some(Incoming::Disconnect {
                code,
                reason_string: None,
            }));
        }
        let packet = match version {
            Version::V311 => v4::Packet::read(&mut self.buffer, MAX_PACKET)
                .map_err(|error| malformed(kind, error))
                .and_then(from_v4),
            Version::V5 => v5::Packet::read(&mut self.buffer, Some(MAX_PACKET as u32))
                .map_err(|error| malformed(kind, error))
                .and_then(from_v5),
        };
        packet.map(Some)
    }

    /// The remaining length and whole length of the next packet, once all of it is here.
    fn frame(&self) -> Result<Option<(usize, usize)>, PacketError> {
        let bytes = &self.buffer[..];
        if bytes.is_empty() {
            return Ok(None);
        }
        let mut length = 0usize;
        for (index, byte) in bytes.iter().skip(1).take(4).enumerate() {
            length |= usize::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                if length > MAX_PACKET {
                    return Err(PacketError(format!(
                        "a packet of {length} bytes, past the {MAX_PACKET}-byte limit"
                    )));
                }
                let whole = 1 + index + 1 + length;
                return Ok((bytes.len() >= whole).then_some((length, whole)));
            }
        }
        if bytes.len() >= 5 {
            return Err(PacketError("a remaining length longer than four bytes".into()));
        }
        Ok(None)
    }
}

fn malformed(kind: u8, error: impl std::fmt::Display) -> PacketError {
    PacketError(format!("malformed {} packet: {error}", kind_name(kind)))
}

/// The name of a packet type (the high four bits of its first byte).
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved",
    }
}

fn client_only(name: &str) -> PacketError {
    PacketError(format!("a {name} packet, which servers do not send"))
}

fn from_v4(packet: v4::Packet) -> Result<Incoming, PacketError> {
    let ack = |packet_id| Ack {
        packet_id,
        code: 0,
        reason_string: None,
    };
    Ok(match packet {
        v4::Packet::ConnAck(connack) => Incoming::ConnAck(ConnAck {
            session_present: connack.session_present,
            code: super::reason::connack_v311(connack.code as u8),
            ..ConnAck::default()
        }),
        v4::Packet::Publish(publish) => Incoming::Publish(Publish {
            topic: publish.topic,
            payload: publish.payload,
            qos: qos_v4(publish.qos),
            retain: publish.retain,
            dup: publish.dup,
            packet_id: publish.pkid,
            properties: MessageProperties::default(),
        }),
        v4::Packet::PubAck(puback) => Incoming::PubAck(ack(puback.pkid)),
        v4::Packet::PubRec(pubrec) => Incoming::PubRec(ack(pubrec.pkid)),
        v4::Packet::PubRel(pubrel) => Incoming::PubRel(ack(pubrel.pkid)),
        v4::Packet::PubComp(pubcomp) => Incoming::PubComp(ack(pubcomp.pkid)),
        v4::Packet::SubAck(suback) => Incoming::SubAck {
            packet_id: suback.pkid,
            codes: suback
                .return_codes
                .into_iter()
                .map(|code| match code {
                    v4::SubscribeReasonCode::Success(qos) => qos_v4(qos) as u8,
                    v4::SubscribeReasonCode::Failure => 0x80,
                })
                .collect(),
            reason_string: None,
        },
        v4::Packet::UnsubAck(unsuback) => Incoming::UnsubAck {
            packet_id: unsuback.pkid,
            codes: Vec::new(),
            reason_string: None,
        },
        v4::Packet::PingResp => Incoming::PingResp,
        v4::Packet::Disconnect => return Err(client_only("DISCONNECT (3.1.1)")),
        v4::Packet::Connect(_) => return Err(client_only("CONNECT")),
        v4::Packet::Subscribe(_) => return Err(client_only("SUBSCRIBE")),
        v4::Packet::Unsubscribe(_) => return Err(client_only("UNSUBSCRIBE")),
        v4::Packet::PingReq => return Err(client_only("PINGREQ")),
    })
}

fn qos_v4(qos: m4::QoS) -> QoS {
    match qos {
        m4::QoS::AtMostOnce => QoS::AtMostOnce,
        m4::QoS::AtLeastOnce => QoS::AtLeastOnce,
        m4::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos_v5(qos: m5::QoS) -> QoS {
    match qos {
        m5::QoS::AtMostOnce => QoS::AtMostOnce,
        m5::QoS::AtLeastOnce => QoS::AtLeastOnce,
        m5::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn from_v5(packet: v5::Packet) -> Result<Incoming, PacketError> {
    Ok(match packet {
        v5::Packet::ConnAck(connack) => {
            let mut answer = ConnAck {
                session_present: connack.session_present,
                code: super::reason::connack_v5(connack.code),
                ..ConnAck::default()
            };
            if let Some(properties) = connack.properties {
                answer.assigned_client_id = properties.assigned_client_identifier;
                answer.server_keep_alive = properties.server_keep_alive;
                answer.receive_maximum = properties.receive_max;
                answer.maximum_packet_size = properties.max_packet_size;
                answer.maximum_qos = properties.max_qos;
                answer.reason_string = properties.reason_string;
                answer.user_properties = properties.user_properties;
            }
            Incoming::ConnAck(answer)
        }
        v5::Packet::Publish(publish) => {
            let properties = publish.properties.unwrap_or_default();
            if properties.topic_alias.is_some() {
                return Err(PacketError(
                    "a PUBLISH with a topic alias, which the client did not allow (topic alias maximum 0)".into(),
                ));
            }
            let topic = String::from_utf8(publish.topic.to_vec())
                .map_err(|_| PacketError("a PUBLISH whose topic is not UTF-8".into()))?;
            Incoming::Publish(Publish {
                topic,
                payload: publish.payload,
                qos: qos_v5(publish.qos),
                retain: publish.retain,
                dup: publish.dup,
                packet_id: publish.pkid,
                properties: MessageProperties {
                    user_properties: properties.user_properties,
                    message_expiry: properties.message_expiry_interval,
                    content_type: properties.content_type,
                    response_topic: properties.response_topic,
                    correlation_data: properties.correlation_data,
                    utf8_payload: properties.payload_format_indicator == Some(1),
                },
            })
        }
        v5::Packet::PubAck(puback) => Incoming::PubAck(Ack {
            packet_id: puback.pkid,
            code: super::reason::puback_v5(puback.reason),
            reason_string: puback.properties.and_then(|properties| properties.reason_string),
        }),
        v5::Packet::PubRec(pubrec) => Incoming::PubRec(Ack {
            packet_id: pubrec.pkid,
            code: super::reason::pubrec_v5(pubrec.reason),
            reason_string: pubrec.properties.and_then(|properties| properties.reason_string),
        }),
        v5::Packet::PubRel(pubrel) => Incoming::PubRel(Ack {
            packet_id: pubrel.pkid,
            code: match pubrel.reason {
                v5::PubRelReason::Success => 0,
                v5::PubRelReason::PacketIdentifierNotFound => 0x92,
            },
            reason_string: pubrel.properties.and_then(|properties| properties.reason_string),
        }),
        v5::Packet::PubComp(pubcomp) => Incoming::PubComp(Ack {
            packet_id: pubcomp.pkid,
            code: match pubcomp.reason {
                v5::PubCompReason::Success => 0,
                v5::PubCompReason::PacketIdentifierNotFound => 0x92,
            },
            reason_string: pubcomp.properties.and_then(|properties| properties.reason_string),
        }),
        v5::Packet::SubAck(suback) => Incoming::SubAck {
            packet_id: suback.pkid,
            codes: suback.return_codes.into_iter().map(super::reason::suback_v5).collect(),
            reason_string: suback.properties.and_then(|properties| properties.reason_string),
        },
        v5::Packet::UnsubAck(unsuback) => Incoming::UnsubAck {
            packet_id: unsuback.pkid,
            codes: unsuback.reasons.into_iter().map(super::reason::unsuback_v5).collect(),
            reason_string: unsuback.properties.and_then(|properties| properties.reason_string),
        },
        v5::Packet::PingResp(_) => Incoming::PingResp,
        v5::Packet::Disconnect(disconnect) => Incoming::Disconnect {
            code: disconnect.reason_code as u8,
            reason_string: disconnect.properties.and_then(|properties| properties.reason_string),
        },
        v5::Packet::Auth(_) => {
            return Err(PacketError(
                "an AUTH packet, but the client asked for no enhanced authentication".into(),
            ))
        }
        v5::Packet::Connect(..) => return Err(client_only("CONNECT")),
        v5::Packet::Subscribe(_) => return Err(client_only("SUBSCRIBE")),
        v5::Packet::Unsubscribe(_) => return Err(client_only("UNSUBSCRIBE")),
        v5::Packet::PingReq(_) => return Err(client_only("PINGREQ")),
    })
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
