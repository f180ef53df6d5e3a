//! Protocol steps and options: `connect: { protocol: socketio, socketio: {...} }`, the `emit`
//! step, event conditions (`match: { event, namespace }`) and the metric sets of events.

mod graphql;
mod mqtt;
mod stomp;

use crate::error::{closest, Problems};
use crate::matcher::Matcher;
use crate::protocol::{
    compile_json, set_prefix, valid_namespace, AckWait, Emit, EventSets, JsonTemplate, Namespace, Protocol, RawEmit,
    RawNamespace, RawSocketIo, SocketIo, DEFAULT_SOCKETIO_PATH, EVENT_SET_PREFIX, MAIN_NAMESPACE, OTHER_EVENTS,
    PROTOCOLS,
};
use crate::raw::RawConnect;
use crate::steps::{Action, ConnId, Step, DEFAULT_RECEIVE_TIMEOUT};

use super::builder::{At, StepBuilder};
use super::fields::{compile_template, duration_field, flush};

impl StepBuilder<'_> {
    /// The protocol a connect step names, with its options.
    pub(super) fn protocol(
        &mut self,
        connect: &RawConnect,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> Option<Protocol> {
        match connect.protocol.as_deref() {
            None => {
                if connect.socketio.is_some() {
                    problems.add(
                        &format!("{field}.socketio"),
                        "Socket.IO options without `protocol: socketio`",
                        Some("add `protocol: socketio`".into()),
                    );
                }
                if connect.mqtt.is_some() {
                    problems.add(
                        &format!("{field}.mqtt"),
                        "MQTT options without `protocol: mqtt`",
                        Some("add `protocol: mqtt`".into()),
                    );
                }
                if connect.graphql.is_some() {
                    problems.add(
                        &format!("{field}.graphql"),
                        "GraphQL options without `protocol: graphql`",
                        Some("add `protocol: graphql`".into()),
                    );
                }
                if connect.stomp.is_some() {
                    problems.add(
                        &format!("{field}.stomp"),
                        "STOMP options without `protocol: stomp`",
                        Some("add `protocol: stomp`".into()),
                    );
                }
                None
            }
            Some("mqtt") => Some(self.mqtt_options(connect, field, problems)),
            Some("graphql") => {
                let default = crate::protocol::graphql::RawGraphQl::default();
                let raw = connect.graphql.as_deref().unwrap_or(&default);
                Some(Protocol::GraphQl(self.graphql_options(
                    raw,
                    &format!("{field}.graphql"),
                    problems,
                )))
            }
            Some("stomp") => {
                if connect.socketio.is_some() {
                    problems.add(
                        &format!("{field}.socketio"),
                        "Socket.IO options on a connection that speaks STOMP",
                        Some("remove `socketio`, or write `protocol: socketio`".into()),
                    );
                }
                let default = crate::protocol::stomp::RawStomp::default();
                let raw = connect.stomp.as_deref().unwrap_or(&default);
                Some(Protocol::Stomp(self.stomp_options(
                    raw,
                    &format!("{field}.stomp"),
                    problems,
                )))
            }
            Some("socketio") => {
                let default = RawSocketIo::default();
                let raw = connect.socketio.as_ref().unwrap_or(&default);
                Some(Protocol::SocketIo(self.socketio(
                    raw,
                    &format!("{field}.socketio"),
                    problems,
                )))
            }
            Some(other) => {
                let hint = closest(other, PROTOCOLS.iter().copied())
                    .map(|close| format!("did you mean `{close}`?"))
                    .unwrap_or_else(|| format!("known protocols: {}", PROTOCOLS.join(", ")));
                problems.add(
                    &format!("{field}.protocol"),
                    format!("unknown protocol `{other}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    fn socketio(&mut self, raw: &RawSocketIo, field: &str, problems: &mut Problems<'_>) -> SocketIo {
        let mut path = raw.path.clone().unwrap_or_else(|| DEFAULT_SOCKETIO_PATH.to_owned());
        if !path.starts_with('/') || path.contains(['?', '#']) {
            problems.add(
                &format!("{field}.path"),
                format!("`{path}` is not a URL path"),
                Some("write e.g. `/socket.io/`".into()),
            );
        }
        if !path.ends_with('/') {
            // As socket.io-client does (`addTrailingSlash`).
            path.push('/');
        }
        let query = raw
            .query
            .iter()
            .filter_map(|(name, value)| {
                if name.is_empty() || name == "EIO" || name == "transport" {
                    problems.add(
                        &format!("{field}.query.{name}"),
                        format!("`{name}` cannot be a query parameter here"),
                        Some("`EIO` and `transport` are set by the protocol".into()),
                    );
                    return None;
                }
                compile_template(value, &format!("{field}.query.{name}"), &self.known, problems)
                    .map(|template| (name.clone(), template))
            })
            .collect();
        let mut namespaces: Vec<Namespace> = Vec::new();
        for (index, namespace) in raw.namespaces.iter().enumerate() {
            let at = format!("{field}.namespaces[{index}]");
            let (name, auth) = match namespace {
                RawNamespace::Name(name) => (name, None),
                RawNamespace::Spec(spec) => (&spec.name, spec.auth.as_ref()),
            };
            if !valid_namespace(name) {
                problems.add(
                    &at,
                    format!("`{name}` is not a namespace"),
                    Some("namespaces start with `/` and hold no comma, e.g. `/chat`".into()),
                );
            }
            if namespaces.iter().any(|known| &known.name == name) {
                problems.add(&at, format!("namespace `{name}` is listed twice"), None);
            }
            let auth = auth.map(|auth| {
                if !auth.is_object() {
                    problems.add(
                        &format!("{at}.auth"),
                        "the auth payload is an object",
                        Some("write e.g. `auth: { token: '${token}' }`".into()),
                    );
                }
                self.json_template(auth, &format!("{at}.auth"), &mut Vec::new(), problems)
            });
            namespaces.push(Namespace {
                name: name.clone(),
                auth,
            });
        }
        if namespaces.is_empty() {
            namespaces.push(Namespace {
                name: MAIN_NAMESPACE.to_owned(),
                auth: None,
            });
        }
        SocketIo {
            path,
            query,
            namespaces,
        }
    }

    /// A JSON value with templates in its strings; attachments are added to `attachments`.
    pub(super) fn json_template(
        &self,
        value: &serde_json::Value,
        field: &str,
        attachments: &mut Vec<Vec<u8>>,
        problems: &mut Problems<'_>,
    ) -> JsonTemplate {
        let mut found = Vec::new();
        let known = &self.known;
        let template = compile_json(
            value,
            "",
            &mut |text, path| compile_template(text, &format!("{field}{path}"), known, problems),
            attachments,
            &mut found,
        );
        for problem in found {
            problems.add(&format!("{field}{}", problem.path), problem.message, problem.hint);
        }
        template
    }

    /// An `emit` step: an event with arguments on a Socket.IO connection, optionally waiting
    /// for its acknowledgement.
    pub(super) fn emit_step(
        &mut self,
        emit: &RawEmit,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, emit.name.as_ref(), emit.connection.as_ref(), connected, problems);
        let field = at.field;
        self.require_protocol(conn, "socketio", field, "emit", problems);
        let namespace = emit.namespace.clone().unwrap_or_else(|| MAIN_NAMESPACE.to_owned());
        if !valid_namespace(&namespace) {
            problems.add(
                &format!("{field}.namespace"),
                format!("`{namespace}` is not a namespace"),
                Some("namespaces start with `/`, e.g. `/chat`".into()),
            );
        } else if let Some(namespaces) = self.socketio_namespaces.get(conn).and_then(Option::as_ref) {
            if !namespaces.contains(&namespace) {
                problems.add(
                    &format!("{field}.namespace"),
                    format!("the connection does not connect namespace `{namespace}`"),
                    Some(format!(
                        "add it to the connect step's `socketio.namespaces` (now: {})",
                        namespaces.join(", ")
                    )),
                );
            }
        }
        if emit.event.is_empty() || emit.event.contains("${") {
            problems.add(
                &format!("{field}.event"),
                "an event name is a fixed, non-empty string",
                Some("put what changes in `args`".into()),
            );
        }
        if ["connect", "connect_error", "disconnect", "disconnecting"].contains(&emit.event.as_str()) {
            problems.add(
                &format!("{field}.event"),
                format!("`{}` is reserved by Socket.IO", emit.event),
                None,
            );
        }
        let mut attachments = Vec::new();
        let args = emit
            .args
            .iter()
            .enumerate()
            .map(|(index, arg)| self.json_template(arg, &format!("{field}.args[{index}]"), &mut attachments, problems))
            .collect();
        let ack = emit.ack.as_ref().map(|ack| {
            let timeout = duration_field(
                ack.timeout.as_deref(),
                &format!("{field}.ack.timeout"),
                DEFAULT_RECEIVE_TIMEOUT,
                problems,
            );
            let matcher = ack
                .matcher
                .as_ref()
                .map(|raw| self.matcher(raw, &format!("{field}.ack.match"), problems));
            if let Some(matcher) = &matcher {
                if matcher.event.is_some() || matcher.namespace.is_some() {
                    problems.add(
                        &format!("{field}.ack.match"),
                        "an acknowledgement has no event name or namespace of its own",
                        Some("match its arguments with `json`, `equals`, `contains` or `regex`".into()),
                    );
                }
            }
            let extract = self.extractions(
                &ack.extract,
                &format!("{field}.ack.extract"),
                &["json", "regex", "body"],
                problems,
            );
            AckWait {
                timeout,
                matcher,
                extract,
            }
        });
        let flush = flush(
            emit.flush.as_deref(),
            &format!("{field}.flush"),
            self.default_flush,
            problems,
        );
        let event_set = self.event_set(EVENT_SET_PREFIX, &emit.event);
        Step {
            id,
            name,
            action: Action::Emit(Box::new(Emit {
                conn,
                namespace,
                event: emit.event.clone(),
                args,
                attachments,
                ack,
                event_set,
                flush,
            })),
        }
    }

    /// The arguments of a rule's acknowledgement (`on_message: { ack }`): JSON templates on a
    /// Socket.IO connection, without binary attachments.
    pub(super) fn ack_args(
        &mut self,
        args: &[serde_json::Value],
        conn: Option<ConnId>,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> Vec<JsonTemplate> {
        let speaks = match conn {
            Some(conn) => self.socketio_namespaces.get(conn).is_some_and(Option::is_some),
            None => self.socketio_namespaces.iter().any(Option::is_some),
        };
        if !speaks {
            problems.add(
                field,
                "`ack` answers Socket.IO events, and this connection speaks plain WebSocket",
                Some("add `protocol: socketio` to the connect step, or reply with `send`".into()),
            );
        }
        let mut attachments = Vec::new();
        let compiled = args
            .iter()
            .enumerate()
            .map(|(index, arg)| self.json_template(arg, &format!("{field}[{index}]"), &mut attachments, problems))
            .collect();
        if !attachments.is_empty() {
            problems.add(
                field,
                "an acknowledgement from a rule carries no binary attachments",
                Some("send the bytes with an `emit` step instead".into()),
            );
        }
        compiled
    }

    /// Event conditions (`event`, `namespace`) apply to connections that speak a protocol;
    /// `conn` `None` is any of the part's connections. Each event key gets its metric set, in
    /// the sets of each protocol the connections speak.
    pub(super) fn event_conditions(
        &mut self,
        matcher: &Matcher,
        conn: Option<ConnId>,
        field: &str,
        problems: &mut Problems<'_>,
    ) {
        if matcher.event.is_none() && matcher.namespace.is_none() && matcher.headers.is_empty() {
            return;
        }
        let spoken = self.protocols_of(conn);
        if spoken.is_empty() {
            problems.add(
                field,
                "`event`, `destination`, `namespace` and `headers` match protocol events, and this connection speaks plain WebSocket",
                Some("add `protocol:` to the connect step, or match the message itself".into()),
            );
        }
        if let Some(namespace) = &matcher.namespace {
            if spoken.iter().all(|protocol| protocol == "socketio") && !valid_namespace(namespace) {
                problems.add(
                    &format!("{field}.namespace"),
                    format!("`{namespace}` is not a namespace"),
                    Some("namespaces start with `/`, e.g. `/chat`".into()),
                );
            }
        }
        if let Some(event) = &matcher.event {
            for protocol in spoken {
                let prefix = set_prefix(&protocol);
                // A key with variables counts in the set of its pattern: MQTT levels as `+`,
                // other protocols' variables as `*`.
                let key = match &matcher.event_template {
                    None => event.clone(),
                    Some(_) if prefix == crate::protocol::mqtt::TOPIC_SET_PREFIX => {
                        crate::protocol::mqtt::set_key(event)
                    }
                    Some(template) => template.pattern(crate::protocol::stomp::WILDCARD),
                };
                let set = self.event_set(prefix, &key);
                if prefix != crate::protocol::mqtt::TOPIC_SET_PREFIX {
                    self.mark_set(set, &key, matcher.event_template.is_some(), field, problems);
                }
            }
        }
    }

    /// The protocols `conn` speaks (`None`: any of the part's connections), each once.
    pub(super) fn protocols_of(&self, conn: Option<ConnId>) -> Vec<String> {
        let mut spoken: Vec<String> = Vec::new();
        let candidates: Vec<&Option<String>> = match conn {
            Some(conn) => self.connection_protocols.get(conn).into_iter().collect(),
            None => self.connection_protocols.iter().collect(),
        };
        for protocol in candidates.into_iter().flatten() {
            if !spoken.contains(protocol) {
                spoken.push(protocol.clone());
            }
        }
        spoken
    }

    /// A step of `protocol` (e.g. `subscribe` of `stomp`) needs a connection that speaks it.
    pub(super) fn require_protocol(
        &self,
        conn: ConnId,
        protocol: &str,
        field: &str,
        kind: &str,
        problems: &mut Problems<'_>,
    ) {
        if self.connection_protocols.get(conn).cloned().flatten().as_deref() != Some(protocol) {
            problems.add(
                field,
                format!("`{kind}` needs a connection that speaks `{protocol}`"),
                Some(format!(
                    "add `protocol: {protocol}` to the connect step of this connection"
                )),
            );
        }
    }

    /// The metric set of an event key (`event:NAME`, `destination:/queue/a`), made on first use.
    pub(super) fn event_set(&mut self, prefix: &'static str, key: &str) -> crate::steps::StepId {
        if let Some((_, _, id)) = self
            .event_sets
            .iter()
            .find(|(known_prefix, name, _)| *known_prefix == prefix && name == key)
        {
            return *id;
        }
        let id = self.names.len() as crate::steps::StepId;
        self.names.push(format!("{}{prefix}{key}", self.name_prefix));
        self.event_sets.push((prefix, key.to_owned(), id));
        id
    }

    /// Marks `set` (of `key`) as written by a templated key (whose `*`s then stand for any text
    /// when events are placed) or a literal one at `field`. A literal key equal to a templated
    /// key's set name is refused: its `*`s would be read as the template's.
    pub(super) fn mark_set(
        &mut self,
        set: crate::steps::StepId,
        key: &str,
        templated: bool,
        field: &str,
        problems: &mut Problems<'_>,
    ) {
        let other = self
            .set_origins
            .iter()
            .find(|(id, was, _)| *id == set && *was != templated)
            .map(|(_, _, other)| other.clone());
        if let Some(other) = other {
            let (literal, template) = if templated {
                (other.as_str(), field)
            } else {
                (field, other.as_str())
            };
            problems.add(
                literal,
                format!(
                    "`{key}` is also the metric set name of the templated key at `{template}` (each `${{...}}` written as `*`)"
                ),
                Some(format!(
                    "a literal `*` and a template's cannot share a set: write `{key}` differently, or template both"
                )),
            );
        }
        if !self
            .set_origins
            .iter()
            .any(|(id, was, _)| *id == set && *was == templated)
        {
            self.set_origins.push((set, templated, field.to_owned()));
        }
    }

    /// The part's event sets, with, per protocol spoken, the set of the keys it does not name;
    /// `None` when no connection speaks a protocol.
    pub(super) fn finish_events(&mut self) -> Option<EventSets> {
        let spoken = self.protocols_of(None);
        if spoken.is_empty() {
            return None;
        }
        let other = spoken
            .iter()
            .map(|protocol| {
                let prefix = set_prefix(protocol);
                (prefix, self.event_set(prefix, OTHER_EVENTS))
            })
            .collect();
        let mut named = std::mem::take(&mut self.event_sets);
        named.retain(|(_, name, _)| name != OTHER_EVENTS);
        let templated = std::mem::take(&mut self.set_origins)
            .into_iter()
            .filter(|(_, templated, _)| *templated)
            .map(|(id, _, _)| id)
            .collect();
        Some(EventSets {
            named,
            other,
            templated,
        })
    }
}

/// The protocol each connection's connect steps name (`None`: plain WebSocket), by the first
/// connect step of the connection that names one.
pub(super) fn connection_protocols(steps: &[crate::raw::RawStep], connections: &[String]) -> Vec<Option<String>> {
    use crate::raw::RawStep;
    fn walk(steps: &[RawStep], connections: &[String], found: &mut Vec<Option<String>>) {
        for step in steps {
            match step {
                RawStep::Connect(connect) => {
                    let name = connect
                        .connection
                        .as_deref()
                        .unwrap_or(crate::steps::DEFAULT_CONNECTION);
                    let Some(index) = connections.iter().position(|known| known == name) else {
                        continue;
                    };
                    if let (Some(slot @ None), Some(protocol)) = (found.get_mut(index), connect.protocol.as_ref()) {
                        *slot = Some(protocol.clone());
                    }
                }
                RawStep::Repeat(repeat) => walk(&repeat.steps, connections, found),
                _ => {}
            }
        }
    }
    let mut found = vec![None; connections.len().max(1)];
    walk(steps, connections, &mut found);
    found
}

/// The namespaces each connection's connect steps connect (`None`: no protocol), for checking
/// `emit` steps and event conditions before the steps are built.
pub(super) fn socketio_namespaces(steps: &[crate::raw::RawStep], connections: &[String]) -> Vec<Option<Vec<String>>> {
    use crate::raw::RawStep;
    fn walk(steps: &[RawStep], connections: &[String], found: &mut Vec<Option<Vec<String>>>) {
        for step in steps {
            match step {
                RawStep::Connect(connect) if connect.protocol.as_deref() == Some("socketio") => {
                    let name = connect
                        .connection
                        .as_deref()
                        .unwrap_or(crate::steps::DEFAULT_CONNECTION);
                    let Some(index) = connections.iter().position(|known| known == name) else {
                        continue;
                    };
                    let names: Vec<String> = match connect.socketio.as_ref().map(|options| &options.namespaces) {
                        Some(namespaces) if !namespaces.is_empty() => namespaces
                            .iter()
                            .map(|namespace| match namespace {
                                RawNamespace::Name(name) => name.clone(),
                                RawNamespace::Spec(spec) => spec.name.clone(),
                            })
                            .collect(),
                        _ => vec![MAIN_NAMESPACE.to_owned()],
                    };
                    let slot = &mut found[index];
                    match slot {
                        Some(known) => known.extend(names),
                        None => *slot = Some(names),
                    }
                }
                RawStep::Repeat(repeat) => walk(&repeat.steps, connections, found),
                _ => {}
            }
        }
    }
    let mut found = vec![None; connections.len().max(1)];
    walk(steps, connections, &mut found);
    found
}
