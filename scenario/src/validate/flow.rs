//! Flow steps, which shape a VU's time rather than its traffic: `think`, `repeat` and
//! `rendezvous`.

use std::time::Duration;

use crate::error::Problems;
use crate::raw::{RawRendezvous, RawRepeat, RawThink};
use crate::steps::{Action, Rendezvous, Repeat, Step, Think, DEFAULT_RENDEZVOUS_TIMEOUT};

use super::builder::{At, StepBuilder};
use super::fields::duration_field;

impl StepBuilder<'_> {
    /// A `think` step: a pause, fixed or drawn from a distribution.
    pub(super) fn think_step(&mut self, think: &RawThink, at: At<'_>, problems: &mut Problems<'_>) -> Step {
        let explicit = match think {
            RawThink::Spec(spec) => spec.name.clone(),
            RawThink::Fixed(_) => None,
        };
        let (id, name) = self.name(explicit.as_ref(), at.kind, at.field, problems);
        let think = self.think(think, at.field, problems);
        Step {
            id,
            name,
            action: Action::Think(think),
        }
    }

    /// A `repeat` step: its steps, `count` times or for a `duration`, optionally paced.
    pub(super) fn repeat_step(
        &mut self,
        repeat: &RawRepeat,
        at: At<'_>,
        connected: &mut [bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let field = at.field;
        let (id, name) = self.name(repeat.name.as_ref(), at.kind, field, problems);
        let duration = repeat.duration.as_deref().map(|text| {
            duration_field(
                Some(text),
                &format!("{field}.duration"),
                Duration::from_secs(1),
                problems,
            )
        });
        let pacing = repeat
            .pacing
            .as_deref()
            .map(|text| duration_field(Some(text), &format!("{field}.pacing"), Duration::ZERO, problems));
        if repeat.count.is_none() && duration.is_none() {
            problems.add(field, "a repeat needs `count` or `duration`", None);
        }
        if repeat.steps.is_empty() {
            problems.add(&format!("{field}.steps"), "a repeat needs at least one step", None);
        }
        let steps = self.steps(&repeat.steps, &format!("{field}.steps"), connected, problems);
        Step {
            id,
            name,
            action: Action::Repeat(Repeat {
                count: repeat.count,
                duration,
                pacing,
                steps,
            }),
        }
    }

    /// A `rendezvous` step: the run's next point.
    pub(super) fn rendezvous_step(
        &mut self,
        rendezvous: &RawRendezvous,
        at: At<'_>,
        problems: &mut Problems<'_>,
    ) -> Step {
        let field = at.field;
        let (id, name) = self.name(rendezvous.name.as_ref(), at.kind, field, problems);
        let count = self.rendezvous_count(rendezvous, field, problems);
        let timeout = duration_field(
            rendezvous.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_RENDEZVOUS_TIMEOUT,
            problems,
        );
        let point = self.rendezvous_points;
        self.rendezvous_points += 1;
        Step {
            id,
            name,
            action: Action::Rendezvous(Rendezvous { point, count, timeout }),
        }
    }

    /// The VUs a rendezvous waits for: its `count`, or its `share` of the part's peak VUs.
    fn rendezvous_count(&self, rendezvous: &RawRendezvous, field: &str, problems: &mut Problems<'_>) -> u64 {
        match (rendezvous.count, rendezvous.share.as_deref()) {
            (Some(count), None) => {
                if count == 0 {
                    problems.add(&format!("{field}.count"), "a rendezvous waits for at least 1 VU", None);
                }
                count.max(1)
            }
            (None, Some(share)) => match share
                .trim()
                .strip_suffix('%')
                .and_then(|number| number.trim().parse::<f64>().ok())
            {
                Some(percent) if percent > 0.0 && percent <= 100.0 => {
                    ((self.peak_vus as f64 * percent / 100.0).ceil() as u64).max(1)
                }
                _ => {
                    problems.add(
                        &format!("{field}.share"),
                        format!("`{share}` is not a share"),
                        Some("write a percentage above 0 and at most 100, e.g. `50%`".into()),
                    );
                    1
                }
            },
            _ => {
                problems.add(
                    field,
                    "a rendezvous needs exactly one of `count` or `share`",
                    Some("e.g. `{ count: 100 }` or `{ share: 50% }` of the scenario's peak VUs".into()),
                );
                1
            }
        }
    }

    fn think(&mut self, think: &RawThink, field: &str, problems: &mut Problems<'_>) -> Think {
        let parse = |text: &str, sub: &str, problems: &mut Problems<'_>| {
            duration_field(Some(text), &format!("{field}{sub}"), Duration::ZERO, problems)
        };
        match think {
            RawThink::Fixed(text) => Think::Fixed(parse(text, "", problems)),
            RawThink::Spec(spec) => match (&spec.fixed, &spec.uniform, &spec.exponential) {
                (Some(fixed), None, None) => Think::Fixed(parse(fixed, ".fixed", problems)),
                (None, Some([low, high]), None) => {
                    let (low, high) = (
                        parse(low, ".uniform[0]", problems),
                        parse(high, ".uniform[1]", problems),
                    );
                    if low > high {
                        problems.add(&format!("{field}.uniform"), "the first bound is above the second", None);
                    }
                    Think::Uniform(low, high)
                }
                (None, None, Some(mean)) => Think::Exponential(parse(mean, ".exponential", problems)),
                _ => {
                    problems.add(field, "give exactly one of `fixed`, `uniform` or `exponential`", None);
                    Think::Fixed(Duration::ZERO)
                }
            },
        }
    }
}
