//! The send stamp of an MQTT 5.0 publish: the user property `wsfleet-sent`, the publisher's wall
//! clock when it published, in microseconds since the Unix epoch as decimal digits. A
//! subscriber in the same run reads it off a delivery and records `delivery_latency`: its own
//! wall clock at the delivery's arrival less the stamp. The two clocks are one clock on one
//! machine; across machines they are as close as NTP keeps them, and a delivery stamped after
//! it arrived (a clock behind the publisher's) counts as 0.
//!
//! MQTT 3.1.1 has no properties: its publishes carry no stamp (the payload is the scenario's,
//! byte for byte) and its deliveries are not timed.

use std::time::Duration;

/// The user property's name.
pub const PROPERTY: &str = "wsfleet-sent";

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
}
