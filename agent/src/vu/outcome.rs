//! How a step ends: `Stop` (fail, end the iteration, stop the VU, or go on quietly) and
//! `Failure` (the step and its error kind). What the scenario's rules make of them is in
//! `policy`.

use wsfleet_scenario::StepId;

use crate::failure::{classify_ws_error, FailureKind};

/// Why a step did not simply go on.
pub(super) enum Stop {
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
pub(super) struct Failure {
    pub(super) step: StepId,
    /// What it is counted as (`errors.<kind>`, except receive timeouts) and what `on_error`
    /// rules match.
    pub(super) kind: FailureKind,
    /// Already counted and passed through the `on_error` rules (by a step inside a repeat).
    pub(super) handled: bool,
}

impl Failure {
    pub(super) fn new(step: StepId, kind: impl Into<FailureKind>) -> Failure {
        Failure {
            step,
            kind: kind.into(),
            handled: false,
        }
    }

    /// A receive that timed out: counted in `receive_timeouts`, not in `errors.`.
    pub(super) fn receive_timeout(step: StepId) -> Failure {
        Failure::new(step, FailureKind::ReceiveTimeout)
    }
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Stop {
        Stop::Fail(failure)
    }
}

pub(super) type StepResult = Result<(), Stop>;

pub(super) fn ws_failure(step: StepId, error: &tokio_tungstenite::tungstenite::Error) -> Failure {
    Failure::new(step, classify_ws_error(error).kind)
}
