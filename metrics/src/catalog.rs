//! Every built-in metric's name, in one place. Names are what users see in summaries, JSON,
//! CSV, Prometheus and thresholds; docs/metrics.md defines each one.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// `[&str; N]` of every member's name, in `ALL`'s order, computed at compile time so lists of
/// names elsewhere (thresholds, `on_error` kinds) are the catalog itself, not copies of it.
macro_rules! names_of {
    ($kind:ty) => {{
        let mut names = [""; <$kind>::COUNT];
        let mut index = 0;
        while index < <$kind>::COUNT {
            names[index] = <$kind>::ALL[index].name();
            index += 1;
        }
        names
    }};
}

/// Counters: monotonic counts per interval. Each event is counted once, in one metric set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Counter {
    /// WebSocket handshakes that completed with 101 (LoadRunner's New Connections).
    ConnectionsOpened,
    /// Connection attempts that did not reach an open WebSocket (Failed Connections).
    ConnectionsFailed,
    /// Open connections that ended (by either side, cleanly or not).
    ConnectionsClosed,
    /// Bytes written to sockets: handshakes, frame headers, masks, payloads, TLS records.
    BytesSent,
    /// Bytes read from sockets.
    BytesReceived,
    /// The part of `BytesSent` written during WebSocket handshakes.
    HandshakeBytesSent,
    /// The part of `BytesReceived` read during WebSocket handshakes.
    HandshakeBytesReceived,
    /// Application payload of data messages sent (text and binary).
    PayloadBytesSent,
    PayloadBytesReceived,
    /// Data messages (text + binary).
    MessagesSent,
    MessagesReceived,
    TextMessagesSent,
    BinaryMessagesSent,
    TextMessagesReceived,
    BinaryMessagesReceived,
    PingsSent,
    PongsReceived,
    /// Receive steps whose timeout passed without a (matching) message.
    ReceiveTimeouts,
    /// Scenario iterations that ran every step.
    Iterations,
    /// Scenario iterations cut short by an error.
    IterationsFailed,
    /// Open model: arrivals that were due (offered load).
    VusOffered,
    /// Open model: arrivals that started a VU (achieved load).
    VusStarted,
    /// Open model: arrivals dropped because `max_vus` VUs ran or `max_handshakes` were connecting.
    DroppedVus,
    /// Data messages received that no step or handler took: left queued when their connection
    /// closed, or pushed out of a full queue. Also counted in `messages_received`.
    MessagesUnread,
    /// Iterations that ended early by the scenario's choice (`skip`, `end_iteration`), not failed.
    IterationsSkipped,
    /// Writes that handed bytes to a socket (system calls, or TLS records' writes): with
    /// `messages_sent`, how well sends coalesce.
    SocketWrites,
    /// HTTP requests http steps made (each attempt, answered or not).
    HttpRequests,
    /// HTTP requests that failed: no response, or one the step did not expect.
    HttpRequestsFailed,
    /// HTTP responses by status class.
    Http1xx,
    Http2xx,
    Http3xx,
    Http4xx,
    Http5xx,
    /// The part of `BytesSent` written by http steps (request heads, bodies, TLS records).
    HttpBytesSent,
    /// The part of `BytesReceived` read by http steps.
    HttpBytesReceived,
    /// TCP connections http steps opened (a kept-alive connection serves the VU's later
    /// requests to the same origin).
    HttpConnectionsOpened,
    /// Protocol events sent (Socket.IO `emit`), in the metric set of the event's name.
    EventsSent,
    /// Protocol events received, in the metric set of the event's name.
    EventsReceived,
    /// Acknowledgements of emitted events received, in the metric set of the event's name.
    AcksReceived,
    /// Acknowledgements sent to the server's events that asked for one (`on_message: { ack }`),
    /// in the metric set of the event's name.
    AcksSent,
    /// Acknowledgements asked for (STOMP RECEIPTs, Socket.IO acks) that had not come when their
    /// connection ended, in the set the acknowledgement would have counted in.
    AcksMissing,
    /// MQTT deliveries without a usable send stamp (none, or a malformed one), in the set of
    /// the delivery's topic: with `delivery_latency.count` they add up to the deliveries'
    /// `events_received`.
    DeliveriesUntimed,
    /// Heartbeats the server sent (Engine.IO pings), answered by the protocol layer.
    HeartbeatsReceived,
    /// Heartbeat answers the protocol layer sent (Engine.IO pongs).
    HeartbeatsSent,
    /// Protocol sessions the server accepted after the upgrade (Socket.IO namespaces connected).
    ProtocolConnects,
    /// Protocol sessions the server ended (Socket.IO disconnect packets).
    ProtocolDisconnects,
    /// On connections that agreed to permessage-deflate: data message payload sent, before
    /// compression (also in `payload_bytes_sent`).
    UncompressedBytesSent,
    /// The same messages' payload in their frames, after compression (a message below the
    /// step's threshold counts its plain size).
    CompressedBytesSent,
    /// On connections that agreed to permessage-deflate: data message payload received, after
    /// inflating (also in `payload_bytes_received`).
    UncompressedBytesReceived,
    /// The same messages' payload in their frames, as received (before inflating).
    CompressedBytesReceived,
}

impl Counter {
    pub const ALL: [Counter; 50] = [
        Counter::ConnectionsOpened,
        Counter::ConnectionsFailed,
        Counter::ConnectionsClosed,
        Counter::BytesSent,
        Counter::BytesReceived,
        Counter::HandshakeBytesSent,
        Counter::HandshakeBytesReceived,
        Counter::PayloadBytesSent,
        Counter::PayloadBytesReceived,
        Counter::MessagesSent,
        Counter::MessagesReceived,
        Counter::TextMessagesSent,
        Counter::BinaryMessagesSent,
        Counter::TextMessagesReceived,
        Counter::BinaryMessagesReceived,
        Counter::PingsSent,
        Counter::PongsReceived,
        Counter::ReceiveTimeouts,
        Counter::Iterations,
        Counter::IterationsFailed,
        Counter::VusOffered,
        Counter::VusStarted,
        Counter::DroppedVus,
        Counter::MessagesUnread,
        Counter::IterationsSkipped,
        Counter::SocketWrites,
        Counter::HttpRequests,
        Counter::HttpRequestsFailed,
        Counter::Http1xx,
        Counter::Http2xx,
        Counter::Http3xx,
        Counter::Http4xx,
        Counter::Http5xx,
        Counter::HttpBytesSent,
        Counter::HttpBytesReceived,
        Counter::HttpConnectionsOpened,
        Counter::EventsSent,
        Counter::EventsReceived,
        Counter::AcksReceived,
        Counter::AcksSent,
        Counter::AcksMissing,
        Counter::DeliveriesUntimed,
        Counter::HeartbeatsReceived,
        Counter::HeartbeatsSent,
        Counter::ProtocolConnects,
        Counter::ProtocolDisconnects,
        Counter::UncompressedBytesSent,
        Counter::CompressedBytesSent,
        Counter::UncompressedBytesReceived,
        Counter::CompressedBytesReceived,
    ];
    pub const COUNT: usize = Self::ALL.len();
    /// Every counter's name, in `ALL`'s order.
    pub const NAMES: [&'static str; Self::COUNT] = names_of!(Counter);

    pub const fn name(self) -> &'static str {
        match self {
            Counter::ConnectionsOpened => "connections_opened",
            Counter::ConnectionsFailed => "connections_failed",
            Counter::ConnectionsClosed => "connections_closed",
            Counter::BytesSent => "bytes_sent",
            Counter::BytesReceived => "bytes_received",
            Counter::HandshakeBytesSent => "handshake_bytes_sent",
            Counter::HandshakeBytesReceived => "handshake_bytes_received",
            Counter::PayloadBytesSent => "payload_bytes_sent",
            Counter::PayloadBytesReceived => "payload_bytes_received",
            Counter::MessagesSent => "messages_sent",
            Counter::MessagesReceived => "messages_received",
            Counter::TextMessagesSent => "text_messages_sent",
            Counter::BinaryMessagesSent => "binary_messages_sent",
            Counter::TextMessagesReceived => "text_messages_received",
            Counter::BinaryMessagesReceived => "binary_messages_received",
            Counter::PingsSent => "pings_sent",
            Counter::PongsReceived => "pongs_received",
            Counter::ReceiveTimeouts => "receive_timeouts",
            Counter::Iterations => "iterations",
            Counter::IterationsFailed => "iterations_failed",
            Counter::VusOffered => "vus_offered",
            Counter::VusStarted => "vus_started",
            Counter::DroppedVus => "dropped_vus",
            Counter::MessagesUnread => "messages_unread",
            Counter::IterationsSkipped => "iterations_skipped",
            Counter::SocketWrites => "socket_writes",
            Counter::HttpRequests => "http_requests",
            Counter::HttpRequestsFailed => "http_requests_failed",
            Counter::Http1xx => "http_1xx",
            Counter::Http2xx => "http_2xx",
            Counter::Http3xx => "http_3xx",
            Counter::Http4xx => "http_4xx",
            Counter::Http5xx => "http_5xx",
            Counter::HttpBytesSent => "http_bytes_sent",
            Counter::HttpBytesReceived => "http_bytes_received",
            Counter::HttpConnectionsOpened => "http_connections_opened",
            Counter::EventsSent => "events_sent",
            Counter::EventsReceived => "events_received",
            Counter::AcksReceived => "acks_received",
            Counter::AcksSent => "acks_sent",
            Counter::AcksMissing => "acks_missing",
            Counter::DeliveriesUntimed => "deliveries_untimed",
            Counter::HeartbeatsReceived => "heartbeats_received",
            Counter::HeartbeatsSent => "heartbeats_sent",
            Counter::ProtocolConnects => "protocol_connects",
            Counter::ProtocolDisconnects => "protocol_disconnects",
            Counter::UncompressedBytesSent => "uncompressed_bytes_sent",
            Counter::CompressedBytesSent => "compressed_bytes_sent",
            Counter::UncompressedBytesReceived => "uncompressed_bytes_received",
            Counter::CompressedBytesReceived => "compressed_bytes_received",
        }
    }

    pub fn from_name(name: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|counter| counter.name() == name)
    }

    /// The counter of an HTTP response's status class (`http_2xx` for 204); `None` outside
    /// 100-599.
    pub fn http_status_class(status: u16) -> Option<Counter> {
        match status {
            100..=199 => Some(Counter::Http1xx),
            200..=299 => Some(Counter::Http2xx),
            300..=399 => Some(Counter::Http3xx),
            400..=499 => Some(Counter::Http4xx),
            500..=599 => Some(Counter::Http5xx),
            _ => None,
        }
    }
}

/// Labeled counter families: the name is `family.label`, e.g. `errors.refused`.
pub const ERRORS: &str = "errors";
pub const CLOSE_CODES: &str = "close_codes";
/// Connections opened with a compression offer, by what the server agreed:
/// `extensions.<answer>` (e.g. `extensions.permessage-deflate;server_max_window_bits=12`), or
/// `extensions.none` when it declined.
pub const EXTENSIONS: &str = "extensions";
/// Every labeled counter family.
pub const LABELED_FAMILIES: [&str; 3] = [ERRORS, CLOSE_CODES, EXTENSIONS];

/// The counter of connections whose server answered `agreed` (a canonical answer; `None`: it
/// declined the offer).
pub fn extensions_counter(agreed: Option<&str>) -> String {
    format!(
        "{EXTENSIONS}.{}",
        agreed.map_or("none".to_owned(), |agreed| agreed.replace(' ', ""))
    )
}

/// A labeled counter's family and label: `errors.refused` is `(ERRORS, "refused")`; `None` for
/// a name outside the labeled families.
pub fn split_labeled(name: &str) -> Option<(&'static str, &str)> {
    LABELED_FAMILIES
        .into_iter()
        .find_map(|family| Some((family, name.strip_prefix(family)?.strip_prefix('.')?)))
}

/// Whether `name` is an `errors.<kind>` counter.
pub fn is_error_counter(name: &str) -> bool {
    split_labeled(name).is_some_and(|(family, _)| family == ERRORS)
}

/// Latency histograms, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Hist {
    /// From the start of a connect step to the 101 response: DNS + TCP + TLS + upgrade.
    Handshake,
    Dns,
    TcpConnect,
    TlsHandshake,
    /// From the upgrade request written to the 101 response read.
    WsUpgrade,
    /// From a send to the receive that answers it.
    MessageLatency,
    /// From a ping to its pong.
    PingLatency,
    /// From a close frame sent to the server's close frame.
    CloseLatency,
    /// How long a VU waited at a rendezvous.
    RendezvousWait,
    /// An http step's request, from its start to the last byte of the response body
    /// (connecting included when the request needed a new connection).
    HttpDuration,
    /// TCP connect of a new HTTP connection (and its proxy tunnel).
    HttpConnect,
    /// TLS handshake of a new HTTPS connection.
    HttpTls,
    /// From the request handed to its connection to the first byte of the response.
    HttpFirstByte,
    /// From an emitted event to its acknowledgement, in the metric set of the event's name.
    AckLatency,
    /// From an MQTT publish's send stamp (a 5.0 user property, or a payload stamp on 3.1.1 and
    /// 5.0) to its delivery to a subscriber of the same run, in the metric set of the
    /// delivery's topic (wall clocks of two VUs, possibly two machines).
    DeliveryLatency,
}

impl Hist {
    pub const ALL: [Hist; 15] = [
        Hist::Handshake,
        Hist::Dns,
        Hist::TcpConnect,
        Hist::TlsHandshake,
        Hist::WsUpgrade,
        Hist::MessageLatency,
        Hist::PingLatency,
        Hist::CloseLatency,
        Hist::RendezvousWait,
        Hist::HttpDuration,
        Hist::HttpConnect,
        Hist::HttpTls,
        Hist::HttpFirstByte,
        Hist::AckLatency,
        Hist::DeliveryLatency,
    ];
    pub const COUNT: usize = Self::ALL.len();
    /// Every histogram's name, in `ALL`'s order.
    pub const NAMES: [&'static str; Self::COUNT] = names_of!(Hist);

    pub const fn name(self) -> &'static str {
        match self {
            Hist::Handshake => "handshake",
            Hist::Dns => "dns",
            Hist::TcpConnect => "tcp_connect",
            Hist::TlsHandshake => "tls_handshake",
            Hist::WsUpgrade => "ws_upgrade",
            Hist::MessageLatency => "message_latency",
            Hist::PingLatency => "ping_latency",
            Hist::CloseLatency => "close_latency",
            Hist::RendezvousWait => "rendezvous_wait",
            Hist::HttpDuration => "http_duration",
            Hist::HttpConnect => "http_connect",
            Hist::HttpTls => "http_tls",
            Hist::HttpFirstByte => "http_first_byte",
            Hist::AckLatency => "ack_latency",
            Hist::DeliveryLatency => "delivery_latency",
        }
    }
}

/// Gauges: each interval carries a gauge's value at its end (`name()`) and the highest value it
/// reached within the interval (`high_water_name()`); the fleet's values are sums over agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Gauge {
    /// Open WebSocket connections.
    ActiveConnections,
    /// Running VUs.
    ActiveVus,
}

impl Gauge {
    pub const ALL: [Gauge; 2] = [Gauge::ActiveConnections, Gauge::ActiveVus];
    pub const COUNT: usize = Self::ALL.len();
    /// Every gauge's name, in `ALL`'s order.
    pub const NAMES: [&'static str; Self::COUNT] = names_of!(Gauge);

    pub const fn name(self) -> &'static str {
        match self {
            Gauge::ActiveConnections => ACTIVE_CONNECTIONS,
            Gauge::ActiveVus => ACTIVE_VUS,
        }
    }

    /// The name of its high-water mark within an interval: `active_connections_max`.
    pub const fn high_water_name(self) -> &'static str {
        match self {
            Gauge::ActiveConnections => "active_connections_max",
            Gauge::ActiveVus => "active_vus_max",
        }
    }

    /// The gauge `name` is the end-of-interval value or the high-water mark of.
    pub fn of_name(name: &str) -> Option<Gauge> {
        Gauge::ALL
            .into_iter()
            .find(|gauge| gauge.name() == name || gauge.high_water_name() == name)
    }
}

/// Raises `peaks` (each gauge's highest fleet value so far, by its name) with one interval's
/// fleet gauges: a gauge's peak is its highest high-water mark; from an agent older than
/// high-water marks, its highest end-of-interval value.
pub fn raise_peaks(interval_gauges: &BTreeMap<String, i64>, peaks: &mut BTreeMap<String, i64>) {
    for (name, value) in interval_gauges {
        let base: &str = match Gauge::of_name(name) {
            Some(gauge) => gauge.name(),
            None => name,
        };
        match peaks.get_mut(base) {
            Some(peak) => *peak = (*peak).max(*value),
            None => {
                peaks.insert(base.to_owned(), *value);
            }
        }
    }
}

pub const ACTIVE_CONNECTIONS: &str = "active_connections";
pub const ACTIVE_VUS: &str = "active_vus";

/// The kinds of error a connection or step can end with; `errors.<kind>` counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The target refused the TCP connection.
    Refused,
    /// A connect, handshake or close did not finish in time.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// TLS failed (certificate, protocol).
    Tls,
    /// The connection was reset or closed without a close frame.
    Reset,
    /// The server broke the WebSocket protocol (bad frame, bad handshake response).
    Protocol,
    /// The server's message exceeded the configured maximum size.
    MessageTooBig,
    /// The server did not select a subprotocol we asked for, or another expectation failed.
    Expectation,
    /// The server closed the connection while a step still needed it.
    Closed,
    /// Any other I/O error.
    Io,
    /// An `extract` found no value and had no default.
    Extract,
    /// A `check` step's condition did not hold.
    Check,
    /// An `on_message` rule with `fail: true` matched.
    Handler,
    /// A `unique` data feed had no row left for the VU.
    DataExhausted,
    /// The HTTP proxy refused or broke the CONNECT tunnel.
    Proxy,
    /// The server refused a protocol session after the upgrade (Socket.IO `connect_error`).
    ConnectError,
    /// An emitted event's acknowledgement did not come in time.
    AckTimeout,
    /// The server sent nothing for longer than the protocol's heartbeats allow (STOMP
    /// heart-beats, MQTT keep-alive): the client drops the connection.
    HeartbeatTimeout,
    /// GraphQL over WebSocket: an operation's result carried `errors` (a resolver failed), or
    /// the server ended an operation with an `error` message (it did not validate).
    GraphqlError,
    /// A STOMP server sent an ERROR frame on a session it had accepted (and closes it).
    StompError,
    /// A script failed while it ran (an error, a limit reached, a condition that gave no
    /// boolean, a `while` that reached `max`).
    Script,
    /// An MQTT 5.0 failure reason code (0x80 and up) in a PUBACK, PUBREC, SUBACK, UNSUBACK or
    /// the server's DISCONNECT, or a 3.1.1 SUBACK failure.
    MqttFailure,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 22] = [
        ErrorKind::Refused,
        ErrorKind::Timeout,
        ErrorKind::Dns,
        ErrorKind::Tls,
        ErrorKind::Reset,
        ErrorKind::Protocol,
        ErrorKind::MessageTooBig,
        ErrorKind::Expectation,
        ErrorKind::Closed,
        ErrorKind::Io,
        ErrorKind::Extract,
        ErrorKind::Check,
        ErrorKind::Handler,
        ErrorKind::DataExhausted,
        ErrorKind::Proxy,
        ErrorKind::ConnectError,
        ErrorKind::AckTimeout,
        ErrorKind::HeartbeatTimeout,
        ErrorKind::GraphqlError,
        ErrorKind::StompError,
        ErrorKind::Script,
        ErrorKind::MqttFailure,
    ];
    pub const COUNT: usize = Self::ALL.len();
    /// Every error kind's name, in `ALL`'s order.
    pub const NAMES: [&'static str; Self::COUNT] = names_of!(ErrorKind);

    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Dns => "dns",
            ErrorKind::Tls => "tls",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::MessageTooBig => "message_too_big",
            ErrorKind::Expectation => "expectation",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Extract => "extract",
            ErrorKind::Check => "check",
            ErrorKind::Handler => "handler",
            ErrorKind::DataExhausted => "data_exhausted",
            ErrorKind::Proxy => "proxy",
            ErrorKind::ConnectError => "connect_error",
            ErrorKind::AckTimeout => "ack_timeout",
            ErrorKind::HeartbeatTimeout => "heartbeat_timeout",
            ErrorKind::GraphqlError => "graphql_error",
            ErrorKind::StompError => "stomp_error",
            ErrorKind::Script => "script",
            ErrorKind::MqttFailure => "mqtt_failure",
        }
    }
}

/// The failure `on_error` rules call a receive step's timeout. It is not an error kind: a
/// receive's timeout counts `receive_timeouts`, never `errors.<kind>`.
pub const RECEIVE_TIMEOUT: &str = "receive_timeout";

/// The counter name for an error kind; an upgrade refused with HTTP status S is `http_S`.
pub fn error_counter(kind: &str) -> String {
    format!("{ERRORS}.{kind}")
}

pub fn http_status_error(status: u16) -> String {
    format!("http_{status}")
}

/// The counter name for a close code. The codes RFC 6455 registers (1000-1015) have static
/// names: a close is counted without formatting or allocating.
pub fn close_code_counter(code: u16) -> Cow<'static, str> {
    const REGISTERED: [&str; 16] = [
        "close_codes.1000",
        "close_codes.1001",
        "close_codes.1002",
        "close_codes.1003",
        "close_codes.1004",
        "close_codes.1005",
        "close_codes.1006",
        "close_codes.1007",
        "close_codes.1008",
        "close_codes.1009",
        "close_codes.1010",
        "close_codes.1011",
        "close_codes.1012",
        "close_codes.1013",
        "close_codes.1014",
        "close_codes.1015",
    ];
    match code
        .checked_sub(1000)
        .and_then(|index| REGISTERED.get(usize::from(index)))
    {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("{CLOSE_CODES}.{code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_order_of_all() {
        assert_eq!(Counter::NAMES[0], "connections_opened");
        assert_eq!(Counter::NAMES[Counter::COUNT - 1], "compressed_bytes_received");
        assert_eq!(Counter::http_status_class(204), Some(Counter::Http2xx));
        assert_eq!(Counter::http_status_class(599), Some(Counter::Http5xx));
        assert_eq!(Counter::http_status_class(600), None);
        assert_eq!(Hist::NAMES[Hist::COUNT - 1], "delivery_latency");
        assert_eq!(Gauge::NAMES, ["active_connections", "active_vus"]);
        assert_eq!(ErrorKind::NAMES[0], "refused");
        assert_eq!(ErrorKind::NAMES[ErrorKind::COUNT - 1], "mqtt_failure");
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ErrorKind::from_name(RECEIVE_TIMEOUT), None);
    }

    /// A gauge's peak is its highest high-water mark, and its highest end value when an older
    /// agent sent no mark; names outside the catalog peak under their own name.
    #[test]
    fn peaks_rise_with_high_water_marks() {
        let gauges = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
            pairs.iter().map(|(name, value)| (name.to_string(), *value)).collect()
        };
        let mut peaks = BTreeMap::new();
        raise_peaks(
            &gauges(&[
                ("active_connections", 0),
                ("active_connections_max", 60),
                ("active_vus", 2),
            ]),
            &mut peaks,
        );
        raise_peaks(&gauges(&[("active_connections", 7), ("other", 1)]), &mut peaks);
        assert_eq!(
            peaks,
            gauges(&[("active_connections", 60), ("active_vus", 2), ("other", 1)])
        );
        raise_peaks(&gauges(&[("active_vus", 0), ("active_vus_max", 9)]), &mut peaks);
        assert_eq!(peaks["active_vus"], 9);
    }

    #[test]
    fn labeled_counters_split_into_family_and_label() {
        assert_eq!(split_labeled("errors.refused"), Some((ERRORS, "refused")));
        assert_eq!(split_labeled("close_codes.1000"), Some((CLOSE_CODES, "1000")));
        assert_eq!(split_labeled("errors"), None);
        assert_eq!(split_labeled("errorsx.refused"), None);
        assert_eq!(split_labeled("messages_sent"), None);
        assert!(is_error_counter("errors.http_401"));
        assert!(!is_error_counter("close_codes.1000"));
        assert_eq!(
            split_labeled(&extensions_counter(Some(
                "permessage-deflate; server_max_window_bits=12"
            ))),
            Some((EXTENSIONS, "permessage-deflate;server_max_window_bits=12"))
        );
        assert_eq!(extensions_counter(None), "extensions.none");
    }

    #[test]
    fn close_code_counters_have_one_name_per_code() {
        for code in [0, 999, 1000, 1005, 1015, 1016, 3000, 4999, u16::MAX] {
            let name = close_code_counter(code);
            assert_eq!(name, format!("close_codes.{code}"));
            assert_eq!(
                matches!(name, Cow::Borrowed(_)),
                (1000..=1015).contains(&code),
                "{code}"
            );
        }
    }
}
