//! What a failure is counted as: the kind every error of a connection or a step ends with
//! ([`FailureKind`], the `errors.<kind>` counters and the kinds `on_error` rules name), why a
//! connection could not be opened ([`ConnectError`]), and the classification of I/O and
//! WebSocket errors into kinds.
//!
//! Both the opening of connections (`connection`) and the upgrade (`upgrade`) use what is
//! here; neither uses the other's errors, so the two stay one-way (`connection` calls
//! `upgrade`, never the reverse).

use std::fmt;
use std::io;

use tokio_tungstenite::tungstenite::Error as WsError;
use wsfleet_metrics::catalog::{error_counter, http_status_error, RECEIVE_TIMEOUT};
use wsfleet_metrics::ErrorKind;

/// The kind of a failure: one of the catalog's error kinds, an upgrade refused with an HTTP
/// status, or a receive that timed out. Small and `Copy`: a failure carries it without
/// allocating, and it becomes a name only when counted or logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// A kind of the metrics catalog (`errors.refused`, `errors.closed`, ...).
    Catalog(ErrorKind),
    /// The upgrade, or an http step's request, was answered with this HTTP status instead of
    /// one expected (`errors.http_<status>`).
    HttpStatus(u16),
    /// A receive that timed out: counted in `receive_timeouts`, not as an `errors.` entry;
    /// `on_error` rules name it `receive_timeout`.
    ReceiveTimeout,
}

impl FailureKind {
    /// Whether an `on_error` rule's kind `name` is this kind. Compares without formatting:
    /// `http_NNN` matches the status written in decimal without a sign or leading zeros (as
    /// the counter spells it).
    pub fn is(self, name: &str) -> bool {
        match self {
            FailureKind::Catalog(kind) => kind.name() == name,
            FailureKind::ReceiveTimeout => name == RECEIVE_TIMEOUT,
            FailureKind::HttpStatus(status) => name.strip_prefix("http_").is_some_and(|digits| {
                digits.bytes().all(|byte| byte.is_ascii_digit())
                    && (digits.len() == 1 || !digits.starts_with('0'))
                    && digits.parse::<u16>() == Ok(status)
            }),
        }
    }

    /// Whether the failure has a counter of its own and no `errors.` entry.
    pub fn counted_elsewhere(self) -> bool {
        self == FailureKind::ReceiveTimeout
    }

    /// The `errors.<kind>` counter name.
    pub fn counter(self) -> String {
        match self {
            FailureKind::Catalog(kind) => error_counter(kind.name()),
            FailureKind::HttpStatus(status) => error_counter(&http_status_error(status)),
            FailureKind::ReceiveTimeout => error_counter(RECEIVE_TIMEOUT),
        }
    }
}

impl From<ErrorKind> for FailureKind {
    fn from(kind: ErrorKind) -> FailureKind {
        FailureKind::Catalog(kind)
    }
}

/// A kind equals its name (`FailureKind::HttpStatus(401) == "http_401"`), as rules compare.
impl PartialEq<&str> for FailureKind {
    fn eq(&self, name: &&str) -> bool {
        self.is(name)
    }
}

impl fmt::Display for FailureKind {
    /// The kind's name as counters and rules spell it (`refused`, `http_401`,
    /// `receive_timeout`).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Catalog(kind) => formatter.write_str(kind.name()),
            FailureKind::HttpStatus(status) => write!(formatter, "http_{status}"),
            FailureKind::ReceiveTimeout => formatter.write_str(RECEIVE_TIMEOUT),
        }
    }
}

/// Why a connection could not be opened, classified for the `errors.<kind>` counters.
#[derive(Debug)]
pub struct ConnectError {
    pub kind: FailureKind,
    pub detail: String,
}

impl ConnectError {
    pub(crate) fn new(kind: impl Into<FailureKind>, detail: impl Into<String>) -> Self {
        ConnectError {
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    /// The upgrade was answered with `status` instead of the status expected.
    pub(crate) fn http_status(status: u16) -> Self {
        ConnectError::new(
            FailureKind::HttpStatus(status),
            format!("the server answered the upgrade with HTTP {status}"),
        )
    }
}

/// Classifies an I/O error; `doing` says what was going on.
pub fn io_error(error: &io::Error, doing: &str) -> ConnectError {
    ConnectError::new(io_error_kind(error), format!("{doing}: {error}"))
}

pub fn io_error_kind(error: &io::Error) -> ErrorKind {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
        _ => ErrorKind::Io,
    }
}

/// A protocol violation found below tungstenite's own checks (by the permessage-deflate frame
/// layer, `deflate.rs`), carried inside a tungstenite I/O error so it is classified `protocol`.
#[derive(Debug)]
pub struct ProtocolViolation(pub String);

impl ProtocolViolation {
    pub fn error(detail: String) -> WsError {
        WsError::Io(io::Error::other(ProtocolViolation(detail)))
    }
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolViolation {}

/// Classifies a tungstenite error for the `errors.<kind>` counters.
pub fn classify_ws_error(error: &WsError) -> ConnectError {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match error {
        WsError::Http(response) => ConnectError::http_status(response.status().as_u16()),
        WsError::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<ProtocolViolation>()) => {
            ConnectError::new(ErrorKind::Protocol, io.to_string())
        }
        WsError::Io(io) => io_error(io, "WebSocket"),
        WsError::Tls(tls) => ConnectError::new(ErrorKind::Tls, tls.to_string()),
        WsError::Capacity(capacity) => ConnectError::new(ErrorKind::MessageTooBig, capacity.to_string()),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => {
            ConnectError::new(ErrorKind::Reset, "the connection ended without a close handshake")
        }
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(problem)) => ConnectError::new(
            ErrorKind::Expectation,
            format!("the server's subprotocol answer does not fit what was offered: {problem}"),
        ),
        WsError::Protocol(ProtocolError::HandshakeIncomplete) => {
            ConnectError::new(ErrorKind::Reset, "the connection ended during the handshake")
        }
        other => ConnectError::new(ErrorKind::Protocol, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names and counters are spelled as before the kinds were typed.
    #[test]
    fn kinds_keep_their_names() {
        assert_eq!(
            FailureKind::from(ErrorKind::DataExhausted).counter(),
            "errors.data_exhausted"
        );
        assert_eq!(FailureKind::HttpStatus(401).counter(), "errors.http_401");
        assert_eq!(FailureKind::ReceiveTimeout.counter(), "errors.receive_timeout");
        assert_eq!(FailureKind::HttpStatus(503).to_string(), "http_503");
        assert_eq!(FailureKind::Catalog(ErrorKind::Closed).to_string(), "closed");
        assert!(FailureKind::ReceiveTimeout.counted_elsewhere());
        assert!(!FailureKind::Catalog(ErrorKind::Timeout).counted_elsewhere());
    }

    /// A rule's kind matches exactly the names the string comparison matched before.
    #[test]
    fn rules_match_by_name() {
        let http = FailureKind::HttpStatus(401);
        assert!(http.is("http_401"));
        for other in ["http_0401", "http_+401", "http_402", "http_", "401", "closed"] {
            assert!(!http.is(other), "{other}");
        }
        assert!(FailureKind::HttpStatus(0).is("http_0"));
        assert!(FailureKind::ReceiveTimeout.is("receive_timeout"));
        assert!(!FailureKind::ReceiveTimeout.is("timeout"));
        assert!(FailureKind::Catalog(ErrorKind::Timeout).is("timeout"));
        assert!(!FailureKind::Catalog(ErrorKind::Timeout).is("receive_timeout"));
    }
}
