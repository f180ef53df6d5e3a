//! A VU's state while it plays: its connections, what it remembers between steps (values,
//! the last handshake and message of each connection), its pacing lag, and the readings it
//! reuses on the hot path (the receive timer, the last instant read). The step bodies, the
//! inbox and the policy are methods on it, each in the file of its idea.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wsfleet_metrics::ErrorKind;
use wsfleet_scenario::{ConnId, Scope, StepId, Values};

use super::conn::{Conn, ConnInfo};
use super::env::RunEnv;
use super::outcome::{Failure, StepResult};
use super::timer::ReceiveTimer;

/// One VU's state while it plays: its connections and what it remembers between steps.
pub(super) struct Vu {
    pub(super) env: Rc<RunEnv>,
    /// The scenario part this VU plays.
    pub(super) part: usize,
    pub(super) number: u64,
    pub(super) vu_iteration: u64,
    pub(super) conns: Vec<Option<Conn>>,
    pub(super) info: Vec<ConnInfo>,
    /// Values this VU extracted, its receive states and its data feed rows.
    pub(super) vars: Values,
    /// Held until the first connect has finished (open model).
    pub(super) handshake: Option<tokio::sync::OwnedSemaphorePermit>,
    /// How late the current paced iteration or round started: sends are timed from when they
    /// were due, so a slow target's latency is not hidden (no coordinated omission).
    pub(super) lag: Duration,
    /// The receive timeout's timer, kept from one receive to the next (made on the first).
    pub(super) receive_timer: Option<ReceiveTimer>,
    /// An instant the step that just ended read, with nothing awaited since: the next step's
    /// start or the repeat's end check uses it instead of reading the clock again (a clock read
    /// costs ~50 ns here, as much as a third of a message's metrics).
    pub(super) recent: Option<Instant>,
    /// The scope this VU's scripts run in (empty until the first script runs).
    pub(super) scripts: wsfleet_scenario::script::ScriptScope,
    /// The VU's cookie jar and kept-alive HTTP connections, made by its first http step (a VU
    /// without one pays a pointer).
    pub(super) http: Option<Box<crate::http::HttpSession>>,
    /// The operator's pause of the VU's part: the VU waits before its next step while it holds.
    pub(super) pause: Arc<crate::executor::Pause>,
    /// Asked to finish the iteration: a pause no longer holds the VU.
    pub(super) graceful: CancellationToken,
    /// How long the VU waited on pauses since its pacing last took them into account.
    pub(super) paused_for: Duration,
    /// When each `mutation` and `http` step last sent its request (less the pacing lag), for a
    /// receive's `latency_of` on any connection; few such steps, so a list.
    pub(super) request_times: Vec<(StepId, Instant)>,
}

pub(super) type StepFuture<'a> = Pin<Box<dyn Future<Output = StepResult> + 'a>>;

/// The parts of a VU a template needs, borrowed apart from its connections.
pub(super) struct ScopeParts<'a> {
    pub(super) env: &'a RunEnv,
    pub(super) number: u64,
    pub(super) vu_iteration: u64,
    pub(super) vars: &'a Values,
}

impl ScopeParts<'_> {
    pub(super) fn scope(&self, iteration: u64) -> Scope<'_> {
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
    /// Remembers when the request of `step` (a `mutation` or `http` step) left, for receives
    /// that time their message from it (`latency_of`).
    pub(super) fn note_request(&mut self, step: StepId, sent: Instant) {
        match self.request_times.iter_mut().find(|(id, _)| *id == step) {
            Some(entry) => entry.1 = sent,
            None => self.request_times.push((step, sent)),
        }
    }

    pub(super) fn spec(&self) -> &wsfleet_scenario::Part {
        &self.env.scenario.parts[self.part]
    }

    pub(super) fn parts(&self) -> ScopeParts<'_> {
        ScopeParts {
            env: &self.env,
            number: self.number,
            vu_iteration: self.vu_iteration,
            vars: &self.vars,
        }
    }

    pub(super) fn conn_mut(&mut self, conn: ConnId, step: StepId) -> Result<&mut Conn, Failure> {
        self.conns
            .get_mut(conn)
            .and_then(Option::as_mut)
            .ok_or_else(|| Failure::new(step, ErrorKind::Closed))
    }
}
