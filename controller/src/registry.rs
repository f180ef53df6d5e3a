//! The agents attached to this controller, and the run (if any) their messages go to.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use wsfleet_proto::v1::{Capacity, ControllerMessage, MetricReport, RunStatus};

/// Why the registry refuses an agent or a run.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Another agent process holds the id.
    #[error("an agent with id `{0}` is already attached: give each agent its own --id")]
    DuplicateId(String),
    /// A run is active already: one run at a time.
    #[error("run {0} is still active: stop it first")]
    RunActive(String),
}

/// One attached agent.
#[derive(Clone, Debug)]
pub struct AgentInfo {
    pub id: String,
    pub version: String,
    pub hostname: String,
    pub address: String,
    pub capacity: Capacity,
    /// Agent clock minus controller clock, nanoseconds (best of the probes so far).
    pub clock_offset_nanos: i64,
    /// Round trip of the probe the offset came from.
    pub clock_rtt_nanos: i64,
    pub attached_at: Instant,
    pub last_seen: Instant,
    pub sender: mpsc::Sender<ControllerMessage>,
    pub usage: AgentUsage,
    /// The agent process's random instance name (empty from agents before revision 1).
    pub instance: String,
    /// The protocol revision agreed on this stream (the lower of both sides').
    pub revision: u32,
    /// This stream's number, unique in the controller: a stream that was replaced by the same
    /// agent's new one must not detach the new one.
    pub connection: u64,
    /// Cancelled when the stream is replaced, so its reader stops.
    pub closed: CancellationToken,
}

#[cfg(test)]
impl AgentInfo {
    /// An agent for tests: one core, 100 connections, instance `ID-instance`, the current
    /// revision; its messages go to `sender`.
    pub(crate) fn for_test(id: &str, sender: mpsc::Sender<ControllerMessage>) -> AgentInfo {
        let now = Instant::now();
        AgentInfo {
            id: id.into(),
            version: String::new(),
            hostname: String::new(),
            address: String::new(),
            capacity: Capacity {
                cores: 1,
                open_file_limit: 100,
                max_connections: 100,
                weight: 1.0,
                source_addresses: Vec::new(),
            },
            clock_offset_nanos: 0,
            clock_rtt_nanos: 0,
            attached_at: now,
            last_seen: now,
            sender,
            usage: AgentUsage::default(),
            instance: format!("{id}-instance"),
            revision: wsfleet_proto::PROTOCOL_REVISION,
            connection: 0,
            closed: CancellationToken::new(),
        }
    }
}

/// What an agent last said about its own load.
#[derive(Clone, Debug, Default)]
pub struct AgentUsage {
    /// CPU since the previous heartbeat; 100 is one core.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    /// Open connections at the end of the last reported interval.
    pub active_connections: i64,
    /// Metric reports the agent holds that this controller has not acknowledged yet.
    pub reports_unacknowledged: u64,
}

/// What an agent's stream delivers to the active run.
#[derive(Debug)]
pub enum AgentEvent {
    Report(MetricReport),
    Status(RunStatus),
    /// VUs of the agent reached a rendezvous step.
    Rendezvous(wsfleet_proto::v1::RendezvousArrive),
    /// The agent's stream ended.
    Detached(String),
    /// The agent attached (again), with its process's instance name: an agent lost earlier in
    /// the run may be back, resending what it measured.
    Attached(String),
}

/// The registry, shared by the gRPC service and run orchestration. The mutex is never held
/// across an `.await`, so a std mutex is right here.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Woken whenever an agent attaches or detaches.
    pub changed: Notify,
    next_connection: AtomicU64,
}

#[derive(Default)]
struct Inner {
    agents: BTreeMap<String, AgentInfo>,
    active_run: Option<(String, mpsc::UnboundedSender<(String, AgentEvent)>)>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters more than losing the registry; keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A number for a new stream.
    pub fn next_connection(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds an agent; refuses a second agent with the same id. The same agent process (same
    /// id and instance) coming back on a new stream replaces its old one, which is closed and
    /// counts as detached: the agent stopped its load when that stream broke.
    pub fn attach(&self, agent: AgentInfo) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        if let Some(old) = inner.agents.get(&agent.id) {
            if !same_process(old, &agent.instance) {
                return Err(RegistryError::DuplicateId(agent.id.clone()));
            }
            old.closed.cancel();
            if let Some((_, events)) = &inner.active_run {
                let reason = "its stream broke (the agent came back on a new one)".to_owned();
                let _ = events.send((agent.id.clone(), AgentEvent::Detached(reason)));
            }
        }
        if let Some((_, events)) = &inner.active_run {
            let _ = events.send((agent.id.clone(), AgentEvent::Attached(agent.instance.clone())));
        }
        inner.agents.insert(agent.id.clone(), agent);
        drop(inner);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Removes the agent's stream `connection` (not a newer stream of the same agent).
    pub fn detach(&self, id: &str, connection: u64, reason: &str) {
        let mut inner = self.lock();
        if inner.agents.get(id).is_none_or(|agent| agent.connection != connection) {
            return;
        }
        inner.agents.remove(id);
        if let Some((_, events)) = &inner.active_run {
            let _ = events.send((id.to_owned(), AgentEvent::Detached(reason.to_owned())));
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lock().agents.contains_key(id)
    }

    /// Why a hello with `id` and `instance` cannot be taken: another agent process holds the
    /// id. `None` when the id is free or the same process comes back.
    pub fn refuse_duplicate(&self, id: &str, instance: &str) -> Option<RegistryError> {
        let inner = self.lock();
        let old = inner.agents.get(id)?;
        (!same_process(old, instance)).then(|| RegistryError::DuplicateId(id.to_owned()))
    }

    pub fn agents(&self) -> Vec<AgentInfo> {
        self.lock().agents.values().cloned().collect()
    }

    pub fn agent_count(&self) -> usize {
        self.lock().agents.len()
    }

    pub fn update(&self, id: &str, update: impl FnOnce(&mut AgentInfo)) {
        if let Some(agent) = self.lock().agents.get_mut(id) {
            update(agent);
        }
    }

    /// Routes agents' run messages to `events` until [`Registry::end_run`].
    pub fn begin_run(
        &self,
        run_id: &str,
        events: mpsc::UnboundedSender<(String, AgentEvent)>,
    ) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        if let Some((active, _)) = &inner.active_run {
            return Err(RegistryError::RunActive(active.clone()));
        }
        inner.active_run = Some((run_id.to_owned(), events));
        Ok(())
    }

    pub fn end_run(&self, run_id: &str) {
        let mut inner = self.lock();
        if inner.active_run.as_ref().is_some_and(|(active, _)| active == run_id) {
            inner.active_run = None;
        }
    }

    /// Delivers an agent's run message to the active run; messages of other runs are dropped.
    pub fn deliver(&self, agent: &str, run_id: &str, event: AgentEvent) {
        let inner = self.lock();
        if let Some((active, events)) = &inner.active_run {
            if active == run_id {
                let _ = events.send((agent.to_owned(), event));
                return;
            }
        }
        tracing::debug!(agent, run = run_id, "message for an inactive run dropped");
    }
}

/// Whether `instance` names the process behind `agent` (agents before revision 1 send none).
fn same_process(agent: &AgentInfo, instance: &str) -> bool {
    !instance.is_empty() && agent.instance == instance
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(registry: &Registry, id: &str, instance: &str) -> AgentInfo {
        let mut agent = AgentInfo::for_test(id, mpsc::channel(1).0);
        agent.capacity = Capacity::default();
        agent.instance = instance.into();
        agent.revision = 1;
        agent.connection = registry.next_connection();
        agent
    }

    #[test]
    fn the_same_process_comes_back_on_a_new_stream_and_another_one_is_refused() {
        let registry = Registry::new();
        let (events, mut received) = mpsc::unbounded_channel();
        registry.begin_run("run", events).unwrap();
        let first = agent(&registry, "a", "one");
        let (first_connection, first_closed) = (first.connection, first.closed.clone());
        registry.attach(first).unwrap();

        // Another process that took the same id, or one that cannot say which it is.
        assert!(registry.refuse_duplicate("a", "two").is_some());
        assert!(registry.refuse_duplicate("a", "").is_some());
        assert!(registry.attach(agent(&registry, "a", "two")).is_err());

        // The same process: its old stream is closed and counts as detached.
        assert_eq!(registry.refuse_duplicate("a", "one"), None);
        let second = agent(&registry, "a", "one");
        let second_connection = second.connection;
        registry.attach(second).unwrap();
        assert!(first_closed.is_cancelled());
        let mut seen = Vec::new();
        while let Ok((id, event)) = received.try_recv() {
            seen.push(format!("{id}: {event:?}"));
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[0].contains("Attached(\"one\")"), "{seen:?}");
        assert!(seen[1].contains("Detached"), "{seen:?}");
        assert!(seen[2].contains("Attached(\"one\")"), "{seen:?}");

        // The old stream's reader ending does not remove the new stream.
        registry.detach("a", first_connection, "replaced");
        assert!(registry.contains("a"));
        assert!(received.try_recv().is_err());
        registry.detach("a", second_connection, "gone");
        assert!(!registry.contains("a"));
    }
}
