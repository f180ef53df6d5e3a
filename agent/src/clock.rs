//! The clocks the agent reads.
//!
//! [`now`] is the instant VUs and their connections read: tokio's. Built without tokio's
//! `test-util` feature (every build but the agent's own unit tests) it is the system clock read
//! directly, at the cost of `Instant::now()`; under `tokio::time::pause()` it is the test's
//! virtual clock, so latencies, arrivals and pacing lateness are exact in unit tests.
//!
//! [`unix_nanos_now`] and [`instant_of_unix`] are the wall clock as the wire speaks it (Unix epoch
//! nanoseconds) and its link to the monotonic clock the agent schedules by.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The current instant.
#[inline]
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The wall clock now, Unix epoch nanoseconds (0 for a clock set before 1970).
pub fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}

/// The local instant matching a wall-clock time in Unix nanoseconds.
pub fn instant_of_unix(unix_nanos: i64) -> Instant {
    let delta = unix_nanos - unix_nanos_now();
    let now = Instant::now();
    if delta >= 0 {
        now + Duration::from_nanos(delta as u64)
    } else {
        now.checked_sub(Duration::from_nanos(delta.unsigned_abs()))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_time_maps_to_the_matching_instant() {
        let in_a_minute = unix_nanos_now() + 60_000_000_000;
        let until = instant_of_unix(in_a_minute).saturating_duration_since(Instant::now());
        assert!(
            until > Duration::from_secs(59) && until <= Duration::from_secs(60),
            "{until:?}"
        );
        let a_minute_ago = instant_of_unix(unix_nanos_now() - 60_000_000_000);
        assert!(a_minute_ago <= Instant::now());
    }
}
