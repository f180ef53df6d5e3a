//! Walks over the raw steps before they are built: the variables they define, the connections
//! they open and how many steps of each kind there are.

use std::collections::{BTreeMap, BTreeSet};

use crate::raw::{PartView, RawStep};
use crate::steps::{DEFAULT_CONNECTION, DEFAULT_STATE_VARIABLE};

/// Calls `visit` on every raw step in order, the steps inside repeats too.
fn each_raw_step<'a>(steps: &'a [RawStep], visit: &mut dyn FnMut(&'a RawStep)) {
    for step in steps {
        visit(step);
        for (_, inner) in step.inner_steps() {
            each_raw_step(inner, visit);
        }
    }
}

/// Every variable the scenario's steps and handlers set, so templates anywhere may read them.
pub(super) fn defined_variables(parts: &[PartView<'_>]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for part in parts {
        each_raw_step(part.steps, &mut |step| match step {
            RawStep::Connect(connect) => names.extend(connect.extract.keys().cloned()),
            RawStep::Receive(receive) => {
                names.extend(receive.extract.keys().cloned());
                if receive.wait == Some(false) || receive.state.is_some() {
                    names.insert(
                        receive
                            .state
                            .clone()
                            .unwrap_or_else(|| DEFAULT_STATE_VARIABLE.to_owned()),
                    );
                }
            }
            RawStep::Close(Some(close)) => names.extend(close.extract.keys().cloned()),
            RawStep::Extract(extract) => names.extend(extract.values.keys().cloned()),
            RawStep::Script(script) => names.extend(crate::script::declared(script.code())),
            RawStep::Http(http) => names.extend(http.extract.keys().cloned()),
            RawStep::Emit(emit) => {
                if let Some(ack) = &emit.ack {
                    names.extend(ack.extract.keys().cloned());
                }
            }
            RawStep::GraphqlQuery(operation) | RawStep::GraphqlMutation(operation) => {
                names.extend(operation.extract.keys().cloned())
            }
            _ => {}
        });
        for rule in part.on_message {
            names.extend(rule.extract.keys().cloned());
            if let Some(script) = &rule.script {
                names.extend(crate::script::declared(script));
            }
        }
    }
    names
}

/// Connection names in order of first appearance in connect steps.
pub(super) fn connection_names(steps: &[RawStep]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    each_raw_step(steps, &mut |step| {
        if let RawStep::Connect(connect) = step {
            let name = connect.connection.as_deref().unwrap_or(DEFAULT_CONNECTION);
            if !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
    });
    names
}

/// How many steps of each kind the part has (a kind that repeats gets numbered names).
pub(super) fn count_kinds(steps: &[RawStep]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    each_raw_step(steps, &mut |step| *counts.entry(step.kind()).or_insert(0) += 1);
    counts
}
