//! The send stamp of an MQTT publish: the publisher's wall clock when it published, in
//! microseconds since the Unix epoch, for a subscriber in the same run to record
//! `delivery_latency` (its own wall clock at the delivery's arrival less the stamp). The two
//! clocks are one clock on one machine; across machines they are as close as NTP keeps them, and
//! a delivery stamped after it arrived (a clock behind the publisher's) counts as 0.
//!
//! A connection's `delivery_stamp` option says where its publishes carry it:
//! - `property` (5.0 only): the user property `wsfleet-sent`, decimal digits ([`PROPERTY`]);
//! - `payload` (3.1.1 and 5.0): [`PAYLOAD_STAMP_LEN`] bytes in front of the payload, the ASCII
//!   text `wsfleet-sent:`, exactly 19 decimal digits (zero-padded) and `;`, e.g.
//!   `wsfleet-sent:0001764509000123456;` — the subscriber strips them, so the scenario's steps
//!   see the payload as published, byte for byte;
//! - `off`: no stamp.
//!
//! A subscriber reads whichever a delivery carries, whatever its own option says: a payload
//! stamp first (always stripped), else the property.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// The user property's name.
pub const PROPERTY: &str = "wsfleet-sent";

/// The payload stamp's first bytes.
pub const PAYLOAD_MARKER: &[u8] = b"wsfleet-sent:";
/// The payload stamp's digits: enough for every non-negative `i64`.
const PAYLOAD_DIGITS: usize = 19;
/// The payload stamp's last byte.
const PAYLOAD_END: u8 = b';';
/// The payload stamp's length: marker, digits, end.
pub const PAYLOAD_STAMP_LEN: usize = PAYLOAD_MARKER.len() + PAYLOAD_DIGITS + 1;

/// The property's value for a publish sent at `unix_micros`.
pub fn encode(unix_micros: i64) -> String {
    unix_micros.to_string()
}

/// The send instant a property value says, in Unix microseconds; `None` unless it is 1 to 19
/// decimal digits (no sign, no spaces) that fit an `i64`.
pub fn decode(value: &str) -> Option<i64> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `payload` with the payload stamp of `unix_micros` (a negative instant writes as 0) in front.
pub fn stamp_payload(payload: &[u8], unix_micros: i64) -> Bytes {
    let mut stamped = BytesMut::with_capacity(PAYLOAD_STAMP_LEN + payload.len());
    stamped.put_slice(PAYLOAD_MARKER);
    // Zero-padded without a `format!` (an allocation a publish).
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(unix_micros.max(0));
    stamped.put_bytes(b'0', PAYLOAD_DIGITS - digits.len());
    stamped.put_slice(digits.as_bytes());
    stamped.put_u8(PAYLOAD_END);
    stamped.put_slice(payload);
    stamped.freeze()
}

/// The send instant of a payload that starts with a payload stamp, and the payload after it (a
/// slice of the same buffer); `None` when it does not start with one (too short, another
/// marker, not 19 digits, no `;` after them, or a value past `i64::MAX`).
pub fn unstamp_payload(payload: &Bytes) -> Option<(i64, Bytes)> {
    let stamp = payload.get(..PAYLOAD_STAMP_LEN)?;
    let (marker, rest) = stamp.split_at(PAYLOAD_MARKER.len());
    let (digits, end) = rest.split_at(PAYLOAD_DIGITS);
    if marker != PAYLOAD_MARKER || end != [PAYLOAD_END] || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sent = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((sent, payload.slice(PAYLOAD_STAMP_LEN..)))
}

/// What a delivery's stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Sent at this instant, Unix microseconds.
    Sent(i64),
    /// No stamp.
    Absent,
    /// A `wsfleet-sent` property whose value is not a stamp.
    Malformed,
}

/// Reads a delivery's stamp: a payload stamp, which is cut off `payload`, else the first
/// `wsfleet-sent` among `user_properties` (left there: the scenario sees it as a header).
pub fn read(payload: &mut Bytes, user_properties: &[(String, String)]) -> Read {
    if let Some((sent, rest)) = unstamp_payload(payload) {
        *payload = rest;
        return Read::Sent(sent);
    }
    let Some((_, value)) = user_properties.iter().find(|(name, _)| name == PROPERTY) else {
        return Read::Absent;
    };
    decode(value).map_or(Read::Malformed, Read::Sent)
}

/// From a stamp to the delivery's arrival at `arrived_micros`; 0 when the stamp is later
/// (clocks apart).
pub fn latency(sent_micros: i64, arrived_micros: i64) -> Duration {
    let micros = arrived_micros.saturating_sub(sent_micros).max(0);
    Duration::from_micros(micros as u64)
}

/// The wall clock now, Unix microseconds.
pub fn unix_micros_now() -> i64 {
    crate::clock::unix_nanos_now() / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_as_written() {
        let sent = 1_764_509_000_123_456;
        assert_eq!(encode(sent), "1764509000123456");
        assert_eq!(decode(&encode(sent)), Some(sent));
        assert_eq!(decode(&encode(0)), Some(0));
        assert_eq!(decode(&encode(i64::MAX)), Some(i64::MAX));
        assert_eq!(latency(sent, sent + 2_500), Duration::from_micros(2_500));
        let now = unix_micros_now();
        assert!(decode(&encode(now)).is_some_and(|read| read == now && read > sent));
    }

    #[test]
    fn a_malformed_stamp_is_no_stamp() {
        for value in [
            "",
            " 1764509000123456",
            "1764509000123456 ",
            "-1764509000123456",
            "+1764509000123456",
            "1764509000.5",
            "0x1f",
            "twelve",
            "9223372036854775808",
            "12345678901234567890",
            "١٢٣",
        ] {
            assert_eq!(decode(value), None, "{value:?}");
        }
    }

    #[test]
    fn a_stamp_from_a_clock_ahead_counts_as_zero() {
        assert_eq!(latency(2_000, 1_000), Duration::ZERO);
        assert_eq!(latency(i64::MAX, i64::MIN), Duration::ZERO);
        assert_eq!(latency(i64::MIN, i64::MAX), Duration::from_micros(i64::MAX as u64));
    }

    /// The payload stamp's exact bytes, and the payload after it as it was, byte for byte
    /// (text, binary, empty, one that itself starts like a stamp).
    #[test]
    fn a_payload_stamp_is_its_exact_bytes_and_strips_off() {
        let sent = 1_764_509_000_123_456;
        let stamped = stamp_payload(b"{\"celsius\": 21}", sent);
        assert_eq!(&stamped[..], b"wsfleet-sent:0001764509000123456;{\"celsius\": 21}");
        assert_eq!(PAYLOAD_STAMP_LEN, 33);
        let (read, rest) = unstamp_payload(&stamped).unwrap();
        assert_eq!((read, &rest[..]), (sent, &b"{\"celsius\": 21}"[..]));
        for payload in [
            &b""[..],
            &[0, 255, 59, 10][..],
            &b"wsfleet-sent:0000000000000000001;inner"[..],
        ] {
            let stamped = stamp_payload(payload, 7);
            assert_eq!(stamped.len(), PAYLOAD_STAMP_LEN + payload.len());
            assert_eq!(unstamp_payload(&stamped), Some((7, Bytes::copy_from_slice(payload))));
        }
        assert_eq!(&stamp_payload(b"", i64::MAX)[..], b"wsfleet-sent:9223372036854775807;");
        assert_eq!(&stamp_payload(b"x", -5)[..], b"wsfleet-sent:0000000000000000000;x");
    }

    /// Payloads that merely start like a stamp are not one, and stay whole.
    #[test]
    fn a_payload_that_only_looks_stamped_is_not() {
        for payload in [
            &b""[..],
            b"wsfleet-sent:",
            b"wsfleet-sent:0001764509000123456",
            b"wsfleet-sent:1764509000123456;hello",
            b"wsfleet-sent:00017645090001234567;",
            b"wsfleet-sent:000176450900012345a;x",
            b"wsfleet-sent:-001764509000123456;x",
            b"wsfleet-sent:0001764509000123456,x",
            b"wsfleet-sent:9999999999999999999;x",
            b"Wsfleet-sent:0001764509000123456;x",
            b"wsfleet-sent=0001764509000123456;x",
            b" wsfleet-sent:0001764509000123456;x",
            b"{\"wsfleet-sent\": 1764509000123456}",
        ] {
            let whole = Bytes::copy_from_slice(payload);
            assert_eq!(unstamp_payload(&whole), None, "{:?}", String::from_utf8_lossy(payload));
            let mut kept = whole.clone();
            assert_eq!(read(&mut kept, &[]), Read::Absent);
            assert_eq!(kept, whole);
        }
    }

    /// A payload stamp comes first (and is cut off), the property next; a property that is not
    /// a stamp is malformed.
    #[test]
    fn a_delivery_reads_whichever_stamp_it_carries() {
        let property = |value: &str| {
            vec![
                ("trace".to_owned(), "a".to_owned()),
                (PROPERTY.to_owned(), value.to_owned()),
            ]
        };
        let mut payload = stamp_payload(b"hi", 5_000);
        assert_eq!(read(&mut payload, &property("9000")), Read::Sent(5_000));
        assert_eq!(&payload[..], b"hi");
        let mut payload = Bytes::from_static(b"hi");
        assert_eq!(read(&mut payload, &property("9000")), Read::Sent(9_000));
        assert_eq!(read(&mut payload, &property("soon")), Read::Malformed);
        assert_eq!(read(&mut payload, &[]), Read::Absent);
        assert_eq!(&payload[..], b"hi");
    }
}
