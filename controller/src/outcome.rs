//! How a run ended and what it did about a lost agent, as types: the exit code, the history's
//! status word and the summary read these, never the text. Their JSON and text forms are the
//! documented strings (docs/summary.schema.json: `outcome`, `lost_agents.events[].action`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a run ended. Written in the summary as one string, e.g. `completed`, `stopped`,
/// ``aborted: agent `a` was lost (agent silent for 10s)``, `failed: agents did not finish in
/// time`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every agent played its share to the end.
    Completed,
    /// The run reached its end, but some agent was lost on the way.
    CompletedWithLostAgents,
    /// Stopped on request (Ctrl-C, `POST /api/runs/current/stop`).
    Stopped,
    /// A threshold with `abort_on_fail` failed during the run.
    AbortedByThreshold {
        threshold: String,
        /// The condition as written, e.g. `< 20`.
        condition: String,
        /// The value measured, for people.
        measured: String,
    },
    /// An agent was lost and the scenario says `load.on_agent_lost: abort`.
    AbortedByLostAgent { agent: String, reason: String },
    /// The run could not be played to its end: an agent failed, or the deadline passed.
    Failed(Failure),
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The agents did not finish before the run's hard deadline.
    Deadline,
    /// An agent said it could not play the run.
    Agent { agent: String, message: String },
    /// Any other reason, in words (a summary written by another wsfleet).
    Other(String),
}

impl Outcome {
    /// The history's status word: `completed`, `stopped`, `aborted` or `failed`.
    pub fn status_word(&self) -> &'static str {
        match self {
            Outcome::Completed | Outcome::CompletedWithLostAgents => "completed",
            Outcome::Stopped => "stopped",
            Outcome::AbortedByThreshold { .. } | Outcome::AbortedByLostAgent { .. } => "aborted",
            Outcome::Failed(_) => "failed",
        }
    }

    /// Whether the run could not be played to its end.
    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed => out.write_str("completed"),
            Outcome::CompletedWithLostAgents => out.write_str("completed with lost agents"),
            Outcome::Stopped => out.write_str("stopped"),
            Outcome::AbortedByThreshold {
                threshold,
                condition,
                measured,
            } => write!(
                out,
                "aborted: threshold `{threshold}` {condition} failed (measured {measured})"
            ),
            Outcome::AbortedByLostAgent { agent, reason } => {
                write!(out, "aborted: agent `{agent}` was lost ({reason})")
            }
            Outcome::Failed(Failure::Deadline) => out.write_str("failed: agents did not finish in time"),
            Outcome::Failed(Failure::Agent { agent, message }) => write!(out, "failed: agent `{agent}`: {message}"),
            Outcome::Failed(Failure::Other(why)) => write!(out, "failed: {why}"),
        }
    }
}

/// Why a text is not an outcome.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a run outcome: expected completed, completed with lost agents, stopped, aborted: ... or failed: ..."
)]
pub struct UnknownOutcome(String);

impl std::str::FromStr for Outcome {
    type Err = UnknownOutcome;

    /// Reads the text [`Outcome`]'s `Display` writes.
    fn from_str(text: &str) -> Result<Outcome, UnknownOutcome> {
        let unknown = || UnknownOutcome(text.to_owned());
        match text {
            "completed" => return Ok(Outcome::Completed),
            "completed with lost agents" => return Ok(Outcome::CompletedWithLostAgents),
            "stopped" => return Ok(Outcome::Stopped),
            "failed: agents did not finish in time" => return Ok(Outcome::Failed(Failure::Deadline)),
            _ => {}
        }
        if let Some(rest) = text.strip_prefix("aborted: threshold `") {
            let (threshold, rest) = rest.split_once("` ").ok_or_else(unknown)?;
            let (condition, measured) = rest.rsplit_once(" failed (measured ").ok_or_else(unknown)?;
            let measured = measured.strip_suffix(')').ok_or_else(unknown)?;
            return Ok(Outcome::AbortedByThreshold {
                threshold: threshold.to_owned(),
                condition: condition.to_owned(),
                measured: measured.to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("aborted: agent `") {
            let (agent, reason) = rest.split_once("` was lost (").ok_or_else(unknown)?;
            let reason = reason.strip_suffix(')').ok_or_else(unknown)?;
            return Ok(Outcome::AbortedByLostAgent {
                agent: agent.to_owned(),
                reason: reason.to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("failed: agent `") {
            let (agent, message) = rest.split_once("`: ").ok_or_else(unknown)?;
            return Ok(Outcome::Failed(Failure::Agent {
                agent: agent.to_owned(),
                message: message.to_owned(),
            }));
        }
        if let Some(why) = text.strip_prefix("failed: ") {
            return Ok(Outcome::Failed(Failure::Other(why.to_owned())));
        }
        Err(unknown())
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Outcome, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a run did when it lost an agent (`load.on_agent_lost`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LostAction {
    /// The run went on without its share (`continue`, or a share that could not move).
    Continued,
    /// Its share moved to the others (`redistribute`).
    Redistributed,
    /// The run was stopped (`abort`).
    Aborted,
    /// Nothing: it had finished, or the run was ending.
    #[default]
    None,
}

impl LostAction {
    /// The word the summary writes.
    pub fn name(self) -> &'static str {
        match self {
            LostAction::Continued => "continued",
            LostAction::Redistributed => "redistributed",
            LostAction::Aborted => "aborted",
            LostAction::None => "none",
        }
    }
}

impl fmt::Display for LostAction {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        out.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_reads_back_from_its_text() {
        let outcomes = [
            Outcome::Completed,
            Outcome::CompletedWithLostAgents,
            Outcome::Stopped,
            Outcome::AbortedByThreshold {
                threshold: "messages_received.count".into(),
                condition: "< 20".into(),
                measured: "40".into(),
            },
            Outcome::AbortedByLostAgent {
                agent: "fleet-1".into(),
                reason: "agent closed the stream".into(),
            },
            Outcome::Failed(Failure::Deadline),
            Outcome::Failed(Failure::Agent {
                agent: "a".into(),
                message: "boom: no such file".into(),
            }),
            Outcome::Failed(Failure::Other("the run task failed".into())),
        ];
        for outcome in outcomes {
            let json = serde_json::to_string(&outcome).expect("serializes");
            let back: Outcome = serde_json::from_str(&json).expect("reads back");
            assert_eq!(back, outcome, "{json}");
        }
        assert_eq!(
            Outcome::AbortedByLostAgent {
                agent: "fleet-1".into(),
                reason: "gone".into()
            }
            .to_string(),
            "aborted: agent `fleet-1` was lost (gone)"
        );
        assert!("finished".parse::<Outcome>().is_err());
    }

    #[test]
    fn history_status_words() {
        assert_eq!(Outcome::CompletedWithLostAgents.status_word(), "completed");
        let threshold = Outcome::AbortedByThreshold {
            threshold: "x".into(),
            condition: "< 1".into(),
            measured: "2".into(),
        };
        assert_eq!(threshold.status_word(), "aborted");
        assert_eq!(Outcome::Stopped.status_word(), "stopped");
        let failed = Outcome::Failed(Failure::Agent {
            agent: "a".into(),
            message: "boom".into(),
        });
        assert_eq!(failed.status_word(), "failed");
    }

    #[test]
    fn lost_actions_are_the_documented_words() {
        for (action, word) in [
            (LostAction::Continued, "continued"),
            (LostAction::Redistributed, "redistributed"),
            (LostAction::Aborted, "aborted"),
            (LostAction::None, "none"),
        ] {
            assert_eq!(serde_json::to_value(action).expect("serializes"), word);
            assert_eq!(action.to_string(), word);
        }
    }
}
