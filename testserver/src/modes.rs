//! What a connection does, decided by its request: the endpoint from the path
//! (`/echo`, `/json`, `/broadcast/<room>`) and the scripted misbehaviour from
//! the query (`?delay=250ms&close_after=3&close_code=4001`).
//!
//! Parsing is strict about the parameters it knows (a typo in a value is a `400`
//! naming the parameter) and ignores the ones it does not, because scenarios add
//! their own parameters such as `?user=alice`.

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::deflate::DeflateModes;
use crate::handshake::Rejection;
use crate::overload::{Overload, OverloadParameters};

/// A close reason must fit a control frame: 125 bytes minus the 2-byte code.
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// A cap on `reply_count` so a typo cannot turn one message into millions.
const MAX_REPLY_COUNT: u32 = 10_000;

/// Which behaviour a WebSocket path selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/`, `/echo` and every unknown path: echo each data message.
    Echo,
    /// `/json`: answer each json object with a json reply.
    Json,
    /// `/broadcast/<room>`: deliver each message to every client in the room.
    Broadcast { room: String },
}

impl Endpoint {
    pub(crate) fn from_path(path: &str) -> Result<Self, Rejection> {
        if path == "/json" {
            return Ok(Self::Json);
        }
        let Some(rest) = path.strip_prefix("/broadcast") else {
            return Ok(Self::Echo);
        };
        match rest.strip_prefix('/') {
            Some(room) if !room.is_empty() => Ok(Self::Broadcast { room: room.to_owned() }),
            _ if rest.is_empty() || rest == "/" => Err(Rejection::new(
                400,
                "a broadcast path needs a room name: /broadcast/<room>",
            )),
            // `/broadcasting` and the like are ordinary echo paths.
            _ => Ok(Self::Echo),
        }
    }
}

/// The scripted behaviour of one connection, from its query parameters.
///
/// Message counts (`close_after`, `drop_after`) count text and binary messages
/// received on this connection; the message that reaches the count is still
/// answered before the connection closes or drops.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Modes {
    /// `delay=D`: wait before each reply (once per received message).
    pub(crate) delay: Option<Duration>,
    /// `reply_count=N`: copies of each reply; 0 makes the server silent.
    pub(crate) reply_count: u32,
    /// `close_after=N`: close after N received messages.
    pub(crate) close_after: Option<u64>,
    /// `close_code=C`: the code for `close_after` and `close_on_open` reason.
    pub(crate) close_code: u16,
    /// `close_reason=R`: the reason sent with a scripted close.
    pub(crate) close_reason: String,
    /// `close_on_open=C`: close with code C right after the handshake.
    pub(crate) close_on_open: Option<u16>,
    /// `drop_after=N`: reset the TCP connection after N received messages.
    pub(crate) drop_after: Option<u64>,
    /// `handshake=never`: read the request and never answer it.
    pub(crate) handshake_never: bool,
    /// `handshake_status=S`: refuse the upgrade with status S.
    pub(crate) handshake_status: Option<u16>,
    /// `handshake_delay=D`: wait before answering the upgrade.
    pub(crate) handshake_delay: Option<Duration>,
    /// `send_on_open=TEXT`: a text message sent right after the handshake.
    pub(crate) send_on_open: Option<String>,
    /// `oversize=N`: one binary message of N bytes after the first message.
    pub(crate) oversize: Option<u64>,
    /// `malformed=1`: one invalid raw frame after the first message.
    pub(crate) malformed: bool,
    /// `echo_self=false`: broadcast skips the sender.
    pub(crate) echo_self: bool,
    /// permessage-deflate on the echo endpoint (`deflate*`, `corrupt_deflate`).
    pub(crate) deflate: DeflateModes,
    /// `capacity=N`, `capacity_rate=R` (`overload_delay=D`, `refuse_over=M`): degrade past N
    /// open connections or R messages a second.
    pub(crate) overload: Option<Overload>,
}

impl Default for Modes {
    fn default() -> Self {
        Self {
            delay: None,
            reply_count: 1,
            close_after: None,
            close_code: 1000,
            close_reason: String::new(),
            close_on_open: None,
            drop_after: None,
            handshake_never: false,
            handshake_status: None,
            handshake_delay: None,
            send_on_open: None,
            oversize: None,
            malformed: false,
            echo_self: true,
            deflate: DeflateModes::default(),
            overload: None,
        }
    }
}

impl Modes {
    /// Parses a query string (without the `?`).
    pub(crate) fn parse(query: &str) -> Result<Self, Rejection> {
        Self::parse_pairs(query).map_err(|reason| Rejection::new(400, reason))
    }

    fn parse_pairs(query: &str) -> Result<Self, String> {
        let mut modes = Modes::default();
        let mut overload = OverloadParameters::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(raw_name)?;
            let value = percent_decode(raw_value)?;
            let value = value.as_str();
            if modes.deflate.apply(&name, value)? {
                continue;
            }
            match name.as_str() {
                "delay" => modes.delay = Some(parse_duration(&name, value)?),
                "reply_count" => {
                    let count = parse_number::<u32>(&name, value)?;
                    if count > MAX_REPLY_COUNT {
                        return Err(format!("reply_count={count} is above the limit of {MAX_REPLY_COUNT}"));
                    }
                    modes.reply_count = count;
                }
                "close_after" => modes.close_after = Some(parse_number(&name, value)?),
                "close_code" => modes.close_code = parse_close_code(&name, value)?,
                "close_reason" => {
                    if value.len() > MAX_CLOSE_REASON_BYTES {
                        return Err(format!(
                            "close_reason is {} bytes; a close reason holds at most {MAX_CLOSE_REASON_BYTES}",
                            value.len()
                        ));
                    }
                    modes.close_reason = value.to_owned();
                }
                "close_on_open" => modes.close_on_open = Some(parse_close_code(&name, value)?),
                "drop_after" => modes.drop_after = Some(parse_number(&name, value)?),
                "handshake" => {
                    if value != "never" {
                        return Err(format!(
                            "handshake={value:?} is not a mode; the only one is handshake=never"
                        ));
                    }
                    modes.handshake_never = true;
                }
                "handshake_status" => {
                    let status = parse_number::<u16>(&name, value)?;
                    if !(200..=599).contains(&status) {
                        return Err(format!(
                            "handshake_status={status} must be an http status from 200 to 599"
                        ));
                    }
                    modes.handshake_status = Some(status);
                }
                "handshake_delay" => modes.handshake_delay = Some(parse_duration(&name, value)?),
                "send_on_open" => modes.send_on_open = Some(value.to_owned()),
                "oversize" => modes.oversize = Some(parse_number(&name, value)?),
                "malformed" => modes.malformed = parse_flag(&name, value)?,
                "echo_self" => modes.echo_self = parse_flag(&name, value)?,
                "capacity" => overload.capacity = Some(parse_number(&name, value)?),
                "capacity_rate" => overload.capacity_rate = Some(parse_number(&name, value)?),
                "overload_delay" => overload.delay = Some(parse_duration(&name, value)?),
                "refuse_over" => overload.refuse_over = Some(parse_number(&name, value)?),
                // Unknown parameters belong to the scenario (`?user=alice`).
                _ => {}
            }
        }
        modes.overload = overload.build()?;
        Ok(modes)
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{name}={value:?} is not a valid non-negative integer"))
}

fn parse_flag(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("{name}={value:?} must be 1, 0, true or false")),
    }
}

/// Close codes a server may put on the wire (RFC 6455 section 7.4): 1005, 1006
/// and 1015 are reserved for reporting and would make the client fail instead.
fn parse_close_code(name: &str, value: &str) -> Result<u16, String> {
    let code = parse_number::<u16>(name, value)?;
    if !CloseCode::from(code).is_allowed() {
        return Err(format!(
            "{name}={code} cannot be sent in a close frame; use 1000-1003, 1007-1014 or 3000-4999"
        ));
    }
    Ok(code)
}

/// Durations are an integer with a unit: `500us`, `250ms`, `2s`, `1m`.
pub(crate) fn parse_duration(name: &str, value: &str) -> Result<Duration, String> {
    let invalid = || format!("{name}={value:?} is not a duration; write an integer with a unit, e.g. 250ms or 2s");
    let digits_end = value
        .find(|character: char| !character.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (digits, unit) = value.split_at(digits_end);
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    match unit {
        "us" => Ok(Duration::from_micros(amount)),
        "ms" => Ok(Duration::from_millis(amount)),
        "s" => Ok(Duration::from_secs(amount)),
        "m" => amount.checked_mul(60).map(Duration::from_secs).ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

/// Decodes `application/x-www-form-urlencoded` text: `%XX` escapes and `+` for space.
pub(crate) fn percent_decode(text: &str) -> Result<String, String> {
    if !text.contains(['%', '+']) {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let escape = bytes
                    .get(index + 1..index + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| format!("invalid percent escape in query text {text:?}"))?;
                decoded.push(escape);
                index += 2;
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8(decoded).map_err(|_| format!("query text {text:?} does not decode to utf-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(query: &str) -> String {
        match Modes::parse(query) {
            Err(rejection) => {
                assert_eq!(rejection.status, 400);
                rejection.reason
            }
            Ok(modes) => panic!("expected {query:?} to be rejected, got {modes:?}"),
        }
    }

    #[test]
    fn empty_and_unknown_parameters_give_defaults() {
        assert_eq!(Modes::parse(""), Ok(Modes::default()));
        assert_eq!(Modes::parse("user=alice&token=x&&flag"), Ok(Modes::default()));
    }

    #[test]
    fn every_mode_is_parsed() {
        let query = "delay=250ms&reply_count=3&close_after=2&close_code=4001&close_reason=bye+now\
                     &close_on_open=1001&drop_after=5&handshake=never&handshake_status=503\
                     &handshake_delay=2s&send_on_open=%7B%22hi%22%3A1%7D&oversize=1024&malformed=1\
                     &echo_self=false&deflate_server_max_window_bits=10&deflate_client_max_window_bits=9\
                     &deflate_server_no_context_takeover=1&deflate_client_no_context_takeover=true\
                     &corrupt_deflate=1&capacity=20&capacity_rate=50&overload_delay=100ms&refuse_over=30";
        let expected = Modes {
            delay: Some(Duration::from_millis(250)),
            reply_count: 3,
            close_after: Some(2),
            close_code: 4001,
            close_reason: "bye now".to_owned(),
            close_on_open: Some(1001),
            drop_after: Some(5),
            handshake_never: true,
            handshake_status: Some(503),
            handshake_delay: Some(Duration::from_secs(2)),
            send_on_open: Some("{\"hi\":1}".to_owned()),
            oversize: Some(1024),
            malformed: true,
            echo_self: false,
            deflate: DeflateModes {
                decline: false,
                server_max_window_bits: Some(10),
                client_max_window_bits: Some(9),
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                corrupt: true,
            },
            overload: Some(Overload {
                connections: Some(20),
                rate: Some(50),
                delay_per_unit: Duration::from_millis(100),
                refuse_at: Some(30),
            }),
        };
        assert_eq!(Modes::parse(query), Ok(expected));
    }

    #[test]
    fn invalid_values_name_the_parameter() {
        assert_eq!(
            reason("delay=fast"),
            "delay=\"fast\" is not a duration; write an integer with a unit, e.g. 250ms or 2s"
        );
        assert_eq!(
            reason("close_code=1006"),
            "close_code=1006 cannot be sent in a close frame; use 1000-1003, 1007-1014 or 3000-4999"
        );
        assert_eq!(
            reason("drop_after=-1"),
            "drop_after=\"-1\" is not a valid non-negative integer"
        );
        assert_eq!(
            reason("handshake=later"),
            "handshake=\"later\" is not a mode; the only one is handshake=never"
        );
        assert_eq!(
            reason("handshake_status=101"),
            "handshake_status=101 must be an http status from 200 to 599"
        );
        assert_eq!(reason("malformed=yes"), "malformed=\"yes\" must be 1, 0, true or false");
        assert!(reason(&format!("close_reason={}", "r".repeat(124))).starts_with("close_reason is 124 bytes"));
        assert!(reason("reply_count=10001").contains("above the limit"));
        assert!(reason("send_on_open=%zz").starts_with("invalid percent escape"));
    }

    #[test]
    fn durations_accept_the_documented_units() {
        let parse = |value| parse_duration("delay", value);
        assert_eq!(parse("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert!(parse("2").is_err());
        assert!(parse("ms").is_err());
        assert!(parse("1.5s").is_err());
    }

    #[test]
    fn paths_select_endpoints() {
        assert_eq!(Endpoint::from_path("/"), Ok(Endpoint::Echo));
        assert_eq!(Endpoint::from_path("/echo"), Ok(Endpoint::Echo));
        assert_eq!(Endpoint::from_path("/anything/else"), Ok(Endpoint::Echo));
        assert_eq!(Endpoint::from_path("/broadcasting"), Ok(Endpoint::Echo));
        assert_eq!(Endpoint::from_path("/json"), Ok(Endpoint::Json));
        assert_eq!(
            Endpoint::from_path("/broadcast/lobby"),
            Ok(Endpoint::Broadcast {
                room: "lobby".to_owned()
            })
        );
        assert_eq!(Endpoint::from_path("/broadcast/").map_err(|r| r.status), Err(400));
        assert_eq!(Endpoint::from_path("/broadcast").map_err(|r| r.status), Err(400));
    }
}
