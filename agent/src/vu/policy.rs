//! The failure policy: a failure is counted where it happened, then the scenario's `on_error`
//! rules say whether the iteration fails, ends quietly, goes on, or the VU stops; a close the
//! server starts while a step needs the connection goes through the `on_close` rules.

use wsfleet_metrics::catalog::{close_code_counter, error_counter};
use wsfleet_metrics::{ErrorKind, SetId};
use wsfleet_scenario::{ConnId, StepId, Then};

use super::outcome::{Failure, StepResult, Stop};
use super::state::Vu;
use crate::clock;
use crate::failure::FailureKind;

impl Vu {
    /// Counts a failure where it happened and applies the scenario's `on_error` rules.
    pub(super) fn handle_result(&mut self, step: StepId, result: StepResult) -> StepResult {
        let mut failure = match result {
            Err(Stop::Fail(failure)) if !failure.handled => failure,
            Err(Stop::StepEnded) => return Ok(()),
            other => return other,
        };
        failure.handled = true;
        if !failure.kind.counted_elsewhere() {
            self.env.recorder.borrow_mut().add_labeled(
                clock::now(),
                SetId::Step(failure.step),
                failure.kind.counter(),
                1,
            );
        }
        match self.on_error(failure.kind, Some(step)).unwrap_or(Then::Fail) {
            Then::Fail => Err(Stop::Fail(failure)),
            Then::EndIteration => Err(Stop::EndIteration),
            Then::Continue => Ok(()),
            Then::StopVu => Err(Stop::Halt),
        }
    }

    /// What the first `on_error` rule for `kind` says; `step: None` (a failure outside the
    /// steps) is for rules that name no steps.
    pub(super) fn on_error(&self, kind: FailureKind, step: Option<StepId>) -> Option<Then> {
        self.spec()
            .on_error
            .iter()
            .find(|rule| {
                rule.kinds
                    .as_ref()
                    .is_none_or(|kinds| kinds.iter().any(|wanted| kind.is(wanted)))
                    && match step {
                        Some(step) => rule.steps.as_ref().is_none_or(|steps| steps.contains(&step)),
                        None => rule.steps.is_none(),
                    }
            })
            .map(|rule| rule.then)
    }

    pub(super) fn count_error(&self, step: StepId, kind: ErrorKind) {
        self.env
            .recorder
            .borrow_mut()
            .add_labeled(clock::now(), SetId::Step(step), error_counter(kind.name()), 1);
    }

    /// The server closed a connection the steps were using: `on_close` decides.
    pub(super) fn server_closed(&mut self, conn_id: ConnId, code: u16, step: StepId) -> Stop {
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
            .add_labeled(clock::now(), set, close_code_counter(code), 1);
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
}
