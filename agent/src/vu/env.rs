//! The per-run environment every VU of a run on one worker shares: the compiled scenario, the
//! run's values, TLS settings, the recorder, the handshake slots, and what is built once per
//! run rather than once per message or connection (static messages, upgrade requests).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use wsfleet_metrics::Recorder;
use wsfleet_scenario::{Action, Compression, FrameKind, Payload, Scenario, Send, StepId};

use crate::connection::{self, Connector, TlsConfig};
use crate::failure::ConnectError;
use crate::upgrade::UpgradeRequest;

/// What every VU of a run on one worker shares.
pub struct RunEnv {
    pub scenario: Arc<Scenario>,
    /// Messages whose content never changes, built once per run (a clone is a reference count).
    pub static_messages: Arc<StaticMessages>,
    pub agent_id: Arc<str>,
    /// Run-level values for `${...}`: scenario variables, `target`, `testserver.*`, `run_id`.
    pub named: Arc<wsfleet_scenario::Values>,
    pub tls: TlsConfig,
    /// TLS settings of connect steps with their own (a CA file, or no verification).
    pub step_tls: Arc<HashMap<StepId, TlsConfig>>,
    /// The run's rendezvous points.
    pub rendezvous: Arc<crate::rendezvous::RendezvousHub>,
    pub recorder: Rc<RefCell<Recorder>>,
    /// Handshakes this worker runs at once. Unbounded, a thousand VUs starting together
    /// allocate a thousand handshakes' buffers at the same moment; the allocator keeps that
    /// peak, doubling the memory per idle connection, and the target sees a SYN burst. A few
    /// dozen in flight already keep a core busy on loopback.
    pub handshake_slots: Rc<tokio::sync::Semaphore>,
    /// Local addresses new connections bind to, in turn.
    pub source_addresses: connection::SourceAddresses,
    /// Each connect step's upgrade request as last laid out, reused while the step renders
    /// the same URL, headers and subprotocols (always, when they hold no per-VU variables).
    pub upgrades: UpgradeRequests,
    /// How connect steps open their connections: the network, or in-memory streams in tests.
    pub connector: Rc<dyn Connector>,
}

/// The upgrade requests of a worker's connect steps.
#[derive(Default)]
pub struct UpgradeRequests(RefCell<HashMap<StepId, Rc<UpgradeRequest>>>);

impl UpgradeRequests {
    /// The request for these inputs: the one laid out before when they are the same,
    /// otherwise a new one (replacing it).
    pub(super) fn get(
        &self,
        step: StepId,
        url: &str,
        headers: &[(&str, &str)],
        subprotocols: &[&str],
        compression: &Compression,
    ) -> Result<Rc<UpgradeRequest>, ConnectError> {
        if let Some(request) = self.0.borrow().get(&step) {
            if request.is_for(url, headers, subprotocols) {
                return Ok(request.clone());
            }
        }
        // A step's compression never changes: the cached request carries it.
        let request = Rc::new(UpgradeRequest::new(url, headers, subprotocols)?.with_compression(compression));
        self.0.borrow_mut().insert(step, request.clone());
        Ok(request)
    }
}

/// Handshakes in flight per worker thread.
pub const HANDSHAKES_IN_FLIGHT_PER_WORKER: usize = 64;

/// Messages whose content never changes, indexed by step id.
pub type StaticMessages = Vec<Option<Message>>;

/// Builds the messages of sends whose payload has no variables.
pub fn static_messages(scenario: &Scenario) -> StaticMessages {
    let mut messages = vec![None; scenario.step_names.len()];
    fn add(id: StepId, send: &Send, messages: &mut StaticMessages) {
        let bytes: Option<Vec<u8>> = match &send.payload {
            Payload::Text(template) => template.as_literal().map(|text| text.as_bytes().to_vec()),
            Payload::Bytes(bytes) => Some(bytes.clone()),
        };
        if let Some(slot) = messages.get_mut(usize::from(id)) {
            *slot = bytes.and_then(|bytes| build_message(bytes, send.frame));
        }
    }
    scenario.each_step(&mut |step| {
        if let Action::Send(send) = &step.action {
            add(step.id, send, &mut messages);
        }
    });
    for part in &scenario.parts {
        for rule in &part.on_message {
            if let Some(reply) = &rule.reply {
                add(rule.id, reply, &mut messages);
            }
        }
    }
    messages
}

/// The TLS settings of every connect and http step that has its own. Steps that keep the default roots
/// (e.g. only set `server_name`) also keep trusting the run's test server, `testserver_pem`.
pub fn step_tls_configs(
    scenario: &Scenario,
    testserver_pem: Option<&str>,
) -> Result<HashMap<StepId, TlsConfig>, String> {
    let mut connects = Vec::new();
    scenario.each_step(&mut |step| {
        let tls = match &step.action {
            Action::Connect(connect) => &connect.tls,
            Action::Http(http) => &http.tls,
            _ => return,
        };
        if !tls.is_default() {
            connects.push((step, tls));
        }
    });
    let mut configs = HashMap::new();
    for (step, tls) in connects {
        let config = connection::step_tls_config(tls, testserver_pem)
            .map_err(|error| format!("step `{}`: {error}", step.name))?;
        configs.insert(step.id, config);
    }
    Ok(configs)
}

pub(super) fn build_message(bytes: Vec<u8>, frame: FrameKind) -> Option<Message> {
    match frame {
        FrameKind::Binary => Some(Message::Binary(Bytes::from(bytes))),
        // Validation refused non-UTF-8 bytes in text frames.
        FrameKind::Text => Utf8Bytes::try_from(Bytes::from(bytes)).ok().map(Message::Text),
    }
}
