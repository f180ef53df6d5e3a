//! The clock VUs and their connections read: tokio's. Built without tokio's `test-util`
//! feature (every build but the agent's own unit tests) it is the system clock read directly,
//! at the cost of `Instant::now()`; under `tokio::time::pause()` it is the test's virtual
//! clock, so latencies, arrivals and pacing lateness are exact in unit tests.

use std::time::Instant;

/// The current instant.
#[inline]
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
