//! `?capacity=N` and `?capacity_rate=R`: the server plays a service that holds N open
//! connections, or R messages a second, well and degrades past them, for goal-seeking tests.
//! Each reply waits `overload_delay` for every open connection past N (counted on the whole
//! server) and for every message past R in the busiest of the current and the previous second
//! (counted over the connections that set `capacity_rate`); with `refuse_over` or more
//! connections open, new upgrades are refused with `503`.
//!
//! The rate form suits open-model loads: its delay follows the arrival rate alone, where the
//! connection form feeds on itself (slow replies keep connections open, which slows replies).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long each unit past the capacity adds to every reply when the query does not say.
pub(crate) const DEFAULT_OVERLOAD_DELAY: Duration = Duration::from_millis(20);

/// A connection's view of the server's capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overload {
    /// `capacity=N`: open connections served at full speed.
    pub(crate) connections: Option<u64>,
    /// `capacity_rate=R`: messages a second served at full speed.
    pub(crate) rate: Option<u64>,
    /// `overload_delay=D`: added to each reply per connection (or message a second) past the
    /// capacity.
    pub(crate) delay_per_unit: Duration,
    /// `refuse_over=M` (with `capacity`, default twice it): with this many open, upgrades get
    /// `503`.
    pub(crate) refuse_at: Option<u64>,
}

impl Overload {
    /// How long a reply waits with `open` connections open and `rate` messages a second.
    pub(crate) fn reply_delay(&self, open: u64, rate: u64) -> Option<Duration> {
        let over = |load: u64, capacity: Option<u64>| capacity.map_or(0, |capacity| load.saturating_sub(capacity));
        let units = over(open, self.connections) + over(rate, self.rate);
        (units > 0).then(|| {
            self.delay_per_unit
                .saturating_mul(u32::try_from(units).unwrap_or(u32::MAX))
        })
    }

    /// Whether an upgrade is refused with `open` connections open already.
    pub(crate) fn refuses(&self, open: u64) -> bool {
        self.refuse_at.is_some_and(|refuse_at| open >= refuse_at)
    }
}

/// The overload parameters as the query gave them, checked together once all are read.
#[derive(Debug, Default)]
pub(crate) struct OverloadParameters {
    pub(crate) capacity: Option<u64>,
    pub(crate) capacity_rate: Option<u64>,
    pub(crate) delay: Option<Duration>,
    pub(crate) refuse_over: Option<u64>,
}

impl OverloadParameters {
    pub(crate) fn build(self) -> Result<Option<Overload>, String> {
        if self.capacity.is_none() && self.capacity_rate.is_none() {
            if self.delay.is_some() || self.refuse_over.is_some() {
                return Err(
                    "overload_delay and refuse_over need capacity=N (connections) or capacity_rate=R (messages a second)"
                        .into(),
                );
            }
            return Ok(None);
        }
        let refuse_at = match (self.capacity, self.refuse_over) {
            (None, Some(_)) => return Err("refuse_over needs capacity=N: it counts open connections".into()),
            (None, None) => None,
            (Some(capacity), refuse_over) => {
                let refuse_at = refuse_over.unwrap_or(capacity.saturating_mul(2));
                if refuse_at <= capacity {
                    return Err(format!(
                        "refuse_over={refuse_at} must be above capacity={capacity}: past the capacity, replies slow down first"
                    ));
                }
                Some(refuse_at)
            }
        };
        Ok(Some(Overload {
            connections: self.capacity,
            rate: self.capacity_rate,
            delay_per_unit: self.delay.unwrap_or(DEFAULT_OVERLOAD_DELAY),
            refuse_at,
        }))
    }
}

/// Messages a second over the connections that set `capacity_rate`: whole seconds since the
/// server started, the current one and the one before.
#[derive(Debug)]
pub(crate) struct RateMeter {
    started: Instant,
    /// (current second, its messages so far, the previous second's messages).
    seconds: Mutex<(u64, u64, u64)>,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            started: Instant::now(),
            seconds: Mutex::new((0, 0, 0)),
        }
    }
}

impl RateMeter {
    /// Counts one message at `now`; returns the busier of the current second (so far) and the
    /// previous one.
    pub(crate) fn arrive(&self, now: Instant) -> u64 {
        let second = now.saturating_duration_since(self.started).as_secs();
        // Held for a few additions, never across an await; a poisoned lock still counts.
        let mut seconds = self.seconds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (current, count, previous) = &mut *seconds;
        if second != *current {
            *previous = if second == *current + 1 { *count } else { 0 };
            *current = second;
            *count = 0;
        }
        *count += 1;
        (*count).max(*previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_slow_down_past_the_capacity_and_upgrades_are_refused_further() {
        let overload = OverloadParameters {
            capacity: Some(20),
            delay: Some(Duration::from_millis(50)),
            ..OverloadParameters::default()
        }
        .build()
        .expect("valid")
        .expect("given");
        assert_eq!(overload.reply_delay(20, 1_000), None);
        assert_eq!(overload.reply_delay(21, 0), Some(Duration::from_millis(50)));
        assert_eq!(overload.reply_delay(24, 0), Some(Duration::from_millis(200)));
        assert!(!overload.refuses(39));
        assert!(overload.refuses(40));
        let by_rate = OverloadParameters {
            capacity_rate: Some(30),
            ..OverloadParameters::default()
        }
        .build()
        .expect("valid")
        .expect("given");
        assert_eq!(by_rate.reply_delay(1_000, 30), None);
        assert_eq!(by_rate.reply_delay(1_000, 33), Some(Duration::from_millis(60)));
        assert!(!by_rate.refuses(1_000));
        let lone = OverloadParameters {
            delay: Some(Duration::from_millis(5)),
            ..OverloadParameters::default()
        };
        assert!(lone.build().is_err());
        let inverted = OverloadParameters {
            capacity: Some(10),
            refuse_over: Some(10),
            ..OverloadParameters::default()
        };
        assert!(inverted.build().is_err_and(|message| message.contains("must be above")));
        let refuse_by_rate = OverloadParameters {
            capacity_rate: Some(10),
            refuse_over: Some(30),
            ..OverloadParameters::default()
        };
        assert!(refuse_by_rate
            .build()
            .is_err_and(|message| message.contains("needs capacity=N")));
    }

    #[test]
    fn the_rate_is_the_busier_of_this_second_and_the_last() {
        let meter = RateMeter::default();
        let at = |millis: u64| meter.started + Duration::from_millis(millis);
        for index in 0..30 {
            meter.arrive(at(index * 30));
        }
        // Second 1: the previous second's 30 count until this one passes them.
        assert_eq!(meter.arrive(at(1_000)), 30);
        for _ in 0..34 {
            meter.arrive(at(1_500));
        }
        assert_eq!(meter.arrive(at(1_900)), 36);
        // A silent second forgets what came before it.
        assert_eq!(meter.arrive(at(3_100)), 1);
    }
}
