//! Rendezvous points as the controller counts them: arrivals of the current generation add
//! up across the fleet; a point is released when its count is reached, or when its last
//! arrival is older than its timeout (whoever is there goes).

use std::time::Instant;

use wsfleet_scenario::Rendezvous;

/// One point of the run.
pub struct Point {
    pub spec: Rendezvous,
    /// Releases so far; arrivals of this generation count.
    pub generation: u64,
    pub arrived: u64,
    pub last_arrival: Option<Instant>,
}

/// Why a point was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    CountReached,
    Timeout,
}

impl Release {
    pub fn why(self) -> &'static str {
        match self {
            Release::CountReached => "count reached",
            Release::Timeout => "timeout since the last arrival",
        }
    }
}

impl Point {
    pub fn new(spec: Rendezvous) -> Point {
        Point {
            spec,
            generation: 0,
            arrived: 0,
            last_arrival: None,
        }
    }

    /// Counts `count` VUs arriving for `generation` at `now`; says whether that releases the
    /// point. Arrivals for another generation were sent before the agent saw that generation's
    /// release: those VUs are released by it, and do not count.
    pub fn arrive(&mut self, generation: u64, count: u64, now: Instant) -> Option<Release> {
        if generation != self.generation {
            return None;
        }
        self.arrived += count;
        self.last_arrival = Some(now);
        (self.arrived >= self.spec.count).then_some(Release::CountReached)
    }

    /// Whether the point's wait is over at `now`: its last arrival is older than its timeout.
    pub fn timed_out(&self, now: Instant) -> Option<Release> {
        self.last_arrival
            .filter(|last| now.saturating_duration_since(*last) >= self.spec.timeout)
            .map(|_| Release::Timeout)
    }

    /// Opens the next generation; returns the one released.
    pub fn release(&mut self) -> u64 {
        let released = self.generation;
        self.generation += 1;
        self.arrived = 0;
        self.last_arrival = None;
        released
    }
}
