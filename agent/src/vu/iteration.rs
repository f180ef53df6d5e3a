//! The iteration loop: a VU plays its part's steps iteration after iteration, paced against
//! absolute due times (a late iteration's lag times its sends, so coordinated omission does not
//! hide a slow target), counts each iteration's outcome, and closes or keeps its connections
//! between iterations. Also the step dispatch and `repeat`, whose rounds call the send and
//! receive bodies directly (the load loop's hot path).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::{Counter, ErrorKind, SetId};
use wsfleet_scenario::feeds::Per;
use wsfleet_scenario::{Action, Step, StepId, Then};

use super::conn::ConnInfo;
use super::env::RunEnv;
use super::outcome::{Failure, StepResult, Stop};
use super::state::{StepFuture, Vu};
use crate::clock;
use crate::failure::FailureKind;

/// How the executor steers one VU.
#[derive(Clone)]
pub struct VuControl {
    /// Finish the current iteration, then stop.
    pub graceful: CancellationToken,
    /// Stop now: close connections with a close frame and end.
    pub hard: Arc<crate::stop::HardStop>,
    /// The operator's pause of the VU's part: it finishes its current step and waits.
    pub pause: Arc<crate::executor::Pause>,
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
    let mut vu = Vu::new(env.clone(), part, number, handshake, &control);
    let mut started = clock::now();
    loop {
        if control.graceful.is_cancelled() || control.hard.is_fired() {
            break;
        }
        if control.pause.is_paused() {
            let paused_at = clock::now();
            // Boxed: only while the operator pauses the part; inline its three waits would
            // size the task's future, which every VU holds for its life.
            if !Box::pin(lifted_or_stopped(&control)).await {
                break;
            }
            // Pacing is not made up for the pause: its due times move by it.
            started += clock::now() - paused_at;
            continue;
        }
        if iterations_per_vu.is_some_and(|limit| vu.vu_iteration >= limit) {
            break;
        }
        // Pacing: iteration N starts N periods after the first, against absolute times, so a
        // slow iteration does not push every later one back.
        if let Some(pacing) = part_spec.pacing {
            let due = started + pacing.saturating_mul(u32::try_from(vu.vu_iteration).unwrap_or(u32::MAX));
            let now = clock::now();
            if due > now {
                // Kept connections stay read for handlers while the VU waits (their errors
                // count in the first step).
                let first = part_spec.steps.first().map_or(0, |step| step.id);
                let waited = tokio::select! {
                    biased;
                    _ = control.hard.wait() => break,
                    _ = control.graceful.cancelled() => break,
                    // Boxed: paced VUs only, once an iteration; inline it would size the task.
                    waited = Box::pin(vu.wait_until(due, first, vu.vu_iteration)) => waited,
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
        let Some(outcome) = outcome else {
            Box::pin(vu.close_all(CloseCode::Away, false)).await;
            break;
        };
        // Pacing is not made up for pauses taken between the iteration's steps either.
        started += std::mem::take(&mut vu.paused_for);
        let stop_vu = vu.count_iteration(&outcome);
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

/// Waits until the operator lifts the pause (`true`) or the VU is stopped (`false`).
async fn lifted_or_stopped(control: &VuControl) -> bool {
    tokio::select! {
        biased;
        _ = control.hard.wait() => false,
        _ = control.graceful.cancelled() => false,
        _ = control.pause.lifted() => true,
    }
}

impl Vu {
    fn new(
        env: Rc<RunEnv>,
        part: usize,
        number: u64,
        handshake: Option<tokio::sync::OwnedSemaphorePermit>,
        control: &VuControl,
    ) -> Vu {
        let connections = env.scenario.parts[part].connections.len().max(1);
        Vu {
            env,
            part,
            number,
            vu_iteration: 0,
            conns: (0..connections).map(|_| None).collect(),
            info: (0..connections).map(|_| ConnInfo::default()).collect(),
            vars: wsfleet_scenario::Values::default(),
            handshake,
            lag: Duration::ZERO,
            receive_timer: None,
            recent: None,
            scripts: Default::default(),
            http: None,
            pause: control.pause.clone(),
            graceful: control.graceful.clone(),
            paused_for: Duration::ZERO,
            request_times: Vec::new(),
        }
    }

    /// Counts an iteration's outcome; `true` when the VU plays no more.
    fn count_iteration(&self, outcome: &StepResult) -> bool {
        let counter = match outcome {
            Ok(()) => Counter::Iterations,
            Err(Stop::EndIteration) => Counter::IterationsSkipped,
            Err(Stop::Fail(_) | Stop::Halt | Stop::StepEnded) => Counter::IterationsFailed,
        };
        self.env
            .recorder
            .borrow_mut()
            .add(clock::now(), SetId::Connection, counter, 1);
        matches!(outcome, Err(Stop::Halt))
    }

    /// Takes this iteration's data feed rows into the VU's values.
    pub(super) fn take_rows(&mut self) -> StepResult {
        for feed in &self.env.scenario.feeds {
            if feed.per == Per::Vu && self.vu_iteration > 0 {
                continue;
            }
            let Some(row) = feed.row(self.number, self.vu_iteration) else {
                let kind = FailureKind::Catalog(ErrorKind::DataExhausted);
                self.env
                    .recorder
                    .borrow_mut()
                    .add_labeled(clock::now(), SetId::Connection, kind.counter(), 1);
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

    pub(super) fn play<'a>(&'a mut self, steps: &'a [Step], iteration: u64) -> StepFuture<'a> {
        Box::pin(async move {
            // Iterations may be paced: nothing read in the previous one is recent.
            self.recent = None;
            for step in steps {
                if self.is_paused() {
                    // Boxed: only while the operator pauses the part; inline it would size the
                    // iteration's future, which every VU holds while it waits.
                    let waited = Box::pin(self.wait_while_paused(step.id, iteration)).await;
                    self.handle_result(step.id, waited)?;
                }
                let result = self.step(step, iteration).await;
                self.handle_result(step.id, result)?;
            }
            // The end of the steps: what they hold leaves (its failures count in the last step).
            if self.holds_sends() {
                let last = steps.last().map_or(0, |step| step.id);
                let result = self.flush_held(last, iteration).await.map(drop);
                self.handle_result(last, result)?;
            }
            Ok(())
        })
    }

    pub(super) async fn step(&mut self, step: &Step, iteration: u64) -> StepResult {
        // The previous step's instant is good for this step's start only; whatever this step
        // leaves is for the next.
        let recent = self.recent.take();
        match &step.action {
            // Boxed: the step future is sized by its largest arm, and a VU holds it while idle.
            Action::Connect(connect) => Box::pin(self.connect_step(step, connect, iteration)).await,
            Action::Send(send) => self.send_step(step, send, iteration, false).await,
            Action::Receive(receive) => self.receive_step(step, receive, iteration, recent).await,
            // Boxed: the step future is sized by its largest arm, and a VU holds it while idle.
            Action::Ping(ping) => Box::pin(self.ping_step(step, ping, iteration)).await,
            // Boxed: the step future is sized by its largest arm, and a VU holds it while idle.
            Action::Close(close) => Box::pin(self.close_step(step, close, iteration)).await,
            Action::Think(think) => self.think_step(step, think, iteration).await,
            // Boxed once per repeat (not per round): it breaks the recursion of nested repeats.
            Action::Repeat(repeat) => Box::pin(self.repeat(step.id, repeat)).await,
            Action::Extract(extract) => self.extract_step(step, extract),
            // Boxed: the step future is sized by its largest arm, and a VU holds it while idle.
            Action::Rendezvous(rendezvous) => Box::pin(self.rendezvous_step(step, rendezvous, iteration)).await,
            Action::Check(check) => self.check_step(step, check, iteration),
            Action::Script(script) => self.script_step(step, script, iteration),
            // Boxed: they play steps, which may be `if` or `while` again.
            Action::If(branch) => Box::pin(self.if_step(step, branch, iteration)).await,
            Action::While(looped) => Box::pin(self.while_step(step, looped)).await,
            // Boxed: the step future is sized by its largest arm, and a VU holds it while idle.
            Action::Http(http) => Box::pin(self.http_step(step, http, iteration)).await,
            Action::Emit(emit) => Box::pin(self.emit_step(step, emit, iteration)).await,
            Action::MqttPublish(publish) => Box::pin(self.mqtt_publish_step(step, publish, iteration)).await,
            Action::MqttSubscribe(subscribe) => Box::pin(self.mqtt_subscribe_step(step, subscribe, iteration)).await,
            Action::MqttUnsubscribe(unsubscribe) => {
                Box::pin(self.mqtt_unsubscribe_step(step, unsubscribe, iteration)).await
            }
            Action::MqttDisconnect(disconnect) => {
                Box::pin(self.mqtt_disconnect_step(step, disconnect, iteration)).await
            }
            Action::Operation(operation) => Box::pin(self.operation_step(step, operation, iteration)).await,
            Action::Complete(complete) => Box::pin(self.complete_step(step, complete, iteration)).await,
            Action::Stomp(stomp) => Box::pin(self.stomp_step(step, stomp, iteration)).await,
        }
    }

    /// Plays a repeat's rounds; with pacing, round N is due N periods after the repeat was.
    pub(super) async fn repeat(&mut self, id: StepId, repeat: &wsfleet_scenario::Repeat) -> StepResult {
        let started = clock::now();
        // Rounds are due relative to when this repeat itself was due.
        let outer_lag = self.lag;
        let base = started.checked_sub(outer_lag).unwrap_or(started);
        // Pauses taken during the repeat move its rounds' due times.
        let paused_before = self.paused_for;
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
            if ends.is_some_and(|ends| recent.unwrap_or_else(clock::now) >= ends) {
                break Ok(());
            }
            if let Some(pacing) = repeat.pacing {
                let due = base
                    + pacing.saturating_mul(u32::try_from(index).unwrap_or(u32::MAX))
                    + self.paused_for.saturating_sub(paused_before);
                let now = clock::now();
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
            for (position, step) in repeat.steps.iter().enumerate() {
                if self.is_paused() {
                    let waited = self.wait_while_paused(step.id, index).await;
                    if let Err(stop) = self.handle_result(step.id, waited) {
                        break 'rounds Err(stop);
                    }
                }
                // A load loop's body is mostly sends and receives: they are played here, each
                // one future deep, rather than through `step` (one more future, sized by every
                // kind of step, built and dropped per message). Same calls, same results.
                let result = match &step.action {
                    Action::Send(send) => {
                        self.recent = None;
                        // A receive that waits flushes first thing: the send before it leaves
                        // at once instead, without being held (the same instant, less work).
                        let waits_next = repeat
                            .steps
                            .get(position + 1)
                            .is_some_and(|next| matches!(&next.action, Action::Receive(receive) if receive.wait));
                        self.send_step(step, send, index, waits_next).await
                    }
                    Action::Receive(receive) => {
                        let recent = self.recent.take();
                        self.receive_step(step, receive, index, recent).await
                    }
                    // A script step between them does not await: no future at all.
                    Action::Script(script) => {
                        self.recent = None;
                        self.script_step(step, script, index)
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
}
