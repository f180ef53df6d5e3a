//! The steps that use no connection of their own: think, rendezvous, check and extract (and
//! the extraction every step that reads something shares).

use std::time::Duration;

use rand::Rng;
use wsfleet_metrics::{ErrorKind, Hist, SetId};
use wsfleet_scenario::matcher::{Extraction, Incoming, Origin};
use wsfleet_scenario::{ExtractFrom, OnFail, Step, StepId, Think};

use super::outcome::{Failure, StepResult, Stop};
use super::state::Vu;
use crate::clock;

impl Vu {
    pub(super) async fn think_step(&mut self, step: &Step, think: &Think, iteration: u64) -> StepResult {
        let until = clock::now() + think_time(think);
        self.wait_until(until, step.id, iteration).await
    }

    /// Sets variables from the handshake or the last message a step or handler took.
    pub(super) fn extract_step(&mut self, step: &Step, extract: &wsfleet_scenario::ExtractStep) -> StepResult {
        let info = &self.info[extract.conn];
        let origin = match extract.from {
            ExtractFrom::Handshake => Origin {
                headers: Some(&info.headers),
                ..Origin::default()
            },
            ExtractFrom::Message => Origin {
                message: info.last.as_ref().map(|(bytes, kind)| Incoming::message(bytes, *kind)),
                ..Origin::default()
            },
        };
        extract_into(&mut self.vars, &extract.values, origin, step.id)?;
        Ok(())
    }

    /// A condition on rendered values; `on_fail` says whether the iteration fails, ends or goes on.
    pub(super) fn check_step(&mut self, step: &Step, check: &wsfleet_scenario::Check, iteration: u64) -> StepResult {
        let parts = self.parts();
        let scope = parts.scope(iteration);
        let value = check
            .value
            .try_render(&scope)
            .map_err(|error| super::scripted::script_failure(step.id, None, &error))?;
        let held = check
            .condition
            .check(&value, &scope)
            .map_err(|error| super::scripted::script_failure(step.id, None, &error))?;
        if held {
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

    pub(super) async fn rendezvous_step(
        &mut self,
        step: &Step,
        rendezvous: &wsfleet_scenario::Rendezvous,
        iteration: u64,
    ) -> StepResult {
        let set = SetId::Step(step.id);
        if self.holds_sends() {
            self.flush_held(step.id, iteration).await?;
        }
        let started = clock::now();
        let (generation, receiver) = self.env.rendezvous.arrive(rendezvous.point);
        let released = crate::rendezvous::released(receiver, generation);
        // Connections that speak a protocol are read too: their heartbeats need answers.
        if self.spec().on_message.is_empty() && self.spec().on_close.is_empty() && self.spec().events.is_none() {
            released.await;
        } else {
            // Handlers keep reading the connections while the VU waits.
            let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
            tokio::select! {
                _ = released => {}
                result = self.pump(far, step.id, iteration) => result?,
            }
        }
        let now = clock::now();
        self.env
            .recorder
            .borrow_mut()
            .record(now, set, Hist::RendezvousWait, now - started);
        Ok(())
    }
}

pub(super) fn think_time(think: &Think) -> Duration {
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

/// Sets the VU's variables from extractions; one that finds nothing (without a default) fails.
pub(super) fn extract_into(
    vars: &mut wsfleet_scenario::Values,
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
