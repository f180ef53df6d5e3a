//! The step builder: walks a part's raw steps in order, names each one (its metric set), tracks
//! which connections are open at each point, and hands each kind of step to the module of its
//! family (connection, message, matching, flow); the handlers are built after the steps.

use std::collections::{BTreeMap, HashSet};

use crate::error::{closest, Problems};
use crate::protocol::graphql::OperationKind;
use crate::raw::{RawClose, RawPing, RawStep};
use crate::steps::{ConnId, Flush, Step, StepId};

/// Builds the steps and handlers of one part; what must be unique across the run (metric
/// names, rendezvous points) carries from part to part.
pub(super) struct StepBuilder<'f> {
    /// Variables templates may read here.
    pub(super) known: Vec<String>,
    /// Every step's and handler's metric name so far in the run, indexed by `StepId`.
    pub(super) names: Vec<String>,
    /// Send steps seen so far (name, id), for `latency_of`.
    pub(super) send_names: Vec<(String, StepId)>,
    /// Steps of each kind in the part: a kind that repeats gets numbered names (`send#2`).
    pub(super) kind_counts: BTreeMap<&'static str, usize>,
    /// Steps of each kind named so far.
    pub(super) kind_seen: BTreeMap<&'static str, usize>,
    /// Explicit names so far in the run, with their part's prefix: each may be given once.
    pub(super) explicit: HashSet<String>,
    /// The part's connection names, indexed by `ConnId`.
    pub(super) connections: Vec<String>,
    /// Files shipped with the scenario, by the name written in it.
    pub(super) files: &'f BTreeMap<String, Vec<u8>>,
    /// Put before every metric name of the part (`listeners.`), empty for a single scenario.
    pub(super) name_prefix: String,
    /// Rendezvous points so far in the run (all parts).
    pub(super) rendezvous_points: u32,
    /// The part's peak VUs, for a rendezvous `share`.
    pub(super) peak_vus: u64,
    /// When sends go to the socket unless a send says otherwise (the scenario's `flush`).
    pub(super) default_flush: Flush,
    /// The namespaces each connection connects when it speaks Socket.IO, indexed by `ConnId`.
    pub(super) socketio_namespaces: Vec<Option<Vec<String>>>,
    /// The protocol each connection's connect steps name (`None`: plain WebSocket), indexed by
    /// `ConnId`, known before the steps are built (a step may use a connection its protocol's
    /// steps need).
    pub(super) connection_protocols: Vec<Option<String>>,
    /// The metric sets of the part's protocol events so far: the set name's prefix (`event:`,
    /// `destination:`), the key, the set.
    pub(super) event_sets: Vec<(&'static str, String, StepId)>,
    /// Where the sets' keys were first written, per set and kind: a templated key's (its `*`s
    /// stand for any text) or a literal one's.
    pub(super) set_origins: Vec<(StepId, bool, String)>,
    /// The MQTT version of each connection that speaks MQTT, by connection name, as its connect
    /// step says (steps check MQTT 5.0's fields against it).
    pub(super) mqtt_versions: BTreeMap<String, crate::protocol::mqtt::Version>,
    /// The part's `subscribe` steps so far: name, id, connection (`complete` names them).
    pub(super) graphql_subscriptions: Vec<(String, StepId, ConnId)>,
}

/// The step being built: its kind (`send`) and its field (`steps[2].send`).
#[derive(Clone, Copy)]
pub(super) struct At<'a> {
    pub(super) kind: &'static str,
    pub(super) field: &'a str,
}

impl StepBuilder<'_> {
    /// Builds `raw` in order; `connected` says which connections are open at each point.
    pub(super) fn steps(
        &mut self,
        raw: &[RawStep],
        path: &str,
        connected: &mut [bool],
        problems: &mut Problems<'_>,
    ) -> Vec<Step> {
        raw.iter()
            .enumerate()
            .map(|(index, step)| self.step(step, &format!("{path}[{index}]"), connected, problems))
            .collect()
    }

    /// One step, built by the module of its family.
    fn step(&mut self, raw: &RawStep, path: &str, connected: &mut [bool], problems: &mut Problems<'_>) -> Step {
        let kind = raw.kind();
        let field = format!("{path}.{kind}");
        let at = At { kind, field: &field };
        match raw {
            RawStep::Connect(connect) => self.connect_step(connect, at, connected, problems),
            RawStep::Send(send) => self.send_step(send, at, connected, problems),
            RawStep::Receive(receive) => self.receive_step(receive, at, connected, problems),
            RawStep::Ping(ping) => {
                self.ping_step(ping.as_ref().unwrap_or(&RawPing::default()), at, connected, problems)
            }
            RawStep::Close(close) => {
                self.close_step(close.as_ref().unwrap_or(&RawClose::default()), at, connected, problems)
            }
            RawStep::Think(think) => self.think_step(think, at, problems),
            RawStep::Repeat(repeat) => self.repeat_step(repeat, at, connected, problems),
            RawStep::Extract(extract) => self.extract_step(extract, at, problems),
            RawStep::Rendezvous(rendezvous) => self.rendezvous_step(rendezvous, at, problems),
            RawStep::Check(check) => self.check_step(check, at, problems),
            RawStep::Script(script) => self.script_step(script, at, problems),
            RawStep::If(branch) => self.if_step(branch, at, connected, problems),
            RawStep::While(looped) => self.while_step(looped, at, connected, problems),
            RawStep::Http(http) => self.http_step(http, at, problems),
            RawStep::Emit(emit) => self.emit_step(emit, at, connected, problems),
            RawStep::MqttPublish(publish) => self.mqtt_publish_step(publish, at, connected, problems),
            RawStep::MqttSubscribe(subscribe) => self.mqtt_subscribe_step(subscribe, at, connected, problems),
            RawStep::MqttUnsubscribe(unsubscribe) => self.mqtt_unsubscribe_step(unsubscribe, at, connected, problems),
            RawStep::MqttDisconnect(disconnect) => self.mqtt_disconnect_step(
                disconnect.as_ref().unwrap_or(&Default::default()),
                at,
                connected,
                problems,
            ),
            RawStep::GraphqlSubscribe(operation) => {
                self.operation_step(operation, OperationKind::Subscription, at, connected, problems)
            }
            RawStep::GraphqlQuery(operation) => {
                self.operation_step(operation, OperationKind::Query, at, connected, problems)
            }
            RawStep::GraphqlMutation(operation) => {
                self.operation_step(operation, OperationKind::Mutation, at, connected, problems)
            }
            RawStep::GraphqlComplete(complete) => self.complete_step(complete, at, connected, problems),
            RawStep::StompSubscribe(_)
            | RawStep::StompUnsubscribe(_)
            | RawStep::StompSend(_)
            | RawStep::StompAck(_)
            | RawStep::StompNack(_)
            | RawStep::StompBegin(_)
            | RawStep::StompCommit(_)
            | RawStep::StompAbort(_)
            | RawStep::StompDisconnect(_) => self.stomp_step(raw, at, connected, problems),
        }
    }

    /// Registers a metric name: the explicit one, or the kind (numbered when it repeats).
    pub(super) fn name(
        &mut self,
        explicit: Option<&String>,
        kind: &'static str,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> (StepId, String) {
        let seen = self.kind_seen.entry(kind).or_insert(0);
        *seen += 1;
        let name = match explicit {
            Some(name) => {
                if !self.explicit.insert(format!("{}{name}", self.name_prefix)) {
                    problems.add(
                        &format!("{field}.name"),
                        format!("step name `{name}` is used twice"),
                        Some("give each step its own name".into()),
                    );
                }
                name.clone()
            }
            None if self.kind_counts.get(kind).copied().unwrap_or(0) <= 1 => kind.to_owned(),
            None => format!("{kind}#{seen}"),
        };
        let id = self.names.len() as StepId;
        self.names.push(format!("{}{name}", self.name_prefix));
        (id, name)
    }

    /// The connection a step acts on: the one it names, or the only one there is.
    pub(super) fn connection(&self, named: Option<&String>, field: &str, problems: &mut Problems<'_>) -> ConnId {
        match named {
            Some(name) => match self.connections.iter().position(|known| known == name) {
                Some(index) => index,
                None => {
                    let hint = closest(name, self.connections.iter().map(String::as_str))
                        .map(|close| format!("did you mean `{close}`?"))
                        .or_else(|| {
                            Some(format!(
                                "connect steps open: {}",
                                if self.connections.is_empty() {
                                    "none".to_owned()
                                } else {
                                    self.connections.join(", ")
                                }
                            ))
                        });
                    problems.add(
                        &format!("{field}.connection"),
                        format!("no connect step opens a connection named `{name}`"),
                        hint,
                    );
                    0
                }
            },
            None => {
                if self.connections.len() > 1 {
                    problems.add(
                        field,
                        format!(
                            "this VU holds several connections ({}); say which one with `connection:`",
                            self.connections.join(", ")
                        ),
                        None,
                    );
                }
                0
            }
        }
    }

    /// Starts a step that acts on an open connection: its name, then the connection it names
    /// (or the only one), which an earlier step must have opened.
    pub(super) fn connection_step(
        &mut self,
        at: At<'_>,
        name: Option<&String>,
        connection: Option<&String>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> (StepId, String, ConnId) {
        let (id, name) = self.name(name, at.kind, at.field, problems);
        let conn = self.connection(connection, at.field, problems);
        self.require_connection(connected, conn, at.field, at.kind, problems);
        (id, name, conn)
    }

    /// A step that acts on a connection needs one an earlier step opened.
    fn require_connection(
        &self,
        connected: &[bool],
        conn: ConnId,
        field: &str,
        kind: &str,
        problems: &mut Problems<'_>,
    ) {
        if !connected.get(conn).copied().unwrap_or(false) {
            let which = match self.connections.get(conn) {
                Some(name) if self.connections.len() > 1 => format!(" `{name}`"),
                _ => String::new(),
            };
            problems.add(
                field,
                format!("`{kind}` needs an open connection{which}, and none is open at this point"),
                Some("add a `connect` step before it".into()),
            );
        }
    }

    /// A file shipped with the scenario, by the name written in it.
    pub(super) fn file(&self, name: &str, field: &str, problems: &mut Problems<'_>) -> Vec<u8> {
        match self.files.get(name) {
            Some(bytes) => bytes.clone(),
            None => {
                problems.add(
                    field,
                    format!("file `{name}` did not come with the scenario"),
                    Some("files are read next to the scenario file when it is loaded from a path; a scenario sent as text cannot name files".into()),
                );
                Vec::new()
            }
        }
    }
}
