//! A virtual user: plays the scenario's steps on its connections, iteration after iteration,
//! applies the scenario's handlers to what arrives, and records every event where it happens
//! into its worker's recorder.
//!
//! A data message is counted (`messages_received`, payload bytes) in the set of the step or
//! handler that takes it. Messages that arrive while a VU waits for something else (a pong, a
//! matching message, a close) wait in the connection's queue for a later receive; their latency
//! is measured from when they arrived. Messages never taken are counted in the connection set as
//! `messages_unread` when their connection ends.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use rand::Rng;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::catalog::{close_code_counter, error_counter, ACTIVE_CONNECTIONS};
use wsfleet_metrics::{Counter, ErrorKind, Hist, Recorder, SetId};
use wsfleet_scenario::feeds::Per;
use wsfleet_scenario::matcher::{Extraction, Incoming, Origin};
use wsfleet_scenario::{
    Action, ConnId, ExtractFrom, FrameKind, OnFail, Payload, Scenario, Scope, Send, Step, StepId, Then, Think,
};

use crate::connection::{self, classify_ws_error, ConnectRequest, Socket, TlsConfig};
use crate::upgrade::UpgradeRequest;

/// What every VU of a run on one worker shares.
pub struct RunEnv {
    pub scenario: Arc<Scenario>,
    /// Messages whose content never changes, built once per run (a clone is a reference count).
    pub static_messages: Arc<StaticMessages>,
    pub agent_id: Arc<str>,
    /// Run-level values for `${...}`: scenario variables, `target`, `testserver.*`, `run_id`.
    pub named: Arc<HashMap<String, String>>,
    pub tls: TlsConfig,
    /// TLS settings of connect steps with their own (a CA file, or no verification).
    pub step_tls: Arc<HashMap<StepId, TlsConfig>>,
    /// The run's rendezvous points.
    pub rendezvous: Arc<crate::rendezvous::RendezvousHub>,
    pub recorder: Rc<RefCell<Recorder>>,
    /// Handshakes this worker runs at once. Unbounded, a thousand VUs starting together
    /// allocate a thousand handshakes' buffers at the same moment; the allocator keeps that
    /// peak, doubling the memory per idle connection, and the target sees a SYN burst. A few
    /// dozen in flight already keep a core busy on loopback.
    pub handshake_slots: Rc<tokio::sync::Semaphore>,
    /// Local addresses new connections bind to, in turn.
    pub source_addresses: connection::SourceAddresses,
    /// Each connect step's upgrade request as last laid out, reused while the step renders
    /// the same URL, headers and subprotocols (always, when they hold no per-VU variables).
    pub upgrades: UpgradeRequests,
}

/// The upgrade requests of a worker's connect steps.
#[derive(Default)]
pub struct UpgradeRequests(RefCell<HashMap<StepId, Rc<UpgradeRequest>>>);

impl UpgradeRequests {
    /// The request for these inputs: the one laid out before when they are the same,
    /// otherwise a new one (replacing it).
    fn get(
        &self,
        step: StepId,
        url: &str,
        headers: &[(&str, &str)],
        subprotocols: &[&str],
    ) -> Result<Rc<UpgradeRequest>, connection::ConnectError> {
        if let Some(request) = self.0.borrow().get(&step) {
            if request.is_for(url, headers, subprotocols) {
                return Ok(request.clone());
            }
        }
        let request = Rc::new(UpgradeRequest::new(url, headers, subprotocols)?);
        self.0.borrow_mut().insert(step, request.clone());
        Ok(request)
    }
}

/// Handshakes in flight per worker thread.
pub const HANDSHAKES_IN_FLIGHT_PER_WORKER: usize = 64;

/// Messages a connection keeps for later receives; past this the oldest is dropped (and
/// counted as unread), so a VU that never reads a busy connection cannot grow without bound.
pub const QUEUED_MESSAGES_PER_CONNECTION: usize = 1024;

/// Messages whose content never changes, indexed by step id.
pub type StaticMessages = Vec<Option<Message>>;

/// Builds the messages of sends whose payload has no variables.
pub fn static_messages(scenario: &Scenario) -> StaticMessages {
    let mut messages = vec![None; scenario.step_names.len()];
    fn add(id: StepId, send: &Send, messages: &mut StaticMessages) {
        let bytes: Option<Vec<u8>> = match &send.payload {
            Payload::Text(template) => template.as_literal().map(|text| text.as_bytes().to_vec()),
            Payload::Bytes(bytes) => Some(bytes.clone()),
        };
        if let Some(slot) = messages.get_mut(usize::from(id)) {
            *slot = bytes.and_then(|bytes| build_message(bytes, send.frame));
        }
    }
    scenario.each_step(&mut |step| {
        if let Action::Send(send) = &step.action {
            add(step.id, send, &mut messages);
        }
    });
    for part in &scenario.parts {
        for rule in &part.on_message {
            if let Some(reply) = &rule.reply {
                add(rule.id, reply, &mut messages);
            }
        }
    }
    messages
}

/// The TLS settings of every connect step that has its own. Steps that keep the default roots
/// (e.g. only set `server_name`) also keep trusting the run's test server, `testserver_pem`.
pub fn step_tls_configs(
    scenario: &Scenario,
    testserver_pem: Option<&str>,
) -> Result<HashMap<StepId, TlsConfig>, String> {
    let mut connects = Vec::new();
    scenario.each_step(&mut |step| {
        if let Action::Connect(connect) = &step.action {
            if !connect.tls.is_default() {
                connects.push((step, connect));
            }
        }
    });
    let mut configs = HashMap::new();
    for (step, connect) in connects {
        let config = connection::step_tls_config(&connect.tls, testserver_pem)
            .map_err(|error| format!("step `{}`: {error}", step.name))?;
        configs.insert(step.id, config);
    }
    Ok(configs)
}

fn build_message(bytes: Vec<u8>, frame: FrameKind) -> Option<Message> {
    match frame {
        FrameKind::Binary => Some(Message::Binary(Bytes::from(bytes))),
        // Validation refused non-UTF-8 bytes in text frames.
        FrameKind::Text => Utf8Bytes::try_from(Bytes::from(bytes)).ok().map(Message::Text),
    }
}

/// How the executor steers one VU.
#[derive(Clone)]
pub struct VuControl {
    /// Finish the current iteration, then stop.
    pub graceful: CancellationToken,
    /// Stop now: close connections with a close frame and end.
    pub hard: Arc<crate::stop::HardStop>,
}

/// Why a step did not simply go on.
enum Stop {
    /// The iteration fails.
    Fail(Failure),
    /// The iteration ends early by the scenario's choice; not a failure.
    EndIteration,
    /// This VU plays no more iterations.
    Halt,
    /// The step ends quietly and the next one runs (`on_close: continue`).
    StepEnded,
}

/// Why a step failed.
struct Failure {
    step: StepId,
    /// `errors.<kind>` label.
    kind: String,
    /// Receive timeouts have their own counter and no `errors.` entry.
    counted_elsewhere: bool,
    /// Already counted and passed through the `on_error` rules (by a step inside a repeat).
    handled: bool,
}

impl Failure {
    fn new(step: StepId, kind: ErrorKind) -> Failure {
        Failure {
            step,
            kind: kind.name().to_owned(),
            counted_elsewhere: false,
            handled: false,
        }
    }

    /// A receive that timed out: counted in `receive_timeouts`, not in `errors.`.
    fn receive_timeout(step: StepId) -> Failure {
        Failure {
            step,
            kind: "receive_timeout".into(),
            counted_elsewhere: true,
            handled: false,
        }
    }
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Stop {
        Stop::Fail(failure)
    }
}

type StepResult = Result<(), Stop>;

/// A data message that arrived before anything took it.
struct Arrived {
    message: Message,
    at: Instant,
    /// Read just now by the step that takes it (not from the queue).
    fresh: bool,
}

/// One open connection and what the steps need to remember about it.
struct Conn {
    socket: Socket,
    recorder: Rc<RefCell<Recorder>>,
    /// Data messages read while waiting for something else, for later receives.
    pending: VecDeque<Arrived>,
    /// When each send last went out (less the pacing lag), for `latency_of`; a scenario has
    /// few sends, so a list beats hashing on every message.
    send_times: Vec<(StepId, Instant)>,
    /// The most recent send not yet answered by a receive.
    unanswered_send: Option<Instant>,
    keep_open: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut recorder = self.recorder.borrow_mut();
        for arrived in self.pending.drain(..) {
            count_message(&mut recorder, now, SetId::Connection, &arrived.message);
            recorder.add(now, SetId::Connection, Counter::MessagesUnread, 1);
        }
        recorder.gauge_add(ACTIVE_CONNECTIONS, -1);
        recorder.add(now, SetId::Connection, Counter::ConnectionsClosed, 1);
    }
}

/// What a VU remembers of a connection beyond its life: for `extract` steps and checks.
#[derive(Default)]
struct ConnInfo {
    /// The handshake response's headers.
    headers: Vec<(String, String)>,
    /// The last data message a step or handler took.
    last: Option<(Bytes, FrameKind)>,
}

/// Plays iterations until the plan's count, a graceful stop, or a hard stop. `handshake` is an
/// open-model VU's place among the fleet's handshakes in flight, given up once it connected.
pub async fn run_vu(
    env: Rc<RunEnv>,
    part: usize,
    number: u64,
    control: VuControl,
    handshake: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let Some(part_spec) = env.scenario.parts.get(part) else {
        return;
    };
    // Open-model VUs play the steps once.
    let iterations_per_vu = match &part_spec.plan.model {
        wsfleet_scenario::LoadModel::Closed { iterations_per_vu, .. } => *iterations_per_vu,
        wsfleet_scenario::LoadModel::Open { .. } => Some(1),
    };
    let connections = part_spec.connections.len().max(1);
    let mut vu = Vu {
        env: env.clone(),
        part,
        number,
        vu_iteration: 0,
        conns: (0..connections).map(|_| None).collect(),
        info: (0..connections).map(|_| ConnInfo::default()).collect(),
        vars: HashMap::new(),
        handshake,
        lag: Duration::ZERO,
        receive_timer: None,
        recent: None,
    };
    let started = Instant::now();
    loop {
        if control.graceful.is_cancelled() || control.hard.is_fired() {
            break;
        }
        if iterations_per_vu.is_some_and(|limit| vu.vu_iteration >= limit) {
            break;
        }
        // Pacing: iteration N starts N periods after the first, against absolute times, so a
        // slow iteration does not push every later one back.
        if let Some(pacing) = part_spec.pacing {
            let due = started + pacing.saturating_mul(u32::try_from(vu.vu_iteration).unwrap_or(u32::MAX));
            let now = Instant::now();
            if due > now {
                // Kept connections stay read for handlers while the VU waits (their errors
                // count in the first step).
                let first = part_spec.steps.first().map_or(0, |step| step.id);
                let waited = tokio::select! {
                    biased;
                    _ = control.hard.wait() => break,
                    _ = control.graceful.cancelled() => break,
                    waited = vu.wait_until(due, first, vu.vu_iteration) => waited,
                };
                if waited.is_err() {
                    // A kept connection failed while waiting: the next iteration reconnects.
                    for conn in &mut vu.conns {
                        *conn = None;
                    }
                }
                vu.lag = Duration::ZERO;
            } else {
                vu.lag = now - due;
            }
        }
        let steps = &part_spec.steps;
        let outcome = match vu.take_rows() {
            Err(stop) => Some(Err(stop)),
            Ok(()) => tokio::select! {
                biased;
                _ = control.hard.wait() => None,
                outcome = vu.play(steps, vu.vu_iteration) => Some(outcome),
            },
        };
        let now = Instant::now();
        let mut stop_vu = false;
        match outcome {
            None => {
                Box::pin(vu.close_all(CloseCode::Away, false)).await;
                break;
            }
            Some(Ok(())) => {
                env.recorder
                    .borrow_mut()
                    .add(now, SetId::Connection, Counter::Iterations, 1);
            }
            Some(Err(Stop::EndIteration)) => {
                env.recorder
                    .borrow_mut()
                    .add(now, SetId::Connection, Counter::IterationsSkipped, 1);
            }
            Some(Err(Stop::Fail(_))) | Some(Err(Stop::Halt)) | Some(Err(Stop::StepEnded)) => {
                stop_vu = matches!(outcome, Some(Err(Stop::Halt)));
                env.recorder
                    .borrow_mut()
                    .add(now, SetId::Connection, Counter::IterationsFailed, 1);
            }
        }
        // Connections live for one iteration unless `keep_open`; a VU that stops closes all.
        let last = stop_vu
            || iterations_per_vu.is_some_and(|limit| vu.vu_iteration + 1 >= limit)
            || control.graceful.is_cancelled();
        let closed = tokio::select! {
            biased;
            _ = control.hard.wait() => false,
            _ = Box::pin(vu.close_all(CloseCode::Normal, !last)) => true,
        };
        if !closed {
            for conn in &mut vu.conns {
                *conn = None;
            }
            break;
        }
        vu.vu_iteration += 1;
        if stop_vu {
            break;
        }
    }
    Box::pin(vu.close_all(CloseCode::Away, false)).await;
}

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

/// A VU's receive timeout. tokio's timer takes a fresh clone of the task's waker every time it
/// is polled; `holds_waker` says the timer already has this VU's, so a receive that finds its
/// socket not ready only polls the timer when it has fired or was never polled.
struct ReceiveTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    holds_waker: bool,
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

    /// Takes this iteration's data feed rows into the VU's values.
    fn take_rows(&mut self) -> StepResult {
        for feed in &self.env.scenario.feeds {
            if feed.per == Per::Vu && self.vu_iteration > 0 {
                continue;
            }
            let Some(row) = feed.row(self.number, self.vu_iteration) else {
                let kind = ErrorKind::DataExhausted.name();
                self.env
                    .recorder
                    .borrow_mut()
                    .add_labeled(Instant::now(), SetId::Connection, error_counter(kind), 1);
                // Rules that name no steps decide; without one the VU stops (it has no row).
                return match self.on_error(kind, None).unwrap_or(Then::StopVu) {
                    Then::Fail => Err(Stop::Fail(Failure {
                        handled: true,
                        ..Failure::new(0, ErrorKind::DataExhausted)
                    })),
                    Then::EndIteration => Err(Stop::EndIteration),
                    Then::Continue => continue,
                    Then::StopVu => Err(Stop::Halt),
                };
            };
            for (column, value) in feed.columns.iter().zip(row) {
                self.vars.insert(format!("{}.{column}", feed.name), value.clone());
            }
        }
        Ok(())
    }

    fn play<'a>(&'a mut self, steps: &'a [Step], iteration: u64) -> StepFuture<'a> {
        Box::pin(async move {
            // Iterations may be paced: nothing read in the previous one is recent.
            self.recent = None;
            for step in steps {
                let result = self.step(step, iteration).await;
                self.handle_result(step.id, result)?;
            }
            Ok(())
        })
    }

    /// Counts a failure where it happened and applies the scenario's `on_error` rules.
    fn handle_result(&mut self, step: StepId, result: StepResult) -> StepResult {
        let mut failure = match result {
            Err(Stop::Fail(failure)) if !failure.handled => failure,
            Err(Stop::StepEnded) => return Ok(()),
            other => return other,
        };
        failure.handled = true;
        if !failure.counted_elsewhere {
            self.env.recorder.borrow_mut().add_labeled(
                Instant::now(),
                SetId::Step(failure.step),
                error_counter(&failure.kind),
                1,
            );
        }
        match self.on_error(&failure.kind, Some(step)).unwrap_or(Then::Fail) {
            Then::Fail => Err(Stop::Fail(failure)),
            Then::EndIteration => Err(Stop::EndIteration),
            Then::Continue => Ok(()),
            Then::StopVu => Err(Stop::Halt),
        }
    }

    /// What the first `on_error` rule for `kind` says; `step: None` (a failure outside the
    /// steps) is for rules that name no steps.
    fn on_error(&self, kind: &str, step: Option<StepId>) -> Option<Then> {
        self.spec()
            .on_error
            .iter()
            .find(|rule| {
                rule.kinds
                    .as_ref()
                    .is_none_or(|kinds| kinds.iter().any(|wanted| wanted == kind))
                    && match step {
                        Some(step) => rule.steps.as_ref().is_none_or(|steps| steps.contains(&step)),
                        None => rule.steps.is_none(),
                    }
            })
            .map(|rule| rule.then)
    }

    fn conn_mut(&mut self, conn: ConnId, step: StepId) -> Result<&mut Conn, Failure> {
        self.conns
            .get_mut(conn)
            .and_then(Option::as_mut)
            .ok_or_else(|| Failure::new(step, ErrorKind::Closed))
    }

    async fn step(&mut self, step: &Step, iteration: u64) -> StepResult {
        // The previous step's instant is good for this step's start only; whatever this step
        // leaves is for the next.
        let recent = self.recent.take();
        match &step.action {
            // Boxed: the step future is sized by its largest arm, and a VU holds it while idle.
            Action::Connect(connect) => Box::pin(self.connect_step(step, connect, iteration)).await,
            Action::Send(send) => self.send_step(step, send, iteration).await,
            Action::Receive(receive) => self.receive_step(step, receive, iteration, recent).await,
            // Boxed: the step future is sized by its largest arm, and a VU holds it while idle.
            Action::Ping(ping) => Box::pin(self.ping_step(step, ping, iteration)).await,
            // Boxed: the step future is sized by its largest arm, and a VU holds it while idle.
            Action::Close(close) => Box::pin(self.close_step(step, close, iteration)).await,
            Action::Think(think) => {
                let until = Instant::now() + think_time(think);
                self.wait_until(until, step.id, iteration).await
            }
            // Boxed once per repeat (not per round): it breaks the recursion of nested repeats.
            Action::Repeat(repeat) => Box::pin(self.repeat(step.id, repeat)).await,
            Action::Extract(extract) => {
                let info = &self.info[extract.conn];
                let origin = match extract.from {
                    ExtractFrom::Handshake => Origin {
                        headers: Some(&info.headers),
                        ..Origin::default()
                    },
                    ExtractFrom::Message => Origin {
                        message: info.last.as_ref().map(|(bytes, kind)| Incoming { bytes, kind: *kind }),
                        ..Origin::default()
                    },
                };
                extract_into(&mut self.vars, &extract.values, origin, step.id)?;
                Ok(())
            }
            // Boxed: the step future is sized by its largest arm, and a VU holds it while idle.
            Action::Rendezvous(rendezvous) => Box::pin(self.rendezvous_step(step, rendezvous, iteration)).await,
            Action::Check(check) => {
                let parts = self.parts();
                let scope = parts.scope(iteration);
                let value = check.value.render(&scope);
                if check.condition.check(&value, &scope) {
                    return Ok(());
                }
                match check.on_fail {
                    OnFail::Fail => Err(Failure::new(step.id, ErrorKind::Check).into()),
                    OnFail::Skip => {
                        self.count_error(step.id, ErrorKind::Check);
                        Err(Stop::EndIteration)
                    }
                    OnFail::Continue => {
                        self.count_error(step.id, ErrorKind::Check);
                        Ok(())
                    }
                }
            }
        }
    }

    /// Plays a repeat's rounds; with pacing, round N is due N periods after the repeat was.
    async fn repeat(&mut self, id: StepId, repeat: &wsfleet_scenario::Repeat) -> StepResult {
        let started = Instant::now();
        // Rounds are due relative to when this repeat itself was due.
        let outer_lag = self.lag;
        let base = started.checked_sub(outer_lag).unwrap_or(started);
        // A duration too long to add never ends the repeat.
        let ends = repeat.duration.and_then(|duration| started.checked_add(duration));
        let mut index = 0u64;
        let result = 'rounds: loop {
            if repeat.count.is_some_and(|count| index >= count) {
                break Ok(());
            }
            // A round may wait for its pacing: the previous round's instant serves the end
            // check at most.
            let recent = self.recent.take();
            if ends.is_some_and(|ends| recent.unwrap_or_else(Instant::now) >= ends) {
                break Ok(());
            }
            if let Some(pacing) = repeat.pacing {
                let due = base + pacing.saturating_mul(u32::try_from(index).unwrap_or(u32::MAX));
                let now = Instant::now();
                if due > now {
                    if repeat.duration.is_some_and(|duration| due - started >= duration) {
                        break Ok(());
                    }
                    if let Err(stop) = self.wait_until(due, id, index).await {
                        break 'rounds Err(stop);
                    }
                    self.lag = Duration::ZERO;
                } else {
                    self.lag = now - due;
                }
            }
            for step in &repeat.steps {
                // A load loop's body is mostly sends and receives: they are played here, each
                // one future deep, rather than through `step` (one more future, sized by every
                // kind of step, built and dropped per message). Same calls, same results.
                let result = match &step.action {
                    Action::Send(send) => {
                        self.recent = None;
                        self.send_step(step, send, index).await
                    }
                    Action::Receive(receive) => {
                        let recent = self.recent.take();
                        self.receive_step(step, receive, index, recent).await
                    }
                    _ => self.step(step, index).await,
                };
                if result.is_err() {
                    if let Err(stop) = self.handle_result(step.id, result) {
                        break 'rounds Err(stop);
                    }
                }
            }
            index += 1;
        };
        self.lag = outer_lag;
        result
    }

    /// Counts a connection that could not be opened; the step fails with the error's kind.
    fn connect_failed(&self, set: SetId, step: StepId, url: &str, error: connection::ConnectError) -> Stop {
        tracing::debug!(vu = self.number, url = %url, kind = %error.kind, detail = %error.detail, "connect failed");
        self.env
            .recorder
            .borrow_mut()
            .add(Instant::now(), set, Counter::ConnectionsFailed, 1);
        Stop::Fail(Failure {
            step,
            kind: error.kind,
            counted_elsewhere: false,
            handled: false,
        })
    }

    async fn connect_step(&mut self, step: &Step, connect: &wsfleet_scenario::Connect, iteration: u64) -> StepResult {
        let set = SetId::Step(step.id);
        if connect.keep_open && self.conns.get(connect.conn).is_some_and(Option::is_some) {
            return Ok(());
        }
        let scope_parts = self.parts();
        let scope = scope_parts.scope(iteration);
        let url = connect.url.render(&scope);
        let upgrade = {
            let headers: Vec<(&str, Cow<'_, str>)> = connect
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.render(&scope)))
                .collect();
            let headers: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_ref())).collect();
            let subprotocols: Vec<Cow<'_, str>> = connect.subprotocols.iter().map(|name| name.render(&scope)).collect();
            let subprotocols: Vec<&str> = subprotocols.iter().map(AsRef::as_ref).collect();
            self.env.upgrades.get(step.id, &url, &headers, &subprotocols)
        };
        let expected_headers: Vec<(String, String)> = connect
            .expect
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.render(&scope).into_owned()))
            .collect();
        // A second connect replaces the connection (closing the old one first).
        Box::pin(self.close_conn(connect.conn, CloseCode::Normal)).await;
        let env = self.env.clone();
        let upgrade = match upgrade {
            Ok(upgrade) => upgrade,
            Err(error) => return Err(self.connect_failed(set, step.id, &url, error)),
        };
        let request = ConnectRequest {
            upgrade: &upgrade,
            timeout: connect.timeout,
            source: env.source_addresses.next(),
            tls: env.step_tls.get(&step.id).unwrap_or(&env.tls),
            server_name: connect.tls.server_name.as_deref(),
            proxy: connect.proxy.as_ref(),
            expect_status: connect.expect.status,
            keep_headers: connect.keep_headers,
        };
        let recorder = &env.recorder;
        // Waiting for a slot is the generator's own queueing, not the target's latency:
        // the handshake is timed from when it starts.
        let slot = env.handshake_slots.acquire().await;
        // Boxed: the handshake's state is large and short-lived; inline, it would size
        // every VU's future for its whole life (a few KB per idle connection).
        let opened = Box::pin(connection::open(&request, recorder, set)).await;
        drop(slot);
        self.handshake = None;
        let opened = match opened {
            Ok(opened) => opened,
            Err(error) => return Err(self.connect_failed(set, step.id, &url, error)),
        };
        let info = &mut self.info[connect.conn];
        info.headers = opened.headers;
        info.last = None;
        if let Some(socket) = opened.socket {
            let now = Instant::now();
            let mut recorder_ref = recorder.borrow_mut();
            recorder_ref.add(now, set, Counter::ConnectionsOpened, 1);
            recorder_ref.gauge_add(ACTIVE_CONNECTIONS, 1);
            drop(recorder_ref);
            self.conns[connect.conn] = Some(Conn {
                socket,
                recorder: recorder.clone(),
                pending: VecDeque::new(),
                send_times: Vec::new(),
                unanswered_send: None,
                keep_open: connect.keep_open,
            });
        }
        let info = &self.info[connect.conn];
        if let Some(wanted) = &connect.expect.subprotocol {
            let picked = header(&info.headers, "sec-websocket-protocol").unwrap_or("");
            if picked != wanted {
                tracing::debug!(vu = self.number, picked, wanted = %wanted, "unexpected subprotocol");
                return Err(Failure::new(step.id, ErrorKind::Expectation).into());
            }
        }
        for (name, value) in &expected_headers {
            if header(&info.headers, name) != Some(value.as_str()) {
                return Err(Failure::new(step.id, ErrorKind::Expectation).into());
            }
        }
        let origin = Origin {
            headers: Some(&self.info[connect.conn].headers),
            ..Origin::default()
        };
        extract_into(&mut self.vars, &connect.extract, origin, step.id)?;
        Ok(())
    }

    async fn receive_step(
        &mut self,
        step: &Step,
        receive: &wsfleet_scenario::Receive,
        iteration: u64,
        recent: Option<Instant>,
    ) -> StepResult {
        let set = SetId::Step(step.id);
        let deadline = receive
            .wait
            .then(|| tokio::time::Instant::from_std(recent.unwrap_or_else(Instant::now)) + receive.timeout);
        let taken = self
            .take_message(receive.conn, receive.matcher.as_ref(), deadline, step.id, iteration)
            .await;
        let arrived = match taken {
            Ok(Some(arrived)) => arrived,
            Ok(None) => {
                // Only a receive that does not wait gets here: it sets its state.
                if let Some(state) = &receive.state {
                    self.vars.insert(state.clone(), "none".to_owned());
                }
                return Ok(());
            }
            Err(Stop::Fail(failure)) if failure.counted_elsewhere => {
                return match receive.on_timeout {
                    OnFail::Fail => Err(Stop::Fail(failure)),
                    OnFail::Skip => Err(Stop::EndIteration),
                    OnFail::Continue => Ok(()),
                };
            }
            Err(stop) => return Err(stop),
        };
        if let Some(state) = &receive.state {
            self.vars.insert(state.clone(), "received".to_owned());
        }
        // A message that waited in the queue is counted now; one just read, at its arrival.
        let now = if arrived.fresh { arrived.at } else { Instant::now() };
        let recorder = self.env.recorder.clone();
        {
            let conn = self.conn_mut(receive.conn, step.id)?;
            let started = match receive.latency_of {
                Some(send) => conn.send_times.iter().find(|(id, _)| *id == send).map(|(_, at)| *at),
                None => conn.unanswered_send,
            };
            conn.unanswered_send = None;
            let mut recorder = recorder.borrow_mut();
            count_message(&mut recorder, now, set, &arrived.message);
            if let Some(started) = started {
                recorder.record(
                    now,
                    set,
                    Hist::MessageLatency,
                    arrived.at.saturating_duration_since(started),
                );
            }
        }
        // The message's bytes are looked at only when something reads them.
        let keep_last = self.spec().reads_last_message;
        if keep_last || !receive.extract.is_empty() {
            let (bytes, kind) = message_bytes(&arrived.message);
            if keep_last {
                self.info[receive.conn].last = Some((bytes.clone(), kind));
            }
            let origin = Origin {
                message: Some(Incoming { bytes: &bytes, kind }),
                ..Origin::default()
            };
            extract_into(&mut self.vars, &receive.extract, origin, step.id)?;
        }
        Ok(())
    }

    async fn send_step(&mut self, step: &Step, send: &Send, iteration: u64) -> StepResult {
        let message = self.message_for(step.id, send, iteration)?;
        self.send_message(
            send.conn,
            message,
            send.fragments,
            SetId::Step(step.id),
            step.id,
            iteration,
        )
        .await
    }

    async fn ping_step(&mut self, step: &Step, ping: &wsfleet_scenario::Ping, iteration: u64) -> StepResult {
        let set = SetId::Step(step.id);
        let body = cut(ping.body.render(&self.parts().scope(iteration)).into_owned(), 125);
        let sent_at = Instant::now();
        {
            let conn = self.conn_mut(ping.conn, step.id)?;
            conn.socket
                .send(Message::Ping(Bytes::from(body)))
                .await
                .map_err(|error| ws_failure(step.id, &error))?;
        }
        self.env.recorder.borrow_mut().add(sent_at, set, Counter::PingsSent, 1);
        let deadline = tokio::time::Instant::now() + ping.timeout;
        self.wait_for_pong(ping.conn, deadline, step.id, iteration).await?;
        let now = Instant::now();
        self.env
            .recorder
            .borrow_mut()
            .record(now, set, Hist::PingLatency, now - sent_at);
        Ok(())
    }

    async fn close_step(&mut self, step: &Step, close: &wsfleet_scenario::Close, iteration: u64) -> StepResult {
        let set = SetId::Step(step.id);
        let Some(mut conn) = self.conns.get_mut(close.conn).and_then(Option::take) else {
            return Err(Failure::new(step.id, ErrorKind::Closed).into());
        };
        let reason = cut(close.reason.render(&self.parts().scope(iteration)).into_owned(), 123);
        let frame = CloseFrame {
            code: CloseCode::from(close.code),
            reason: Utf8Bytes::from(reason),
        };
        let answer = close_connection(&mut conn, frame, close.timeout, step.id, set).await?;
        drop(conn);
        let (code, reason) = answer.unwrap_or((1005, String::new()));
        if let Some(codes) = &close.expect_codes {
            if !codes.contains(&code) {
                return Err(Failure::new(step.id, ErrorKind::Expectation).into());
            }
        }
        let origin = Origin {
            close: Some((code, &reason)),
            ..Origin::default()
        };
        extract_into(&mut self.vars, &close.extract, origin, step.id)?;
        Ok(())
    }

    async fn rendezvous_step(
        &mut self,
        step: &Step,
        rendezvous: &wsfleet_scenario::Rendezvous,
        iteration: u64,
    ) -> StepResult {
        let set = SetId::Step(step.id);
        let started = Instant::now();
        let (generation, receiver) = self.env.rendezvous.arrive(rendezvous.point);
        let released = crate::rendezvous::released(receiver, generation);
        if self.spec().on_message.is_empty() && self.spec().on_close.is_empty() {
            released.await;
        } else {
            // Handlers keep reading the connections while the VU waits.
            let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
            tokio::select! {
                _ = released => {}
                result = self.pump(far, step.id, iteration) => result?,
            }
        }
        let now = Instant::now();
        self.env
            .recorder
            .borrow_mut()
            .record(now, set, Hist::RendezvousWait, now - started);
        Ok(())
    }

    fn count_error(&self, step: StepId, kind: ErrorKind) {
        self.env
            .recorder
            .borrow_mut()
            .add_labeled(Instant::now(), SetId::Step(step), error_counter(kind.name()), 1);
    }

    /// The message a send step (or a handler's reply) sends now.
    fn message_for(&self, id: StepId, send: &Send, iteration: u64) -> Result<Message, Failure> {
        if let Some(Some(message)) = self.env.static_messages.get(usize::from(id)) {
            return Ok(message.clone());
        }
        let bytes = match &send.payload {
            Payload::Text(template) => template
                .render(&self.parts().scope(iteration))
                .into_owned()
                .into_bytes(),
            Payload::Bytes(bytes) => bytes.clone(),
        };
        build_message(bytes, send.frame).ok_or_else(|| Failure::new(id, ErrorKind::Protocol))
    }

    /// Takes a data message (one that matches, if a matcher is given) from a connection: first
    /// among those already queued, then from the socket, until `deadline`; without a deadline,
    /// only what the socket already holds (`Ok(None)` when nothing is there).
    async fn take_message(
        &mut self,
        conn_id: ConnId,
        matcher: Option<&wsfleet_scenario::matcher::Matcher>,
        deadline: Option<tokio::time::Instant>,
        step: StepId,
        iteration: u64,
    ) -> Result<Option<Arrived>, Stop> {
        if let Some(arrived) = self.take_queued(conn_id, matcher, iteration) {
            return Ok(Some(arrived));
        }
        loop {
            let next = {
                // Borrowed apart from the timer.
                let conn = self
                    .conns
                    .get_mut(conn_id)
                    .and_then(Option::as_mut)
                    .ok_or_else(|| Failure::new(step, ErrorKind::Closed))?;
                match deadline {
                    None => match conn.socket.next().now_or_never() {
                        None => return Ok(None),
                        Some(next) => next,
                    },
                    Some(deadline) => {
                        let timer = self.receive_timer.get_or_insert_with(|| ReceiveTimer {
                            sleep: Box::pin(tokio::time::sleep_until(deadline)),
                            holds_waker: false,
                        });
                        match next_before(&mut conn.socket, timer, deadline).await {
                            Some(next) => next,
                            None => {
                                conn.recorder.borrow_mut().add(
                                    Instant::now(),
                                    SetId::Step(step),
                                    Counter::ReceiveTimeouts,
                                    1,
                                );
                                return Err(Stop::Fail(Failure::receive_timeout(step)));
                            }
                        }
                    }
                }
            };
            let (arrived, reply) = self.ingest(conn_id, next, step, iteration)?;
            let replied = reply.is_some();
            if let Some(reply) = reply {
                self.send_reply(conn_id, reply, iteration).await?;
            }
            if let Some(arrived) = arrived {
                if self.matches(matcher, &arrived.message, iteration) {
                    // Its arrival is the step's last clock reading (unless a reply went out since).
                    if !replied {
                        self.recent = Some(arrived.at);
                    }
                    return Ok(Some(arrived));
                }
                self.queue(conn_id, arrived);
            }
        }
    }

    fn matches(&self, matcher: Option<&wsfleet_scenario::matcher::Matcher>, message: &Message, iteration: u64) -> bool {
        let Some(matcher) = matcher else { return true };
        let (bytes, kind) = message_bytes(message);
        matcher.matches(Incoming { bytes: &bytes, kind }, &self.parts().scope(iteration))
    }

    fn take_queued(
        &mut self,
        conn_id: ConnId,
        matcher: Option<&wsfleet_scenario::matcher::Matcher>,
        iteration: u64,
    ) -> Option<Arrived> {
        let position = {
            let conn = self.conns.get(conn_id)?.as_ref()?;
            conn.pending
                .iter()
                .position(|arrived| self.matches(matcher, &arrived.message, iteration))?
        };
        self.conns[conn_id].as_mut()?.pending.remove(position)
    }

    fn queue(&mut self, conn_id: ConnId, mut arrived: Arrived) {
        arrived.fresh = false;
        let Some(conn) = self.conns.get_mut(conn_id).and_then(Option::as_mut) else {
            return;
        };
        if conn.pending.len() >= QUEUED_MESSAGES_PER_CONNECTION {
            if let Some(oldest) = conn.pending.pop_front() {
                let now = Instant::now();
                let mut recorder = conn.recorder.borrow_mut();
                count_message(&mut recorder, now, SetId::Connection, &oldest.message);
                recorder.add(now, SetId::Connection, Counter::MessagesUnread, 1);
            }
        }
        conn.pending.push_back(arrived);
    }

    /// Handles one item read from a connection: data messages go through the `on_message`
    /// rules and come back unless a rule took them; a close goes through `on_close`. A rule's
    /// reply comes back too, for `send_reply`: most receives never reply, and their futures
    /// stay small.
    #[allow(clippy::type_complexity)]
    fn ingest(
        &mut self,
        conn_id: ConnId,
        next: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        step: StepId,
        iteration: u64,
    ) -> Result<(Option<Arrived>, Option<(StepId, Message)>), Stop> {
        let message = match next {
            None => {
                self.conns[conn_id] = None;
                return Err(Failure::new(step, ErrorKind::Reset).into());
            }
            Some(Err(error)) => {
                self.conns[conn_id] = None;
                return Err(ws_failure(step, &error).into());
            }
            Some(Ok(message)) => message,
        };
        match &message {
            Message::Text(_) | Message::Binary(_) => {}
            Message::Close(frame) => {
                let code = frame.as_ref().map_or(1005, |frame| u16::from(frame.code));
                // Let tungstenite answer the close, then let the connection go.
                if let Some(mut conn) = self.conns[conn_id].take() {
                    let _ = conn.socket.flush().now_or_never();
                }
                return Err(self.server_closed(conn_id, code, step));
            }
            // Pings are answered by tungstenite; stray pongs and raw frames are ignored.
            _ => return Ok((None, None)),
        }
        // Arrived when the read that completed it returned (one read may bring many messages).
        let now = match &self.conns[conn_id] {
            Some(conn) => conn.socket.get_ref().last_read(),
            None => Instant::now(),
        };
        let arrived = |message| Arrived {
            message,
            at: now,
            fresh: true,
        };
        if self.spec().on_message.is_empty() {
            return Ok((Some(arrived(message)), None));
        }
        let (bytes, kind) = message_bytes(&message);
        let incoming = Incoming { bytes: &bytes, kind };
        let env = self.env.clone();
        let parts = self.parts();
        let scope = parts.scope(iteration);
        let rule = env.scenario.parts[self.part].on_message.iter().find(|rule| {
            rule.conn.is_none_or(|wanted| wanted == conn_id)
                && rule.when.as_ref().is_none_or(|when| when.matches(incoming, &scope))
        });
        let Some(rule) = rule else {
            return Ok((Some(arrived(message)), None));
        };
        let rule_set = SetId::Step(rule.id);
        let reply = match &rule.reply {
            Some(reply) => Some((
                rule.id,
                self.message_for(rule.id, reply, iteration).map_err(Stop::Fail)?,
            )),
            None => None,
        };
        if !rule.pass {
            let mut recorder = self.env.recorder.borrow_mut();
            count_message(&mut recorder, now, rule_set, &message);
            drop(recorder);
            if self.spec().reads_last_message {
                self.info[conn_id].last = Some((bytes.clone(), kind));
            }
        }
        extract_into(
            &mut self.vars,
            &rule.extract,
            Origin {
                message: Some(incoming),
                ..Origin::default()
            },
            rule.id,
        )?;
        if rule.fail {
            return Err(Failure::new(rule.id, ErrorKind::Handler).into());
        }
        Ok((rule.pass.then(|| arrived(message)), reply))
    }

    /// Ingests what a read returned while nothing waited for data: a handler's reply goes out,
    /// a message nobody took waits in the queue.
    async fn ingest_into_queue(
        &mut self,
        conn_id: ConnId,
        next: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        step: StepId,
        iteration: u64,
    ) -> StepResult {
        let (arrived, reply) = self.ingest(conn_id, next, step, iteration)?;
        if let Some(reply) = reply {
            self.send_reply(conn_id, reply, iteration).await?;
        }
        if let Some(arrived) = arrived {
            self.queue(conn_id, arrived);
        }
        Ok(())
    }

    /// Sends a handler's reply. Boxed: only handlers reply, and the send would size every
    /// receive's future.
    fn send_reply(&mut self, conn_id: ConnId, (rule_id, message): (StepId, Message), iteration: u64) -> StepFuture<'_> {
        let fragments = self
            .spec()
            .on_message
            .iter()
            .find(|rule| rule.id == rule_id)
            .and_then(|rule| rule.reply.as_ref())
            .map_or(1, |reply| reply.fragments);
        Box::pin(self.send_message(conn_id, message, fragments, SetId::Step(rule_id), rule_id, iteration))
    }

    /// Sends a message, whole or in `fragments` frames, and records it in `set`. While the
    /// socket cannot take it (the target is not reading, often because its own sends to this VU
    /// are blocked), what arrives is read meanwhile, through the handlers and into the queue, so
    /// a VU that only sends never deadlocks against a target that answers. Handler replies to
    /// what arrived go out after this message.
    async fn send_message(
        &mut self,
        conn_id: ConnId,
        message: Message,
        fragments: u32,
        set: SetId,
        step: StepId,
        iteration: u64,
    ) -> StepResult {
        let (counter, payload_len) = match &message {
            Message::Text(text) => (Counter::TextMessagesSent, text.len()),
            _ => (Counter::BinaryMessagesSent, message.len()),
        };
        let sent_at = Instant::now();
        let mut outgoing = Outgoing::new(message, fragments);
        let mut unsent: Option<Message> = None;
        let mut replies = Vec::new();
        let mut waited = false;
        loop {
            let event = {
                let conn = self.conn_mut(conn_id, step)?;
                let mut polls = 0;
                let event = std::future::poll_fn(|cx| {
                    polls += 1;
                    poll_send(&mut conn.socket, &mut outgoing, &mut unsent, cx)
                })
                .await;
                waited |= polls > 1;
                event
            };
            match event {
                SendEvent::Sent(Ok(())) => break,
                SendEvent::Sent(Err(error)) => return Err(ws_failure(step, &error).into()),
                SendEvent::Arrived(next) => {
                    let (arrived, reply) = self.ingest(conn_id, next, step, iteration)?;
                    replies.extend(reply);
                    if let Some(arrived) = arrived {
                        self.queue(conn_id, arrived);
                    }
                }
            }
        }
        // Timed from when it was due: a paced send that went out late carries its lateness.
        let due = sent_at.checked_sub(self.lag).unwrap_or(sent_at);
        let conn = self.conn_mut(conn_id, step)?;
        match conn.send_times.iter_mut().find(|(id, _)| *id == step) {
            Some(entry) => entry.1 = due,
            None => conn.send_times.push((step, due)),
        }
        conn.unanswered_send = Some(due);
        conn.recorder.borrow_mut().add_counts(
            sent_at,
            set,
            [
                (Counter::MessagesSent, 1),
                (counter, 1),
                (Counter::PayloadBytesSent, payload_len as u64),
            ],
        );
        if !waited && replies.is_empty() {
            self.recent = Some(sent_at);
        }
        // Checked first: a loop over an empty list still builds and drops its iterator.
        if !replies.is_empty() {
            for reply in replies {
                self.send_reply(conn_id, reply, iteration).await?;
            }
        }
        Ok(())
    }

    /// The server closed a connection the steps were using: `on_close` decides.
    fn server_closed(&mut self, conn_id: ConnId, code: u16, step: StepId) -> Stop {
        let rule = self.spec().on_close.iter().find(|rule| {
            rule.conn.is_none_or(|wanted| wanted == conn_id)
                && rule.codes.as_ref().is_none_or(|codes| codes.contains(&code))
        });
        // The close code is counted once: in the rule's set when a rule takes it, else in the
        // waiting step's.
        let set = SetId::Step(rule.map_or(step, |rule| rule.id));
        self.env
            .recorder
            .borrow_mut()
            .add_labeled(Instant::now(), set, close_code_counter(code), 1);
        let Some(rule) = rule else {
            return Failure::new(step, ErrorKind::Closed).into();
        };
        match rule.then {
            Then::Fail => Failure::new(step, ErrorKind::Closed).into(),
            Then::EndIteration | Then::StopVu => Stop::EndIteration,
            // The waiting step gives up without failing; later steps find the connection gone.
            Then::Continue => Stop::StepEnded,
        }
    }

    /// Waits until `until`: asleep, or, when the scenario has handlers, reading the open
    /// connections so the handlers react meanwhile (errors count in `step`).
    async fn wait_until(&mut self, until: Instant, step: StepId, iteration: u64) -> StepResult {
        if self.spec().on_message.is_empty() && self.spec().on_close.is_empty() {
            tokio::time::sleep_until(until.into()).await;
            Ok(())
        } else {
            // Boxed: only scenarios with handlers need it, and it would size every VU's future.
            Box::pin(self.pump(until.into(), step, iteration)).await
        }
    }

    /// Reads every open connection until the deadline, feeding handlers and queues.
    async fn pump(&mut self, deadline: tokio::time::Instant, step: StepId, iteration: u64) -> StepResult {
        loop {
            let next = {
                let mut reads: Vec<_> = self
                    .conns
                    .iter_mut()
                    .enumerate()
                    .filter_map(|(index, conn)| conn.as_mut().map(|conn| (index, conn)))
                    .map(|(index, conn)| Box::pin(async move { (index, conn.socket.next().await) }))
                    .collect();
                if reads.is_empty() {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(());
                }
                match tokio::time::timeout_at(deadline, futures_util::future::select_all(reads.iter_mut())).await {
                    Err(_) => return Ok(()),
                    Ok(((index, next), _, _)) => (index, next),
                }
            };
            let (conn_id, next) = next;
            match self.ingest_into_queue(conn_id, next, step, iteration).await {
                Ok(()) => {}
                Err(Stop::StepEnded) => {}
                Err(stop) => return Err(stop),
            }
        }
    }

    async fn wait_for_pong(
        &mut self,
        conn_id: ConnId,
        deadline: tokio::time::Instant,
        step: StepId,
        iteration: u64,
    ) -> StepResult {
        loop {
            let next = {
                let conn = self.conn_mut(conn_id, step)?;
                tokio::time::timeout_at(deadline, conn.socket.next())
                    .await
                    .map_err(|_| Failure::new(step, ErrorKind::Timeout))?
            };
            if let Some(Ok(Message::Pong(_))) = next {
                self.env
                    .recorder
                    .borrow_mut()
                    .add(Instant::now(), SetId::Step(step), Counter::PongsReceived, 1);
                return Ok(());
            }
            self.ingest_into_queue(conn_id, next, step, iteration).await?;
        }
    }

    /// Closes one connection, if open, with a close frame and a short wait for the answer;
    /// errors here are not the scenario's and are not counted as failures.
    async fn close_conn(&mut self, conn_id: ConnId, code: CloseCode) {
        let Some(mut conn) = self.conns.get_mut(conn_id).and_then(Option::take) else {
            return;
        };
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(""),
        };
        let _ = close_connection(&mut conn, frame, Duration::from_secs(2), 0, SetId::Connection).await;
    }

    /// Closes every open connection (`keep_open` ones only when `spare_kept` is false).
    async fn close_all(&mut self, code: CloseCode, spare_kept: bool) {
        for conn_id in 0..self.conns.len() {
            let keep = self.conns[conn_id]
                .as_ref()
                .is_some_and(|conn| spare_kept && conn.keep_open);
            if !keep {
                self.close_conn(conn_id, code).await;
            }
        }
    }
}

/// A text cut to at most `limit` bytes at a character boundary (control frame limits).
fn cut(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The socket's next item, or `None` once `deadline` has passed. The timer is armed lazily: a
/// timer already due before `deadline` is left alone and, when it fires early, moved on to
/// `deadline`; only a deadline earlier than the armed one re-arms it at once. Receives one after
/// another with the same timeout thus touch the timer wheel once per timeout period, not once
/// per message, and a timeout still fires at its own deadline.
async fn next_before(
    socket: &mut Socket,
    timer: &mut ReceiveTimer,
    deadline: tokio::time::Instant,
) -> Option<Option<Result<Message, tokio_tungstenite::tungstenite::Error>>> {
    if timer.sleep.is_elapsed() {
        // A fired timer has given its waker away.
        timer.holds_waker = false;
        timer.sleep.as_mut().reset(deadline);
    } else if timer.sleep.deadline() > deadline {
        // Moved while armed: it keeps the waker.
        timer.sleep.as_mut().reset(deadline);
    }
    std::future::poll_fn(|cx| {
        if let Poll::Ready(next) = socket.poll_next_unpin(cx) {
            return Poll::Ready(Some(next));
        }
        // Polled only when it may have fired, or has no waker yet: the VU's task is the only
        // one that polls it, so a waker it holds is this task's.
        if timer.holds_waker && !timer.sleep.is_elapsed() {
            return Poll::Pending;
        }
        while timer.sleep.as_mut().poll(cx).is_ready() {
            if timer.sleep.deadline() >= deadline {
                timer.holds_waker = false;
                return Poll::Ready(None);
            }
            timer.sleep.as_mut().reset(deadline);
        }
        timer.holds_waker = true;
        Poll::Pending
    })
    .await
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn message_bytes(message: &Message) -> (Bytes, FrameKind) {
    match message {
        Message::Text(text) => (Bytes::from(text.clone()), FrameKind::Text),
        Message::Binary(bytes) => (bytes.clone(), FrameKind::Binary),
        _ => (Bytes::new(), FrameKind::Binary),
    }
}

/// Sets the VU's variables from extractions; one that finds nothing (without a default) fails.
fn extract_into(
    vars: &mut HashMap<String, String>,
    extractions: &[Extraction],
    origin: Origin<'_>,
    step: StepId,
) -> Result<(), Failure> {
    for extraction in extractions {
        match extraction.extract(origin) {
            Some(value) => {
                vars.insert(extraction.var.clone(), value);
            }
            None => return Err(Failure::new(step, ErrorKind::Extract)),
        }
    }
    Ok(())
}

/// A message on its way out: whole, or as its fragments.
enum Outgoing {
    Whole(Option<Message>),
    Fragments(std::vec::IntoIter<Message>),
}

impl Outgoing {
    fn new(message: Message, fragments: u32) -> Outgoing {
        if fragments <= 1 {
            return Outgoing::Whole(Some(message));
        }
        let (bytes, kind) = message_bytes(&message);
        let opcode = match kind {
            FrameKind::Text => OpData::Text,
            FrameKind::Binary => OpData::Binary,
        };
        let count = fragments as usize;
        let size = bytes.len().div_ceil(count).max(1);
        let mut frames = Vec::with_capacity(count);
        let mut offset = 0;
        for index in 0..count {
            let end = if index + 1 == count {
                bytes.len()
            } else {
                (offset + size).min(bytes.len())
            };
            let op = if index == 0 {
                OpCode::Data(opcode)
            } else {
                OpCode::Data(OpData::Continue)
            };
            frames.push(Message::Frame(Frame::message(
                bytes.slice(offset..end),
                op,
                index + 1 == count,
            )));
            offset = end;
        }
        Outgoing::Fragments(frames.into_iter())
    }

    fn next(&mut self) -> Option<Message> {
        match self {
            Outgoing::Whole(message) => message.take(),
            Outgoing::Fragments(frames) => frames.next(),
        }
    }
}

enum SendEvent {
    /// Every frame is written and flushed (or the send failed).
    Sent(Result<(), tokio_tungstenite::tungstenite::Error>),
    /// The socket could not take more yet, and something arrived meanwhile.
    Arrived(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

/// Writes `outgoing` (`unsent` holds a frame the socket was not ready for) and flushes; while
/// the socket is not ready, reads instead.
fn poll_send(
    socket: &mut Socket,
    outgoing: &mut Outgoing,
    unsent: &mut Option<Message>,
    cx: &mut std::task::Context<'_>,
) -> Poll<SendEvent> {
    loop {
        let frame = unsent.take().or_else(|| outgoing.next());
        let Some(frame) = frame else {
            // Written whole (the socket took every frame): the flush would have nothing to do
            // but register the task's waker once more, once per message.
            if socket.get_ref().wrote_everything() {
                return Poll::Ready(SendEvent::Sent(Ok(())));
            }
            match socket.poll_flush_unpin(cx) {
                Poll::Ready(result) => return Poll::Ready(SendEvent::Sent(result)),
                Poll::Pending => break,
            }
        };
        match socket.poll_ready_unpin(cx) {
            Poll::Ready(Ok(())) => {
                if let Err(error) = socket.start_send_unpin(frame) {
                    return Poll::Ready(SendEvent::Sent(Err(error)));
                }
            }
            Poll::Ready(Err(error)) => return Poll::Ready(SendEvent::Sent(Err(error))),
            Poll::Pending => {
                *unsent = Some(frame);
                break;
            }
        }
    }
    socket.poll_next_unpin(cx).map(SendEvent::Arrived)
}

fn think_time(think: &Think) -> Duration {
    match think {
        Think::Fixed(duration) => *duration,
        Think::Uniform(low, high) => {
            if low >= high {
                *low
            } else {
                rand::rng().random_range(*low..=*high)
            }
        }
        Think::Exponential(mean) => {
            // Inverse transform sampling; 1 - u is in (0, 1], so the logarithm is finite.
            let u: f64 = rand::rng().random();
            mean.mul_f64(-(1.0 - u).ln())
        }
    }
}

fn ws_failure(step: StepId, error: &tokio_tungstenite::tungstenite::Error) -> Failure {
    Failure {
        step,
        kind: classify_ws_error(error).kind,
        counted_elsewhere: false,
        handled: false,
    }
}

/// Counts a data message taken (or dropped) in `set`.
fn count_message(recorder: &mut Recorder, now: Instant, set: SetId, message: &Message) {
    let (counter, length) = match message {
        Message::Text(text) => (Counter::TextMessagesReceived, text.len()),
        Message::Binary(bytes) => (Counter::BinaryMessagesReceived, bytes.len()),
        _ => return,
    };
    recorder.add_counts(
        now,
        set,
        [
            (Counter::MessagesReceived, 1),
            (counter, 1),
            (Counter::PayloadBytesReceived, length as u64),
        ],
    );
}

/// Sends a close frame and waits (bounded) for the server's; records the server's close code
/// and the close latency in `set`, and returns the server's code and reason.
async fn close_connection(
    conn: &mut Conn,
    frame: CloseFrame,
    timeout: Duration,
    step: StepId,
    set: SetId,
) -> Result<Option<(u16, String)>, Failure> {
    let started = Instant::now();
    if let Err(error) = conn.socket.close(Some(frame)).await {
        return Err(ws_failure(step, &error));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut answer = None;
    loop {
        let next = match tokio::time::timeout_at(deadline, conn.socket.next()).await {
            Err(_) => return Err(Failure::new(step, ErrorKind::Timeout)),
            Ok(next) => next,
        };
        match next {
            // The close handshake is complete when the stream ends after the server's close.
            None => return Ok(answer),
            Some(Ok(Message::Close(frame))) => {
                let now = Instant::now();
                let code = frame.as_ref().map_or(1005, |frame| u16::from(frame.code));
                let reason = frame.as_ref().map(|frame| frame.reason.to_string()).unwrap_or_default();
                let mut recorder = conn.recorder.borrow_mut();
                recorder.add_labeled(now, set, close_code_counter(code), 1);
                recorder.record(now, set, Hist::CloseLatency, now - started);
                answer = Some((code, reason));
            }
            Some(Ok(message)) => {
                // Data still in flight when we closed: received, but no step took it.
                let now = Instant::now();
                let mut recorder = conn.recorder.borrow_mut();
                count_message(&mut recorder, now, set, &message);
                if matches!(message, Message::Text(_) | Message::Binary(_)) {
                    recorder.add(now, set, Counter::MessagesUnread, 1);
                }
            }
            Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => return Ok(answer),
            Some(Err(error)) => return Err(ws_failure(step, &error)),
        }
    }
}

#[cfg(test)]
mod sizes {
    //! The memory a VU costs while it holds an idle connection is mostly the size of its task's
    //! future (allocated once, for its largest state) plus the connection's buffers.

    use super::*;

    #[test]
    fn print_future_sizes() {
        let scenario = wsfleet_scenario::Bundle {
            path: "s.yaml".into(),
            source:
                "load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n  - think: 1s\n"
                    .into(),
            files: Default::default(),
        }
        .compile()
        .unwrap();
        let start = Instant::now();
        let env = Rc::new(RunEnv {
            static_messages: Arc::new(static_messages(&scenario)),
            step_tls: Arc::new(step_tls_configs(&scenario, None).unwrap()),
            scenario: Arc::new(scenario),
            agent_id: Arc::from("a"),
            named: Arc::new(HashMap::new()),
            tls: crate::connection::default_tls_config().unwrap(),
            recorder: Rc::new(RefCell::new(Recorder::new(
                start,
                vec!["connect".into(), "think".into()],
            ))),
            handshake_slots: Rc::new(tokio::sync::Semaphore::new(1)),
            source_addresses: crate::connection::SourceAddresses::new(Arc::new(Vec::new()), 0),
            upgrades: UpgradeRequests::default(),
            rendezvous: Arc::new(crate::rendezvous::RendezvousHub::new().0),
        });
        let control = VuControl {
            graceful: CancellationToken::new(),
            hard: crate::stop::HardStop::new(),
        };
        let future = run_vu(env.clone(), 0, 0, control, None);
        println!("run_vu future: {} bytes", std::mem::size_of_val(&future));
        let mut vu = Vu {
            env: env.clone(),
            part: 0,
            number: 0,
            vu_iteration: 0,
            conns: vec![None],
            info: vec![ConnInfo::default()],
            vars: HashMap::new(),
            handshake: None,
            lag: Duration::ZERO,
            receive_timer: None,
            recent: None,
        };
        let steps = &env.scenario.parts[0].steps;
        let play = vu.play(steps, 0);
        println!("play (boxed): {} bytes", std::mem::size_of_val(&*play));
        drop(play);
        let step = vu.step(&steps[0], 0);
        println!("step future: {} bytes", std::mem::size_of_val(&step));
        println!("Conn: {} bytes", std::mem::size_of::<Conn>());
    }
}
