//! The script steps and what scripts decide: `script` (sets VU values), `if` (plays a branch),
//! `while` (plays rounds while a condition holds, at most `max`), and the script condition and
//! action of `on_message` rules. A script that fails is counted as the `script` error kind in
//! its step's (or rule's) set and goes through the `on_error` rules like any failure; the
//! first failure of each script in a run is logged with its message.
//!
//! Scripts were compiled once per run with the scenario; a call fills the VU's one
//! `ScriptScope` with only the values that script reads, and runs in the Rhai state the VU
//! keeps between calls (`wsfleet_scenario::script`).

use wsfleet_metrics::ErrorKind;
use wsfleet_scenario::matcher::Incoming;
use wsfleet_scenario::script::{Script, ScriptError};
use wsfleet_scenario::{OnFail, Step, StepId};

use super::outcome::{Failure, StepResult, Stop};
use super::state::Vu;

/// A script's failure in `step`, logged the first time `script` fails in the run.
pub(super) fn script_failure(step: StepId, script: Option<&Script>, error: &ScriptError) -> Failure {
    let first = script.is_none_or(Script::first_failure);
    if first {
        tracing::warn!(step, error = %error.message, "script failed (counted in errors.script; later failures of this script are counted only)");
    }
    Failure::new(step, ErrorKind::Script)
}

impl Vu {
    /// Runs a script with the VU's values (and the message, for rules); stores what it sets.
    pub(super) fn run_script(
        &mut self,
        script: &Script,
        step: StepId,
        iteration: u64,
        message: Option<Incoming<'_>>,
    ) -> Result<(), Failure> {
        let sets = script
            .run(&self.scripts, &self.parts().scope(iteration), message)
            .map_err(|error| script_failure(step, Some(script), &error))?;
        sets.store(&mut self.vars);
        Ok(())
    }

    /// Evaluates a condition with the VU's values (and the message, for rules).
    pub(super) fn holds(
        &self,
        condition: &Script,
        step: StepId,
        iteration: u64,
        message: Option<Incoming<'_>>,
    ) -> Result<bool, Failure> {
        condition
            .condition(&self.scripts, &self.parts().scope(iteration), message)
            .map_err(|error| script_failure(step, Some(condition), &error))
    }

    pub(super) fn script_step(&mut self, step: &Step, script: &wsfleet_scenario::Script, iteration: u64) -> StepResult {
        self.run_script(&script.script, step.id, iteration, None)?;
        Ok(())
    }

    /// Plays the branch the condition picks; its steps' failures go through `on_error` as
    /// their own.
    pub(super) async fn if_step(&mut self, step: &Step, branch: &wsfleet_scenario::If, iteration: u64) -> StepResult {
        let steps = if self.holds(&branch.condition, step.id, iteration, None)? {
            &branch.then
        } else {
            &branch.otherwise
        };
        self.play_inner(steps, iteration).await
    }

    /// Plays rounds while the condition holds; the condition and round N's steps read
    /// `iteration` as N (as in a `repeat`). Reaching
    /// `max_rounds` with the condition still true is a `script` failure unless `on_max` says
    /// otherwise.
    pub(super) async fn while_step(&mut self, step: &Step, looped: &wsfleet_scenario::While) -> StepResult {
        let mut round = 0u64;
        while self.holds(&looped.condition, step.id, round, None)? {
            if round == looped.max_rounds {
                return match looped.on_max {
                    OnFail::Fail => Err(Failure::new(step.id, ErrorKind::Script).into()),
                    OnFail::Skip => {
                        self.count_error(step.id, ErrorKind::Script);
                        Err(Stop::EndIteration)
                    }
                    OnFail::Continue => {
                        self.count_error(step.id, ErrorKind::Script);
                        Ok(())
                    }
                };
            }
            self.play_inner(&looped.steps, round).await?;
            round += 1;
        }
        Ok(())
    }

    /// Plays nested steps; each failure is counted in its own step and meets `on_error` there.
    async fn play_inner(&mut self, steps: &[Step], iteration: u64) -> StepResult {
        for inner in steps {
            let result = self.step(inner, iteration).await;
            if result.is_err() {
                self.handle_result(inner.id, result)?;
            }
        }
        Ok(())
    }
}
