//! `?capacity=N`: the server plays a service that holds N connections well and degrades past
//! them, for goal-seeking tests. With more than N connections open on the whole server, each
//! reply waits `overload_delay` for every connection past N (latency grows with the overload);
//! with `refuse_over` or more open, new upgrades are refused with `503`.

use std::time::Duration;

/// How long each connection past the capacity adds to every reply when the query does not say.
pub(crate) const DEFAULT_OVERLOAD_DELAY: Duration = Duration::from_millis(20);

/// A connection's view of the server's capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overload {
    /// `capacity=N`: open connections served at full speed.
    pub(crate) capacity: u64,
    /// `overload_delay=D`: added to each reply per open connection past the capacity.
    pub(crate) delay_per_connection: Duration,
    /// `refuse_over=M` (default twice the capacity): with this many open, upgrades get `503`.
    pub(crate) refuse_at: u64,
}

impl Overload {
    /// How long a reply waits with `open` connections open on the server.
    pub(crate) fn reply_delay(&self, open: u64) -> Option<Duration> {
        let over = open.checked_sub(self.capacity).filter(|over| *over > 0)?;
        Some(
            self.delay_per_connection
                .saturating_mul(u32::try_from(over).unwrap_or(u32::MAX)),
        )
    }

    /// Whether an upgrade is refused with `open` connections open already.
    pub(crate) fn refuses(&self, open: u64) -> bool {
        open >= self.refuse_at
    }
}

/// The overload parameters as the query gave them, checked together once all are read.
#[derive(Debug, Default)]
pub(crate) struct OverloadParameters {
    pub(crate) capacity: Option<u64>,
    pub(crate) delay: Option<Duration>,
    pub(crate) refuse_over: Option<u64>,
}

impl OverloadParameters {
    pub(crate) fn build(self) -> Result<Option<Overload>, String> {
        let Some(capacity) = self.capacity else {
            if self.delay.is_some() || self.refuse_over.is_some() {
                return Err(
                    "overload_delay and refuse_over need capacity=N (the connections served at full speed)".into(),
                );
            }
            return Ok(None);
        };
        let refuse_at = self.refuse_over.unwrap_or(capacity.saturating_mul(2));
        if refuse_at <= capacity {
            return Err(format!(
                "refuse_over={refuse_at} must be above capacity={capacity}: past the capacity, replies slow down first"
            ));
        }
        Ok(Some(Overload {
            capacity,
            delay_per_connection: self.delay.unwrap_or(DEFAULT_OVERLOAD_DELAY),
            refuse_at,
        }))
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
            refuse_over: None,
        }
        .build()
        .expect("valid")
        .expect("given");
        assert_eq!(overload.reply_delay(20), None);
        assert_eq!(overload.reply_delay(21), Some(Duration::from_millis(50)));
        assert_eq!(overload.reply_delay(24), Some(Duration::from_millis(200)));
        assert!(!overload.refuses(39));
        assert!(overload.refuses(40));
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
    }
}
