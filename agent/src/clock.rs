//! The wall clock as the wire speaks it (Unix epoch nanoseconds) and its link to the monotonic
//! clock the agent schedules by.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
