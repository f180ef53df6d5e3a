//! A virtual user: plays the scenario's steps on its connections, iteration after iteration,
//! applies the scenario's handlers to what arrives, and records every event where it happens
//! into its worker's recorder.
//!
//! A data message is counted (`messages_received`, payload bytes) in the set of the step or
//! handler that takes it. Messages that arrive while a VU waits for something else (a pong, a
//! matching message, a close) wait in the connection's queue for a later receive; their latency
//! is measured from when they arrived. Messages never taken are counted in the connection set as
//! `messages_unread` when their connection ends.
//!
//! The parts, one idea each:
//! - [`env`]: what every VU of a run on one worker shares (`RunEnv`), built once per run.
//! - [`iteration`]: the iteration and pacing loop, the step dispatch and `repeat`.
//! - [`outcome`]: how a step ends (`Stop`, `Failure`) and the `on_error` / `on_close` policy.
//! - [`conn`]: one open connection's state (its queue, its send times) and what outlives it.
//! - [`connect`], [`receive`], [`outgoing`] (send), [`ping`], [`closing`] (close), [`flow`]
//!   (think, rendezvous, check, extract): the step bodies, one family per file.
//! - [`inbox`]: what arrives: the pending queue, the `on_message` handlers and their replies,
//!   and reading every connection while the VU waits.

mod closing;
mod conn;
mod connect;
mod env;
mod flow;
mod inbox;
mod iteration;
mod outcome;
mod outgoing;
mod ping;
mod receive;
#[cfg(test)]
mod sizes;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wsfleet_metrics::ErrorKind;
use wsfleet_scenario::{ConnId, Scope, StepId};

pub use env::{
    static_messages, step_tls_configs, RunEnv, StaticMessages, UpgradeRequests, HANDSHAKES_IN_FLIGHT_PER_WORKER,
};
pub use iteration::run_vu;

use conn::{Conn, ConnInfo};
use outcome::{Failure, StepResult};
use receive::ReceiveTimer;

/// Messages a connection keeps for later receives; past this the oldest is dropped (and
/// counted as unread), so a VU that never reads a busy connection cannot grow without bound.
pub const QUEUED_MESSAGES_PER_CONNECTION: usize = 1024;

/// How the executor steers one VU.
#[derive(Clone)]
pub struct VuControl {
    /// Finish the current iteration, then stop.
    pub graceful: CancellationToken,
    /// Stop now: close connections with a close frame and end.
    pub hard: Arc<crate::stop::HardStop>,
}

/// One VU's state while it plays: its connections and what it remembers between steps.
struct Vu {
    env: Rc<RunEnv>,
    /// The scenario part this VU plays.
    part: usize,
    number: u64,
    vu_iteration: u64,
    conns: Vec<Option<Conn>>,
    info: Vec<ConnInfo>,
    /// Values this VU extracted, its receive states and its data feed rows.
    vars: HashMap<String, String>,
    /// Held until the first connect has finished (open model).
    handshake: Option<tokio::sync::OwnedSemaphorePermit>,
    /// How late the current paced iteration or round started: sends are timed from when they
    /// were due, so a slow target's latency is not hidden (no coordinated omission).
    lag: Duration,
    /// The receive timeout's timer, kept from one receive to the next (made on the first).
    receive_timer: Option<ReceiveTimer>,
    /// An instant the step that just ended read, with nothing awaited since: the next step's
    /// start or the repeat's end check uses it instead of reading the clock again (a clock read
    /// costs ~50 ns here, as much as a third of a message's metrics).
    recent: Option<Instant>,
}

type StepFuture<'a> = Pin<Box<dyn Future<Output = StepResult> + 'a>>;

/// The parts of a VU a template needs, borrowed apart from its connections.
struct ScopeParts<'a> {
    env: &'a RunEnv,
    number: u64,
    vu_iteration: u64,
    vars: &'a HashMap<String, String>,
}

impl ScopeParts<'_> {
    fn scope(&self, iteration: u64) -> Scope<'_> {
        Scope {
            vu: self.number,
            iteration,
            vu_iteration: self.vu_iteration,
            agent: &self.env.agent_id,
            named: &self.env.named,
            local: Some(self.vars),
        }
    }
}

impl Vu {
    fn spec(&self) -> &wsfleet_scenario::Part {
        &self.env.scenario.parts[self.part]
    }

    fn parts(&self) -> ScopeParts<'_> {
        ScopeParts {
            env: &self.env,
            number: self.number,
            vu_iteration: self.vu_iteration,
            vars: &self.vars,
        }
    }

    fn conn_mut(&mut self, conn: ConnId, step: StepId) -> Result<&mut Conn, Failure> {
        self.conns
            .get_mut(conn)
            .and_then(Option::as_mut)
            .ok_or_else(|| Failure::new(step, ErrorKind::Closed))
    }
}
