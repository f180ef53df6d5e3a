//! The VUs of one part on this agent: started on the workers by global slot, counted where the
//! executor decides (open-model arrivals), ended as the workers report them, and wound down
//! together at the end of the part.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use wsfleet_metrics::Counter;

use super::context::{PartContext, SLOT_STRIDE};
use super::pause::Pause;
use crate::stop::HardStop;
use crate::vu::VuControl;
use crate::worker::WorkerCommand;

/// After a hard stop, how long VUs have to close their connections before the part ends anyway.
const HARD_CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// A part's hard stop, fired when its run's hard token is cancelled and, whatever way the
/// part's executor ends, when it ends: VUs never outlive the executor that would stop them (at a
/// normal end none are left, and firing changes nothing).
struct PartStop {
    stop: Arc<HardStop>,
    _relay: AbortOnDropHandle<()>,
}

impl Drop for PartStop {
    fn drop(&mut self) {
        self.stop.fire();
    }
}

/// The running VUs of one part, by the part's own slot.
pub struct PartVus<'a> {
    part: usize,
    worker_commands: &'a [mpsc::UnboundedSender<WorkerCommand>],
    /// The part's graceful stop: a child of the run's, so one part's wind-down does not touch
    /// another's.
    pub graceful: CancellationToken,
    /// The part's hard stop as a token (cancelled here or by the whole run's stop).
    hard: CancellationToken,
    /// What the VUs wait on: cheap to poll, fired by `hard`.
    hard_stop: Arc<HardStop>,
    _part_stop: PartStop,
    pub running: BTreeMap<usize, VuControl>,
    /// The operator's pause of this part, shared by its VUs.
    pub pause: Arc<Pause>,
    /// The slots of VUs that ended, from the workers.
    pub done: mpsc::UnboundedReceiver<usize>,
}

impl<'a> PartVus<'a> {
    pub fn new(context: &PartContext<'a>, part: usize, done: mpsc::UnboundedReceiver<usize>) -> PartVus<'a> {
        let graceful = context.run_graceful.child_token();
        let hard = context.run_hard.child_token();
        let hard_stop = HardStop::new();
        let relay = {
            let (token, stop) = (hard.clone(), hard_stop.clone());
            AbortOnDropHandle::new(tokio::spawn(async move {
                token.cancelled().await;
                stop.fire();
            }))
        };
        PartVus {
            part,
            worker_commands: context.worker_commands,
            graceful,
            hard,
            _part_stop: PartStop {
                stop: hard_stop.clone(),
                _relay: relay,
            },
            hard_stop,
            running: BTreeMap::new(),
            pause: Arc::default(),
            done,
        }
    }

    fn worker_of(&self, slot: usize) -> &mpsc::UnboundedSender<WorkerCommand> {
        let global = self.part * SLOT_STRIDE + slot;
        &self.worker_commands[global % self.worker_commands.len().max(1)]
    }

    /// Starts VU `number` in `slot`; false when its worker is gone.
    pub fn spawn(&mut self, slot: usize, number: u64, handshake: Option<OwnedSemaphorePermit>) -> bool {
        let control = VuControl {
            graceful: self.graceful.child_token(),
            hard: self.hard_stop.clone(),
            pause: self.pause.clone(),
        };
        let command = WorkerCommand::Spawn {
            part: self.part,
            slot: self.part * SLOT_STRIDE + slot,
            number,
            control: control.clone(),
            handshake,
        };
        if self.worker_of(slot).send(command).is_err() {
            return false;
        }
        self.running.insert(slot, control);
        true
    }

    /// Counts one `counter` event in the recorder of the worker of `slot`.
    pub fn count(&self, slot: usize, counter: Counter) {
        let _ = self.worker_of(slot).send(WorkerCommand::Count { counter, amount: 1 });
    }

    /// Lets iterations finish within `graceful_stop`, then closes the VUs' connections (with a
    /// bounded wait for their close).
    pub async fn wind_down(&mut self, graceful_stop: Duration) {
        self.graceful.cancel();
        let graceful_until = tokio::time::Instant::now() + graceful_stop;
        while !self.running.is_empty() {
            tokio::select! {
                Some(slot) = self.done.recv() => { self.running.remove(&slot); }
                _ = tokio::time::sleep_until(graceful_until) => {
                    self.hard.cancel();
                    self.hard_stop.fire();
                    break;
                }
                _ = self.hard.cancelled() => {
                    self.hard_stop.fire();
                    break;
                }
            }
        }
        let hard_until = tokio::time::Instant::now() + HARD_CLOSE_LIMIT;
        while !self.running.is_empty() {
            tokio::select! {
                Some(slot) = self.done.recv() => { self.running.remove(&slot); }
                _ = tokio::time::sleep_until(hard_until) => break,
            }
        }
    }
}
