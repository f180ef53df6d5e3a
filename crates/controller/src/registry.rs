//! The agents attached to this controller, and the run (if any) their messages go to.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};
use wsfleet_proto::v1::{Capacity, ControllerMessage, MetricReport, RunStatus};

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
}

/// What an agent last said about its own load.
#[derive(Clone, Debug, Default)]
pub struct AgentUsage {
    /// CPU since the previous heartbeat; 100 is one core.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    /// Open connections at the end of the last reported interval.
    pub active_connections: i64,
}

/// What an agent's stream delivers to the active run.
#[derive(Debug)]
pub enum AgentEvent {
    Report(MetricReport),
    Status(RunStatus),
    /// The agent's stream ended.
    Detached(String),
}

/// The registry, shared by the gRPC service and run orchestration. The mutex is never held
/// across an `.await`, so a std mutex is right here.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Woken whenever an agent attaches or detaches.
    pub changed: Notify,
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

    /// Adds an agent; refuses a second agent with the same id.
    pub fn attach(&self, agent: AgentInfo) -> Result<(), String> {
        let mut inner = self.lock();
        if inner.agents.contains_key(&agent.id) {
            return Err(format!(
                "an agent with id `{}` is already attached: give each agent its own --id",
                agent.id
            ));
        }
        inner.agents.insert(agent.id.clone(), agent);
        drop(inner);
        self.changed.notify_waiters();
        Ok(())
    }

    pub fn detach(&self, id: &str, reason: &str) {
        let mut inner = self.lock();
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
    pub fn begin_run(&self, run_id: &str, events: mpsc::UnboundedSender<(String, AgentEvent)>) -> Result<(), String> {
        let mut inner = self.lock();
        if let Some((active, _)) = &inner.active_run {
            return Err(format!("run {active} is still active: stop it first"));
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
