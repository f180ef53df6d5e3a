//! Exit codes, documented in docs/cli.md, and the one place that turns an error or a run's
//! outcome into a code and a message. CI pipelines rely on the codes: keep them stable.

use std::process::ExitCode;

use wsfleet_controller::run::seek::SeekEnd;
use wsfleet_controller::{RunError, StartError, Summary};
use wsfleet_metrics::Counter;

/// The run happened and passed.
pub const OK: u8 = 0;
/// Something unexpected went wrong inside wsfleet.
pub const INTERNAL: u8 = 1;
/// The command line was wrong (clap's own code).
pub const USAGE: u8 = 2;
/// The scenario or the configuration is invalid.
pub const INVALID_INPUT: u8 = 3;
/// The run could not be done: no agents, not enough capacity, an agent failed.
pub const RUN_NOT_DONE: u8 = 4;
/// A threshold failed.
pub const THRESHOLDS_FAILED: u8 = 5;
/// Every connection attempt failed (the target is unreachable) and the scenario sets no threshold.
pub const NO_CONNECTION: u8 = 6;
/// An agent was lost during the run and the scenario says `load.on_agent_lost: abort`: the run
/// was stopped (what was measured is still reported).
pub const AGENT_LOST: u8 = 7;
/// A goal seek (`load: { model: seek }`) found no load that meets every threshold: its first
/// step failed already.
pub const SEEK_NOT_MET: u8 = 8;
/// The run was stopped by Ctrl-C before its end (what was measured is still reported).
pub const INTERRUPTED: u8 = 130;

pub fn code(value: u8) -> ExitCode {
    ExitCode::from(value)
}

/// A command that could not go on: its exit code, and the message for stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    /// `None` when the problem was said already (a scenario's problems, one a line).
    pub message: Option<String>,
}

impl Failure {
    /// A failure with `code` for `error`. Written with `{:#}`: an `anyhow` error then says its
    /// whole chain of context, a library's error (whose message names its cause already) its
    /// message alone.
    pub fn new(code: u8, error: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            message: Some(format!("{error:#}")),
        }
    }

    /// A failure whose problems are on stderr already.
    pub fn reported(code: u8) -> Failure {
        Failure { code, message: None }
    }

    /// Says what went wrong on stderr; returns the code.
    pub fn report(self) -> u8 {
        if let Some(message) = self.message {
            tell!("error: {message}");
        }
        self.code
    }
}

/// Attaches an exit code to any error: `result.or_exit(exit::RUN_NOT_DONE)?`.
pub trait OrExit<T> {
    fn or_exit(self, code: u8) -> Result<T, Failure>;
}

impl<T, E: std::fmt::Display> OrExit<T> for Result<T, E> {
    fn or_exit(self, code: u8) -> Result<T, Failure> {
        self.map_err(|error| Failure::new(code, error))
    }
}

/// The code of a run that could not start.
pub fn of_start_error(error: &StartError) -> u8 {
    match error {
        StartError::Scenario(_) => INVALID_INPUT,
        StartError::Busy(_) | StartError::NoAgents | StartError::ShuttingDown => RUN_NOT_DONE,
    }
}

/// The code of a run that could not be done.
pub fn of_run_error(error: &RunError) -> u8 {
    match error {
        RunError::Scenario(_) => INVALID_INPUT,
        RunError::NoAgents
        | RunError::Capacity(_)
        | RunError::Busy(_)
        | RunError::TestServer(_)
        | RunError::Task(_) => RUN_NOT_DONE,
    }
}

/// The code an agent ends with: 0 when its controller went away (it exits with it), 4 when it
/// was refused or could not go on, with why on stderr.
pub fn of_agent_outcome(outcome: Result<(), wsfleet_agent::AgentError>) -> u8 {
    match outcome {
        Ok(()) => OK,
        Err(wsfleet_agent::AgentError::Detached(reason)) => {
            tracing::info!(%reason, "controller gone; exiting");
            OK
        }
        Err(error) => {
            // Its own message names the cause already: said as it is, not as a chain.
            tell!("error: {error}");
            RUN_NOT_DONE
        }
    }
}

/// The code a finished run earns, with why on stderr when it is not 0.
pub fn of_summary(summary: &Summary, interrupted: bool) -> u8 {
    let (code, message) = judge(summary, interrupted);
    if let Some(message) = message {
        tell!("error: {message}");
    }
    code
}

/// The code a finished run earns, and the message that says why.
fn judge(summary: &Summary, interrupted: bool) -> (u8, Option<String>) {
    if summary.outcome.is_failed() {
        return (RUN_NOT_DONE, None);
    }
    if summary.lost_agents.aborted() {
        return (AGENT_LOST, Some(summary.outcome.to_string()));
    }
    if let Some(seek) = &summary.seek {
        if seek.found.is_none() && seek.end == SeekEnd::NoPassingStep {
            let message = format!(
                "the seek found no load within the thresholds: its first step ({}) failed",
                seek.load_words(seek.start)
            );
            return (SEEK_NOT_MET, Some(message));
        }
    }
    let failed: Vec<&str> = summary
        .thresholds
        .iter()
        .filter(|threshold| !threshold.passed)
        .map(|threshold| threshold.name.as_str())
        .collect();
    if !failed.is_empty() {
        let message = format!("{} threshold(s) failed: {}", failed.len(), failed.join(", "));
        return (THRESHOLDS_FAILED, Some(message));
    }
    if interrupted {
        return (INTERRUPTED, None);
    }
    if !summary.thresholds.is_empty() {
        return (OK, None);
    }
    let opened = summary.totals.counter(Counter::ConnectionsOpened.name());
    let failed = summary.totals.counter(Counter::ConnectionsFailed.name());
    if opened == 0 && failed > 0 {
        let message = format!("every connection attempt failed ({failed}); see `errors` above");
        return (NO_CONNECTION, Some(message));
    }
    (OK, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsfleet_controller::outcome::{Failure as RunFailure, LostAction, Outcome};
    use wsfleet_controller::run::seek::SeekSummary;
    use wsfleet_controller::summary::{LostAgentEvent, LostAgents, ReportDelivery, Totals};
    use wsfleet_controller::thresholds::ThresholdResult;

    fn summary(outcome: Outcome) -> Summary {
        Summary {
            schema_version: 2,
            run_id: "r".into(),
            scenario: "s".into(),
            duration_seconds: 1.0,
            agents: Vec::new(),
            outcome,
            totals: Totals::default(),
            steps: Vec::new(),
            intervals: Vec::new(),
            thresholds: Vec::new(),
            changes: Vec::new(),
            seek: None,
            lost_agents: LostAgents::default(),
            reports: ReportDelivery::default(),
        }
    }

    fn threshold(name: &str, passed: bool) -> ThresholdResult {
        ThresholdResult {
            name: name.into(),
            condition: "< 1".into(),
            value: Some(0.0),
            display: "0".into(),
            passed,
            aborted_run: false,
        }
    }

    #[test]
    fn a_run_earns_the_documented_code() {
        assert_eq!(judge(&summary(Outcome::Completed), false), (OK, None));
        assert_eq!(judge(&summary(Outcome::Stopped), true), (INTERRUPTED, None));
        let failed = summary(Outcome::Failed(RunFailure::Deadline));
        assert_eq!(judge(&failed, false), (RUN_NOT_DONE, None));

        let mut aborted = summary(Outcome::AbortedByLostAgent {
            agent: "a".into(),
            reason: "gone".into(),
        });
        aborted.lost_agents.events.push(LostAgentEvent {
            action: LostAction::Aborted,
            ..LostAgentEvent::default()
        });
        let message = "aborted: agent `a` was lost (gone)".to_owned();
        assert_eq!(judge(&aborted, false), (AGENT_LOST, Some(message)));

        let mut thresholds = summary(Outcome::Completed);
        thresholds.thresholds = vec![threshold("x.count", false), threshold("y.rate", true)];
        let message = "1 threshold(s) failed: x.count".to_owned();
        assert_eq!(judge(&thresholds, true), (THRESHOLDS_FAILED, Some(message)));
        thresholds.thresholds.truncate(0);
        thresholds.thresholds.push(threshold("y.rate", true));
        thresholds.totals.counters.insert("connections_failed".into(), 3);
        assert_eq!(judge(&thresholds, false), (OK, None));

        let mut seek = summary(Outcome::Completed);
        seek.seek = Some(SeekSummary {
            part: String::new(),
            measure: "vus".into(),
            start: 4.0,
            step: 4.0,
            max: 40.0,
            interval_seconds: 2,
            warmup_seconds: 0,
            refine: 3,
            end: SeekEnd::NoPassingStep,
            found: None,
            steps: Vec::new(),
        });
        seek.thresholds = vec![threshold("message_latency.p95", false)];
        let message = "the seek found no load within the thresholds: its first step (4 VUs) failed".to_owned();
        assert_eq!(judge(&seek, false), (SEEK_NOT_MET, Some(message)));
        if let Some(found) = seek.seek.as_mut() {
            found.end = SeekEnd::Found;
            found.found = Some(20.0);
        }
        seek.thresholds = vec![threshold("message_latency.p95", true)];
        assert_eq!(judge(&seek, false), (OK, None));

        let mut unreachable = summary(Outcome::Completed);
        unreachable.totals.counters.insert("connections_failed".into(), 3);
        let (code, message) = judge(&unreachable, false);
        assert_eq!(code, NO_CONNECTION);
        assert!(message.is_some_and(|message| message.contains("(3)")));
    }

    #[test]
    fn errors_map_to_their_codes() {
        assert_eq!(of_start_error(&StartError::NoAgents), RUN_NOT_DONE);
        assert_eq!(of_start_error(&StartError::ShuttingDown), RUN_NOT_DONE);
        assert_eq!(of_run_error(&RunError::TestServer("port taken".into())), RUN_NOT_DONE);
        let invalid = wsfleet_scenario::Bundle {
            path: "bad.yaml".into(),
            source: "load: {}\n".into(),
            files: Default::default(),
        }
        .compile()
        .expect_err("an empty load is refused");
        assert_eq!(of_run_error(&RunError::Scenario(invalid)), INVALID_INPUT);
        let failure: Result<(), std::io::Error> = Err(std::io::Error::other("boom"));
        let failure = failure.or_exit(INTERNAL).expect_err("fails");
        assert_eq!((failure.code, failure.message.as_deref()), (INTERNAL, Some("boom")));
        // A library's error names its cause in its message: said once.
        let split = wsfleet_scenario::plan::split(&[], 3).expect_err("no agent to split over");
        let capacity = wsfleet_controller::capacity::CapacityError::from(split);
        let message = Failure::new(RUN_NOT_DONE, RunError::Capacity(capacity)).message;
        assert_eq!(message.map(|message| message.matches("cannot split").count()), Some(1));
        // An `anyhow` error says its context and its cause.
        let context = anyhow::Context::context(Err::<(), _>(std::io::Error::other("denied")), "cannot write x");
        assert_eq!(
            context.or_exit(INTERNAL).expect_err("fails").message.as_deref(),
            Some("cannot write x: denied")
        );
    }
}
