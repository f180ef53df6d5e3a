//! The operator's changes to a running run, as the API and the CLI ask for them: what may be
//! asked ([`Change`]), why a change is refused ([`ControlError`]), and how each change is kept
//! on the run's timeline ([`ChangeEvent`], in the summary and the history).
//!
//! A change accepted becomes a [`Control`] dated [`CONTROL_LEAD`] after the moment it was
//! asked, so every agent, told at about the same time, applies it from the same run time; the
//! run sends every change so far to every agent (like takeovers), each computes its share of
//! the steered plan (`wsfleet_scenario::plan::control`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wsfleet_scenario::plan::control::{Control, ControlAction, SteeredPlan};
use wsfleet_scenario::{LoadModel, Scenario};

/// How far ahead of the moment it is asked a change applies: time for the message to reach
/// every agent, so all apply it from the same run time.
pub const CONTROL_LEAD: Duration = Duration::from_millis(250);

/// What the operator asks of one part.
#[derive(Clone, Debug, PartialEq)]
pub enum ChangeAction {
    /// The fleet's VUs of a closed-model part, reached over `ramp`.
    SetVus { vus: u64, ramp: Duration },
    /// The arrivals per second of an open-model part, reached over `ramp`.
    SetRate { rate: f64, ramp: Duration },
    /// Stop the plan's clock (the load stays where it is).
    Hold,
    /// Start the plan's clock again, where it stopped.
    Resume,
    /// The part's VUs wait before their next iteration; open-model arrivals are skipped.
    Pause,
    /// The part's VUs go on.
    Unpause,
    /// The part ends, its running iterations within its graceful stop; the others go on.
    Stop,
    /// The agent's share of the rest of the run (every part) moves to the others exactly; its
    /// VUs finish their iteration and end.
    Drain { agent: String },
}

impl ChangeAction {
    /// The name the API, the CLI and the summary use.
    pub fn name(&self) -> &'static str {
        match self {
            ChangeAction::SetVus { .. } => "set_vus",
            ChangeAction::SetRate { .. } => "set_rate",
            ChangeAction::Hold => "hold",
            ChangeAction::Resume => "resume",
            ChangeAction::Pause => "pause",
            ChangeAction::Unpause => "unpause",
            ChangeAction::Stop => "stop",
            ChangeAction::Drain { .. } => "drain",
        }
    }
}

/// A change asked of a run: `part` names the scenario's part (`None`: its only one).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub part: Option<String>,
    pub action: ChangeAction,
}

/// Why a change was refused; the run goes on untouched.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ControlError {
    #[error("no run is active")]
    NoRun,
    #[error("{0}")]
    Refused(String),
}

/// One change on the run's timeline.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChangeEvent {
    /// Run time from which it applies, seconds since the common start.
    pub at_seconds: f64,
    /// The part's name (empty for a plain scenario's only part).
    pub part: String,
    /// `set_vus`, `set_rate`, `hold`, `resume`, `pause`, `unpause`, `stop` or `drain` (of an
    /// agent; `part` is then empty); a seek's own changes are `seek_step` and `seek_end`.
    pub action: String,
    /// The VUs or the rate set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// How long the ramp to `value` takes, seconds (0: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_seconds: Option<f64>,
    /// For `unpause`: how long the part was paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_seconds: Option<f64>,
    /// The change in words.
    pub detail: String,
}

/// How messages name part `part`: `the scenario` for a plain file's only part, else
/// ``part `NAME` ``.
pub fn label(scenario: &Scenario, part: usize) -> String {
    match scenario.parts.get(part) {
        Some(spec) if !spec.name.is_empty() => format!("part `{}`", spec.name),
        _ => "the scenario".to_owned(),
    }
}

/// The part `change` names, as an index, or why it names none.
pub fn part_index(scenario: &Scenario, part: Option<&str>) -> Result<usize, ControlError> {
    let names = || {
        scenario
            .parts
            .iter()
            .map(|part| format!("`{}`", part.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match part {
        None | Some("") if scenario.parts.len() == 1 => Ok(0),
        None | Some("") => Err(ControlError::Refused(format!(
            "the scenario has {} parts: name the one to change ({})",
            scenario.parts.len(),
            names()
        ))),
        Some(name) => scenario.parts.iter().position(|part| part.name == name).ok_or_else(|| {
            ControlError::Refused(if scenario.parts.len() == 1 && scenario.parts[0].name.is_empty() {
                format!("the scenario has no part `{name}`: it has one part, changed without naming it")
            } else {
                format!("the scenario has no part `{name}`: its parts are {}", names())
            })
        }),
    }
}

/// Checks `action` against the part's model and the changes made so far (`controls`, at run
/// time `at`), and gives the control it becomes. The fleet's capacity is checked by the run.
pub fn to_control(
    scenario: &Scenario,
    part: usize,
    action: &ChangeAction,
    controls: &[Control],
    at: Duration,
) -> Result<Control, ControlError> {
    let spec = &scenario.parts[part];
    let label = if spec.name.is_empty() {
        "the scenario".to_owned()
    } else {
        format!("part `{}`", spec.name)
    };
    let steered = SteeredPlan::new(&spec.plan, part, controls);
    if steered.stopped_by(at) || steered.end().is_some_and(|end| end <= at) {
        return Err(ControlError::Refused(format!(
            "{label} has ended: it cannot be changed"
        )));
    }
    let closed = matches!(spec.plan.model, LoadModel::Closed { .. });
    let control_action = match action {
        ChangeAction::SetVus { .. } if !closed => {
            return Err(ControlError::Refused(format!(
                "{label} is open-model (new VUs arrive at a rate): set its rate with `set_rate`, not its VUs"
            )))
        }
        ChangeAction::SetRate { .. } if closed => {
            return Err(ControlError::Refused(format!(
                "{label} is closed-model (a number of VUs): set its VUs with `set_vus`, not a rate"
            )))
        }
        ChangeAction::SetVus { vus, ramp } => ControlAction::Set {
            value: *vus as f64,
            ramp: *ramp,
        },
        ChangeAction::SetRate { rate, .. } if !rate.is_finite() || *rate < 0.0 => {
            return Err(ControlError::Refused(format!(
                "a rate must be a number of arrivals per second, 0 or more (got {rate})"
            )))
        }
        ChangeAction::SetRate { rate, ramp } => ControlAction::Set {
            value: *rate,
            ramp: *ramp,
        },
        ChangeAction::Hold => ControlAction::Hold,
        ChangeAction::Resume => ControlAction::Resume,
        ChangeAction::Pause if steered.paused_at(at) => {
            return Err(ControlError::Refused(format!("{label} is paused already")))
        }
        ChangeAction::Pause => ControlAction::Pause,
        ChangeAction::Unpause if !steered.paused_at(at) => {
            return Err(ControlError::Refused(format!("{label} is not paused")))
        }
        ChangeAction::Unpause => ControlAction::Unpause,
        ChangeAction::Stop => ControlAction::Stop,
        ChangeAction::Drain { .. } => {
            return Err(ControlError::Refused(
                "draining an agent is not a change of a part".into(),
            ))
        }
    };
    Ok(Control {
        part,
        at,
        action: control_action,
    })
}

/// The timeline entry of `control`, asked as `action`, given the changes before it.
pub fn event_of(scenario: &Scenario, control: &Control, action: &ChangeAction, before: &[Control]) -> ChangeEvent {
    let spec = &scenario.parts[control.part];
    let label = if spec.name.is_empty() {
        "the scenario".to_owned()
    } else {
        format!("part `{}`", spec.name)
    };
    let over = |ramp: &Duration| {
        if ramp.is_zero() {
            "at once".to_owned()
        } else {
            format!("over {:.1}s", ramp.as_secs_f64())
        }
    };
    let mut event = ChangeEvent {
        at_seconds: control.at.as_secs_f64(),
        part: spec.name.clone(),
        action: action.name().to_owned(),
        ..ChangeEvent::default()
    };
    event.detail = match action {
        ChangeAction::SetVus { vus, ramp } => {
            event.value = Some(*vus as f64);
            event.ramp_seconds = Some(ramp.as_secs_f64());
            format!("VUs of {label} set to {vus} {}", over(ramp))
        }
        ChangeAction::SetRate { rate, ramp } => {
            event.value = Some(*rate);
            event.ramp_seconds = Some(ramp.as_secs_f64());
            format!("arrival rate of {label} set to {rate}/s {}", over(ramp))
        }
        ChangeAction::Hold => format!("plan of {label} held"),
        ChangeAction::Resume => format!("plan of {label} resumed"),
        ChangeAction::Pause => format!("{label} paused"),
        ChangeAction::Unpause => {
            let steered = SteeredPlan::new(&spec.plan, control.part, before);
            let paused = steered.paused_for(control.at) - steered.paused_for(since_last_pause(before, control));
            event.paused_seconds = Some(paused.as_secs_f64());
            format!("{label} resumed after {:.1}s paused", paused.as_secs_f64())
        }
        ChangeAction::Stop => format!("{label} stopped"),
        ChangeAction::Drain { agent } => format!("agent `{agent}` drained"),
    };
    event
}

/// When the pause that `control` (an unpause) lifts began.
fn since_last_pause(before: &[Control], control: &Control) -> Duration {
    before
        .iter()
        .rev()
        .find(|earlier| earlier.part == control.part && earlier.action == ControlAction::Pause)
        .map_or(control.at, |pause| pause.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsfleet_scenario::Bundle;

    fn scenario(source: &str) -> Scenario {
        Bundle {
            path: "s.yaml".into(),
            source: source.into(),
            files: Default::default(),
        }
        .compile()
        .expect("the test scenario compiles")
    }

    const TWO_PARTS: &str = "name: two
scenarios:
  - name: chat
    load: { vus: 4, duration: 60s }
    steps:
      - connect: { url: 'ws://127.0.0.1:9/' }
  - name: feed
    load: { model: open, rate: 5, duration: 60s, max_vus: 10 }
    steps:
      - connect: { url: 'ws://127.0.0.1:9/' }
";

    fn refused(result: Result<Control, ControlError>) -> String {
        match result {
            Err(ControlError::Refused(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn parts_are_named_or_the_only_one() {
        let two = scenario(TWO_PARTS);
        assert_eq!(part_index(&two, Some("feed")), Ok(1));
        let message = match part_index(&two, None) {
            Err(ControlError::Refused(message)) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message,
            "the scenario has 2 parts: name the one to change (`chat`, `feed`)"
        );
        let message = match part_index(&two, Some("chta")) {
            Err(ControlError::Refused(message)) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(message, "the scenario has no part `chta`: its parts are `chat`, `feed`");
        let one =
            scenario("name: one\nload: { vus: 2, duration: 10s }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n");
        assert_eq!(part_index(&one, None), Ok(0));
        assert!(part_index(&one, Some("x")).is_err());
    }

    #[test]
    fn a_change_that_does_not_fit_the_part_is_refused_with_why() {
        let two = scenario(TWO_PARTS);
        let at = Duration::from_secs(5);
        let ramp = Duration::ZERO;
        let message = refused(to_control(&two, 0, &ChangeAction::SetRate { rate: 5.0, ramp }, &[], at));
        assert_eq!(
            message,
            "part `chat` is closed-model (a number of VUs): set its VUs with `set_vus`, not a rate"
        );
        let message = refused(to_control(&two, 1, &ChangeAction::SetVus { vus: 5, ramp }, &[], at));
        assert!(message.starts_with("part `feed` is open-model"), "{message}");
        assert!(refused(to_control(&two, 0, &ChangeAction::Unpause, &[], at)).contains("is not paused"));
        let stopped = to_control(&two, 0, &ChangeAction::Stop, &[], at).expect("a stop applies");
        let message = refused(to_control(
            &two,
            0,
            &ChangeAction::Hold,
            &[stopped],
            at + Duration::from_secs(1),
        ));
        assert_eq!(message, "part `chat` has ended: it cannot be changed");
        let set = to_control(
            &two,
            0,
            &ChangeAction::SetVus {
                vus: 9,
                ramp: Duration::from_secs(3),
            },
            &[],
            at,
        )
        .expect("VUs of a closed part can be set");
        assert_eq!(
            set.action,
            ControlAction::Set {
                value: 9.0,
                ramp: Duration::from_secs(3)
            }
        );
        let event = event_of(
            &two,
            &set,
            &ChangeAction::SetVus {
                vus: 9,
                ramp: Duration::from_secs(3),
            },
            &[],
        );
        assert_eq!(event.detail, "VUs of part `chat` set to 9 over 3.0s");
        assert_eq!(
            (event.at_seconds, event.value, event.ramp_seconds),
            (5.0, Some(9.0), Some(3.0))
        );
    }

    #[test]
    fn an_unpause_says_how_long_the_part_was_paused() {
        let two = scenario(TWO_PARTS);
        let pause = to_control(&two, 0, &ChangeAction::Pause, &[], Duration::from_secs(2)).expect("pause");
        let unpause = to_control(
            &two,
            0,
            &ChangeAction::Unpause,
            std::slice::from_ref(&pause),
            Duration::from_millis(6_500),
        )
        .expect("unpause");
        let event = event_of(&two, &unpause, &ChangeAction::Unpause, &[pause]);
        assert_eq!(event.paused_seconds, Some(4.5));
        assert_eq!(event.detail, "part `chat` resumed after 4.5s paused");
    }
}
