//! What the executors of every part of one assignment share, and why a share cannot be computed.

use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wsfleet_scenario::plan::control::Control;
use wsfleet_scenario::plan::reshare::{Takeover, TakeoverError};
use wsfleet_scenario::plan::SplitError;
use wsfleet_scenario::Scenario;

use crate::worker::WorkerCommand;

/// Global slots carry their part: slot = part * SLOT_STRIDE + the part's own slot.
pub const SLOT_STRIDE: usize = 1 << 40;

/// What every part's executor of one assignment shares.
pub struct PartContext<'a> {
    pub scenario: &'a Scenario,
    pub run_id: &'a str,
    /// Every agent's weight; this agent is `agent_index`.
    pub weights: &'a [f64],
    pub agent_index: usize,
    pub run_start: Instant,
    /// One sender per worker; a VU goes to the worker its global slot picks.
    pub worker_commands: &'a [mpsc::UnboundedSender<WorkerCommand>],
    /// Every takeover of the run so far, as the session last received them.
    pub takeovers: &'a watch::Sender<Vec<Takeover>>,
    /// Every change the operator made to the run so far, as the session last received them.
    pub controls: &'a watch::Sender<Vec<Control>>,
    /// The run's graceful and hard stops; each part stops on its children.
    pub run_graceful: &'a CancellationToken,
    pub run_hard: &'a CancellationToken,
}

/// This agent's share of a part cannot be computed from the assignment's weights and takeovers
/// (the controller sent a fleet or a takeover that does not add up).
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Takeover(#[from] TakeoverError),
}
