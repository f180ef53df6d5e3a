//! Scripts in steps and rules: `script` steps, the steps that branch and loop on a script
//! condition (`if`, `while`), and the compile of every script with its errors located in the
//! file (the field's line and column, moved to the script's own position where it can be).

use crate::error::{closest, Problems};
use crate::raw::{RawIf, RawScript, RawWhile};
use crate::script::{self, Form, Names, Script};
use crate::steps::{self, Action, Step, DEFAULT_WHILE_MAX_ROUNDS};

use super::builder::{At, StepBuilder};
use super::fields::on_fail;

impl StepBuilder<'_> {
    /// Compiles a script at `field`; `message`: whether it may read the message (rules).
    pub(super) fn script(
        &self,
        source: &str,
        form: Form,
        field: &str,
        message: bool,
        problems: &mut Problems<'_>,
    ) -> Option<Script> {
        let names = Names {
            known: &self.known,
            message,
        };
        match script::compile(source, form, &names) {
            Ok(script) => Some(script),
            Err(error) => {
                let readable = script::readable(&names);
                let hint = error
                    .unknown
                    .as_deref()
                    .and_then(|unknown| closest(unknown, readable.iter().map(String::as_str)))
                    .map(|close| format!("did you mean `{close}`?"))
                    .or_else(|| {
                        error
                            .unknown
                            .is_some()
                            .then(|| format!("scripts here read: {}", readable.join(", ")))
                    });
                problems.add_inside(field, error.line.zip(error.column), error.to_string(), hint);
                None
            }
        }
    }

    /// A `script` step: statements whose top-level `let`s set VU values.
    pub(super) fn script_step(&mut self, raw: &RawScript, at: At<'_>, problems: &mut Problems<'_>) -> Step {
        let explicit = match raw {
            RawScript::Spec(spec) => spec.name.clone(),
            RawScript::Code(_) => None,
        };
        let (id, name) = self.name(explicit.as_ref(), at.kind, at.field, problems);
        let field = format!("{}{}", at.field, raw.code_field());
        let script = self.script(raw.code(), Form::Statements, &field, false, problems);
        Step {
            id,
            name,
            action: match script {
                Some(script) => Action::Script(steps::Script { script }),
                None => Action::Think(steps::Think::Fixed(std::time::Duration::ZERO)),
            },
        }
    }

    /// An `if` step: its steps when the condition holds, its `else` steps when not.
    pub(super) fn if_step(
        &mut self,
        raw: &RawIf,
        at: At<'_>,
        connected: &mut [bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let field = at.field;
        let (id, name) = self.name(raw.name.as_ref(), at.kind, field, problems);
        let condition = self.script(
            &raw.condition,
            Form::Expression,
            &format!("{field}.condition"),
            false,
            problems,
        );
        if raw.steps.is_empty() && raw.otherwise.is_empty() {
            problems.add(&format!("{field}.steps"), "an `if` needs at least one step", None);
        }
        // A connection either branch opens counts as open after the `if`, as after a repeat
        // that may run no round: a step that finds it closed fails at run time (`closed`).
        let mut otherwise_connected = connected.to_vec();
        let then = self.steps(&raw.steps, &format!("{field}.steps"), connected, problems);
        let otherwise = self.steps(
            &raw.otherwise,
            &format!("{field}.else"),
            &mut otherwise_connected,
            problems,
        );
        for (open, other) in connected.iter_mut().zip(otherwise_connected) {
            *open |= other;
        }
        match condition {
            Some(condition) => Step {
                id,
                name,
                action: Action::If(Box::new(steps::If {
                    condition,
                    then,
                    otherwise,
                })),
            },
            None => Step {
                id,
                name,
                action: Action::Think(steps::Think::Fixed(std::time::Duration::ZERO)),
            },
        }
    }

    /// A `while` step: rounds of its steps while the condition holds, at most `max`.
    pub(super) fn while_step(
        &mut self,
        raw: &RawWhile,
        at: At<'_>,
        connected: &mut [bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let field = at.field;
        let (id, name) = self.name(raw.name.as_ref(), at.kind, field, problems);
        let condition = self.script(
            &raw.condition,
            Form::Expression,
            &format!("{field}.condition"),
            false,
            problems,
        );
        if raw.max == Some(0) {
            problems.add(
                &format!("{field}.max"),
                "a `while` plays at least 1 round",
                Some("remove the step, or put it in an `if`".into()),
            );
        }
        if raw.steps.is_empty() {
            problems.add(&format!("{field}.steps"), "a `while` needs at least one step", None);
        }
        let on_max = on_fail(raw.on_max.as_deref(), &format!("{field}.on_max"), problems);
        let steps = self.steps(&raw.steps, &format!("{field}.steps"), connected, problems);
        match condition {
            Some(condition) => Step {
                id,
                name,
                action: Action::While(Box::new(steps::While {
                    condition,
                    max_rounds: raw.max.unwrap_or(DEFAULT_WHILE_MAX_ROUNDS).max(1),
                    on_max,
                    steps,
                })),
            },
            None => Step {
                id,
                name,
                action: Action::Think(steps::Think::Fixed(std::time::Duration::ZERO)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Action, Bundle};

    fn compile(source: &str) -> Result<crate::Scenario, crate::ScenarioError> {
        Bundle {
            path: "s.yaml".into(),
            source: source.into(),
            files: Default::default(),
        }
        .compile()
    }

    const HEAD: &str =
        "load: { vus: 1, iterations: 1 }\nvariables: { secret: k }\nsteps:\n  - connect: { url: 'ws://h/' }\n";

    #[test]
    fn script_errors_name_the_file_line_and_column_of_the_script() {
        let source = format!(
            "{HEAD}  - script: |\n      let body = \"x\";\n      let sig = hmac_sha256(secrte, body);\n  - send: {{ text: '${{sig}}' }}\n"
        );
        let error = compile(&source).unwrap_err();
        let text = error.to_string();
        assert_eq!(error.problems().len(), 1, "{text}");
        assert!(
            text.starts_with(
                "s.yaml:7:29: field `steps[1].script`: script line 2, column 23: Undefined variable: secrte"
            ),
            "{text}"
        );
        assert!(text.contains("did you mean `secret`?"), "{text}");
        let source = format!("{HEAD}  - if: {{ condition: 'vu >', steps: [ {{ think: 1s }} ] }}\n");
        let text = compile(&source).unwrap_err().to_string();
        assert!(
            text.starts_with("s.yaml:5:27: field `steps[1].if.condition`: script line 1, column 5"),
            "{text}"
        );
        let source = format!("{HEAD}  - send: {{ text: '${{hex(sha256(secrt))}}' }}\n");
        let text = compile(&source).unwrap_err().to_string();
        assert!(text.contains("field `steps[1].send.text`"), "{text}");
        assert!(text.contains("Undefined variable: secrt"), "{text}");
        let source = format!("{HEAD}on_message:\n  - if: 'mesage == \"x\"'\n    script: 'let n = 1'\n");
        let text = compile(&source).unwrap_err().to_string();
        assert!(text.starts_with("s.yaml:6:10: field `on_message[0].if`"), "{text}");
        let source =
            format!("{HEAD}  - while: {{ condition: 'true', max: 0, on_max: maybe, steps: [ {{ think: 1s }} ] }}\n");
        let text = compile(&source).unwrap_err().to_string();
        assert!(text.contains("steps[1].while.max"), "{text}");
        assert!(text.contains("steps[1].while.on_max"), "{text}");
    }

    #[test]
    fn values_a_script_sets_are_known_to_templates_and_the_steps_nest() {
        let source = format!(
            "{HEAD}  - script: {{ name: sign, run: 'let sig = hex(hmac_sha256(secret, \"b\"));' }}\n  - if:\n      condition: 'sig.len() == 64'\n      steps:\n        - send: {{ text: '${{sig}}' }}\n      else:\n        - while: {{ condition: 'false', steps: [ {{ send: {{ text: '${{iteration * 2 + 1}}' }} }} ] }}\n"
        );
        let scenario = compile(&source).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            scenario.step_names,
            ["connect", "sign", "if", "send#1", "while", "send#2"]
        );
        let Action::If(branch) = &scenario.parts[0].steps[2].action else {
            panic!("not an if");
        };
        assert_eq!(branch.then.len(), 1);
        assert!(matches!(&branch.otherwise[0].action, Action::While(looped) if looped.max_rounds == 1_000));
    }
}
